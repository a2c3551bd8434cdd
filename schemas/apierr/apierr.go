// Package apierr is the one error type that crosses a package, process or API
// boundary in Tongban. Its vocabulary is gRPC status codes; grpc-gateway maps
// them to HTTP statuses. Every error carries a stable machine-readable reason,
// sent to the caller as a google.rpc.ErrorInfo, and a message that is safe to
// show (it names the field or the department). The cause is for logs only.
package apierr

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every Tongban error.
const Domain = "tongban.gov"

// Reasons used across the project. Reasons are part of the API: never rename
// one.
const (
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonInvalidIdentifier   = "INVALID_IDENTIFIER"
	ReasonUnknownDataset      = "UNKNOWN_DATASET"
	ReasonUnknownField        = "UNKNOWN_FIELD"
	ReasonMissingKey          = "MISSING_KEY"
	ReasonUnauthenticated     = "UNAUTHENTICATED"
	ReasonNoGrant             = "NO_GRANT"
	ReasonForbiddenRole       = "FORBIDDEN_ROLE"
	ReasonNotFound            = "NOT_FOUND"
	ReasonDepartmentDown      = "DEPARTMENT_UNAVAILABLE"
	ReasonBreakerOpen         = "BREAKER_OPEN"
	ReasonBulkheadFull        = "CONNECTOR_BUSY"
	ReasonQuotaExceeded       = "QUOTA_EXCEEDED"
	ReasonRateLimited         = "RATE_LIMITED"
	ReasonAuditUnavailable    = "AUDIT_UNAVAILABLE"
	ReasonConflict            = "CONFLICT"
	ReasonDeadlineExceeded    = "DEADLINE_EXCEEDED"
	ReasonCanceled            = "CANCELED"
	ReasonInternal            = "INTERNAL"
	ReasonNotShared           = "DATASET_NOT_SHARED"
	ReasonFailedPrecondition  = "FAILED_PRECONDITION"
	ReasonUnimplemented       = "UNIMPLEMENTED"
	ReasonProtocolMismatch    = "PROTOCOL_VERSION_MISMATCH"
	ReasonResponseTooLarge    = "RESPONSE_TOO_LARGE"
	ReasonConnectorMisconfig  = "CONNECTOR_MISCONFIGURED"
	ReasonOutsideJurisdiction = "OUTSIDE_JURISDICTION"
)

// Error is a classified error. Code and Reason are for machines, Msg for
// people; Meta names the field, dataset or department involved.
type Error struct {
	Code   codes.Code
	Reason string
	Msg    string
	Meta   map[string]string
	cause  error
}

// New returns an Error with the given code, reason and message.
func New(code codes.Code, reason, msg string) *Error {
	return &Error{Code: code, Reason: reason, Msg: msg}
}

// Newf is New with a formatted message.
func Newf(code codes.Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Error implements error. It includes the cause, so logs see it.
func (e *Error) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Reason, e.Msg, e.cause)
	}
	return e.Reason + ": " + e.Msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same code and reason, so
// that errors.Is(err, apierr.New(codes.NotFound, apierr.ReasonNotFound, ""))
// matches regardless of message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t.Code == e.Code && (t.Reason == "" || t.Reason == e.Reason)
}

// WithCause returns a copy of e that wraps cause. The cause is logged, never
// sent to callers.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// With returns a copy of e with metadata key set to value.
func (e *Error) With(key, value string) *Error {
	c := *e
	c.Meta = make(map[string]string, len(e.Meta)+1)
	for k, v := range e.Meta {
		c.Meta[k] = v
	}
	c.Meta[key] = value
	return &c
}

// GRPCStatus lets grpc-go and grpc-gateway turn the error into a status with
// an ErrorInfo detail.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Msg)
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: Domain, Metadata: e.Meta})
	if err != nil {
		return st
	}
	return withInfo
}

// Invalid is an INVALID_ARGUMENT error naming the field and what is wrong.
func Invalid(field, format string, args ...any) *Error {
	msg := field + ": " + fmt.Sprintf(format, args...)
	return (&Error{Code: codes.InvalidArgument, Reason: ReasonInvalidArgument, Msg: msg}).With("field", field)
}

// InvalidIdentifier is an INVALID_ARGUMENT error for a malformed identifier in
// field.
func InvalidIdentifier(field string, err error) *Error {
	return (&Error{Code: codes.InvalidArgument, Reason: ReasonInvalidIdentifier, Msg: field + ": " + err.Error()}).With("field", field)
}

// Unavailable is an UNAVAILABLE error naming the department.
func Unavailable(department string, cause error) *Error {
	return (&Error{
		Code:   codes.Unavailable,
		Reason: ReasonDepartmentDown,
		Msg:    fmt.Sprintf("department %q is unavailable", department),
		cause:  cause,
	}).With("department", department)
}

// From returns err as an *Error. A status error (for example one that crossed
// a plugin process boundary) is rebuilt with its reason and metadata, so
// errors.Is works on the host side. Any other error becomes Internal with the
// original kept as the cause.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if st, ok := status.FromError(err); ok {
		out := &Error{Code: st.Code(), Reason: codeReason(st.Code()), Msg: st.Message(), cause: err}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				out.Reason = info.Reason
				out.Meta = info.Metadata
			}
		}
		return out
	}
	return &Error{Code: codes.Internal, Reason: ReasonInternal, Msg: "internal error", cause: err}
}

// CodeOf returns the gRPC code of err (Unknown when err is not classified).
func CodeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}

// ReasonOf returns the reason of err, or "" when it has none.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	if err != nil {
		if st, ok := status.FromError(err); ok {
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					return info.Reason
				}
			}
		}
	}
	return ""
}

func codeReason(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return ReasonInvalidArgument
	case codes.NotFound:
		return ReasonNotFound
	case codes.Unauthenticated:
		return ReasonUnauthenticated
	case codes.PermissionDenied:
		return ReasonNoGrant
	case codes.ResourceExhausted:
		return ReasonQuotaExceeded
	case codes.DeadlineExceeded:
		return ReasonDeadlineExceeded
	case codes.Canceled:
		return ReasonCanceled
	case codes.Unavailable:
		return ReasonDepartmentDown
	case codes.Unimplemented:
		return ReasonUnimplemented
	case codes.FailedPrecondition:
		return ReasonFailedPrecondition
	default:
		return ReasonInternal
	}
}
