package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestReadyzHidesErrors checks that /readyz tells each check's state but
// not its error text (the probe is public), and that the error is logged
// once per change of state.
func TestReadyzHidesErrors(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user tongban")
	var failing bool
	var logs bytes.Buffer
	s, err := New(Options{
		GRPCAddr: "127.0.0.1:0", RESTAddr: "127.0.0.1:0", RequestTimeout: time.Minute, MaxBodyBytes: 1 << 10,
		ShutdownTimeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Checks: []Check{
			{Name: "grants_store", Critical: true, Fn: func(context.Context) error {
				if failing {
					return secret
				}
				return nil
			}},
			{Name: "redis", Fn: func(context.Context) error { return nil }},
		},
	}, Services{})
	if err != nil {
		t.Fatal(err)
	}
	probe := func() (int, string) {
		w := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := probe(); code != http.StatusOK || !strings.Contains(body, `"grants_store":"ok"`) {
		t.Fatalf("healthy: %d %s", code, body)
	}
	failing = true
	for range 3 {
		code, body := probe()
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"grants_store":"error"`) || !strings.Contains(body, `"redis":"ok"`) {
			t.Fatalf("failing: %d %s", code, body)
		}
		if strings.Contains(body, "10.0.0.7") || strings.Contains(body, "password") {
			t.Fatalf("/readyz shows the error: %s", body)
		}
	}
	if n := strings.Count(logs.String(), "password authentication failed"); n != 1 {
		t.Fatalf("the error was logged %d times over three failing probes, want once:\n%s", n, logs.String())
	}
	failing = false
	if code, _ := probe(); code != http.StatusOK || !strings.Contains(logs.String(), "readiness check recovered") {
		t.Fatalf("recovery: %d, log:\n%s", code, logs.String())
	}
}
