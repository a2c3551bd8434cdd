package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tongban/tongban/gateway/reqctx"
)

func TestPatternMethods(t *testing.T) {
	cases := []struct {
		patterns []string
		want     []string
	}{
		{nil, nil},
		{[]string{"GET /v1/changes:watch"}, []string{"GET", "HEAD"}},
		{[]string{"POST /a", "GET /b"}, []string{"GET", "HEAD", "POST"}},
		{[]string{"/any"}, []string{""}},
		{[]string{"example.org/any"}, []string{""}},
		{[]string{"DELETE example.org/x"}, []string{"DELETE"}},
	}
	for _, tc := range cases {
		got := slices.Sorted(maps.Keys(patternMethods(tc.patterns)))
		if !slices.Equal(got, tc.want) {
			t.Errorf("patternMethods(%q) = %q, want %q", tc.patterns, got, tc.want)
		}
	}
}

// TestRESTMetrics: REST requests are counted and timed per method, route
// and status, and methods outside the standard ones share one series, so
// callers cannot create series at will.
func TestRESTMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/v1/datasets/market.business_licences:query", 200},
		{"POST", "/v1/datasets/approval.permits:query", 200},
		{"POST", "/v1/datasets/x:query", 403},
		{"BREW", "/v1/datasets/x:query", 405},
		{"PROPFIND", "/v1/datasets/y:query", 405},
		{"GET", "/nowhere", 404},
	} {
		m.observeREST(httptest.NewRequest(c.method, c.path, nil), c.code, time.Millisecond)
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{
		{"POST /v1/datasets", "200", 2},
		{"POST /v1/datasets", "403", 1},
		{"OTHER /v1/datasets", "405", 2},
		{"GET other", "404", 1},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, "rest", c.code)); got != c.want {
			t.Errorf("requests{%s, %s} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.requests); n != 4 {
		t.Errorf("%d request series, want 4", n)
	}
	if n := testutil.CollectAndCount(m.latency); n != 3 {
		t.Errorf("%d latency series, want 3", n)
	}
}

// TestRESTRequestDeadline: a REST request's context ends at the request
// deadline (give or take the slices deadlines are shared in), carries the
// request id, and is not ended by its connection's context (the client
// leaving): that work is bounded by the deadline.
func TestRESTRequestDeadline(t *testing.T) {
	s, err := New(Options{
		GRPCAddr: "127.0.0.1:0", RESTAddr: "127.0.0.1:0",
		RequestTimeout: 50 * time.Millisecond, MaxBodyBytes: 256, ShutdownTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handlers: map[string]http.Handler{"GET /probe": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			dl, ok := ctx.Deadline()
			if !ok || time.Until(dl) > 50*time.Millisecond+2*deadlineSlice {
				t.Errorf("deadline %v %v, want within 50ms and two slices", dl, ok)
			}
			if reqctx.ID(ctx) != "probe-1" {
				t.Errorf("request id %q", reqctx.ID(ctx))
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				t.Errorf("the request ended with its connection's context: %v", ctx.Err())
			}
			<-ctx.Done() // bounded by the deadline
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Errorf("ended with %v, want the deadline", ctx.Err())
			}
		})},
	}, Services{})
	if err != nil {
		t.Fatal(err)
	}
	conn, leave := context.WithCancel(context.Background())
	leave() // the client has gone before the handler looks
	r := httptest.NewRequestWithContext(conn, http.MethodGet, "/probe", nil)
	r.Header.Set("X-Request-Id", "probe-1")
	s.http.Handler.ServeHTTP(httptest.NewRecorder(), r)
}
