package httperr

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
)

func TestWrite(t *testing.T) {
	cases := []struct {
		err    error
		status int
		want   int
		name   string
	}{
		{apierr.Invalid("keys.credit_code", "bad"), 0, 400, "INVALID_ARGUMENT"},
		{apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "no token"), 0, 401, "UNAUTHENTICATED"},
		{apierr.New(codes.PermissionDenied, apierr.ReasonNoGrant, "no grant"), 0, 403, "PERMISSION_DENIED"},
		{apierr.Unavailable("market", nil), 0, 503, "UNAVAILABLE"},
		{apierr.New(codes.Unimplemented, "METHOD_NOT_ALLOWED", "no"), 405, 405, "UNIMPLEMENTED"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		Write(rec, tc.err, "rid", tc.status)
		var b Body
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.want || b.Error.Code != tc.want || b.Error.Status != tc.name || b.Error.RequestID != "rid" || b.Error.Reason == "" {
			t.Errorf("%v: HTTP %d, body %+v", tc.err, rec.Code, b)
		}
		if (tc.want == 401) != (rec.Header().Get("WWW-Authenticate") != "") {
			t.Errorf("%v: WWW-Authenticate = %q", tc.err, rec.Header().Get("WWW-Authenticate"))
		}
	}
}
