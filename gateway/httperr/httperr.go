// Package httperr writes the JSON error document of the REST API, the same
// for every HTTP route of the gateway (grpc-gateway routes, routing errors
// and the Server-Sent Events stream):
//
//	{"error": {"code": 403, "status": "PERMISSION_DENIED", "reason": "NO_GRANT",
//	           "message": "...", "metadata": {...}, "request_id": "..."}}
package httperr

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
)

// Body is the JSON error document.
type Body struct {
	Error Detail `json:"error"`
}

// Detail describes one error.
type Detail struct {
	// Code is the HTTP status.
	Code int `json:"code"`
	// Status is the gRPC status code name, e.g. "PERMISSION_DENIED".
	Status string `json:"status"`
	// Reason is the stable machine-readable reason.
	Reason   string            `json:"reason"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// RequestID correlates with the gateway log and the audit record.
	RequestID string `json:"request_id,omitempty"`
}

// New returns the document of err; httpStatus overrides the status that
// follows from the error's gRPC code when not zero.
func New(err error, requestID string, httpStatus int) Body {
	ae := apierr.From(err)
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(ae.Code)
	}
	return Body{Error: Detail{
		Code:      httpStatus,
		Status:    CodeName(ae.Code),
		Reason:    ae.Reason,
		Message:   ae.Msg,
		Metadata:  ae.Meta,
		RequestID: requestID,
	}}
}

// Write writes err as the error document, with WWW-Authenticate on 401.
// httpStatus overrides the status when not zero.
func Write(w http.ResponseWriter, err error, requestID string, httpStatus int) {
	body := New(err, requestID, httpStatus)
	w.Header().Set("Content-Type", "application/json")
	if body.Error.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tongban"`)
	}
	w.WriteHeader(body.Error.Code)
	_ = json.NewEncoder(w).Encode(body)
}

// CodeName returns the canonical upper-snake name of a gRPC code.
func CodeName(c codes.Code) string {
	name := c.String()
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
