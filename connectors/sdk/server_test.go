package sdk

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

type failing struct{ err error }

func (f failing) Describe(context.Context) (*v1.Descriptor, error) { return nil, f.err }
func (f failing) Fetch(context.Context, *v1.FetchRequest) (*v1.FetchResponse, error) {
	return nil, f.err
}
func (f failing) Health(context.Context) error { return f.err }

// TestServerStatus checks what the plugin side sends for each kind of error
// and that a cause is logged there, never sent.
func TestServerStatus(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		msg     string
		logged  string
		notSent string
	}{
		{"apierr", apierr.New(codes.NotFound, apierr.ReasonNotFound, "no record"), codes.NotFound, "no record", "", ""},
		{"apierr with cause", apierr.Unavailable("fire", errors.New("dial 10.1.2.3 refused")), codes.Unavailable, `department "fire" is unavailable`, "dial 10.1.2.3 refused", "10.1.2.3"},
		{"plain", errors.New("pq: password for user secret"), codes.Internal, "internal error in connector", "pq: password for user secret", "secret"},
		{"cancelled", context.Canceled, codes.Canceled, "request cancelled", "", ""},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := &server{impl: failing{tc.err}, log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			_, err := s.Fetch(t.Context(), &v1.FetchRequest{})
			st := status.Convert(err)
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if tc.notSent != "" && strings.Contains(st.String(), tc.notSent) {
				t.Errorf("status %v leaks %q", st, tc.notSent)
			}
			if !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("log %q lacks the cause %q", logs.String(), tc.logged)
			}
		})
	}
}

func TestPluginLogHandler(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(newPluginLogHandler(&buf, slog.LevelInfo))
	l.Debug("hidden")
	l.Warn("disk nearly full", "free", "2%")
	got := strings.TrimSpace(buf.String())
	want := `{"@level":"warn","@message":"disk nearly full","free":"2%"}`
	if got != want {
		t.Fatalf("log line = %s, want %s", got, want)
	}
}
