package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/gateway/telemetry"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// tracedService starts a child span, as the query pipeline does, and
// reports whether the request arrived inside a trace.
type tracedService struct {
	v1.UnimplementedGatewayServer
	v1.UnimplementedAuditServer
}

func (tracedService) QueryDataset(ctx context.Context, _ *v1.QueryRequest) (*v1.QueryResponse, error) {
	_, span := telemetry.Start(ctx, "policy.decide")
	span.End()
	in := "untraced"
	if trace.SpanContextFromContext(ctx).IsValid() {
		in = "traced"
	}
	return &v1.QueryResponse{GrantIds: []string{in}}, nil
}

func (tracedService) ListSubjectAccesses(context.Context, *v1.ListSubjectAccessesRequest) (*v1.ListSubjectAccessesResponse, error) {
	return &v1.ListSubjectAccessesResponse{}, nil
}

func startTraced(t *testing.T, tp trace.TracerProvider) (grpcAddr, restAddr string) {
	t.Helper()
	s, err := New(Options{
		GRPCAddr:        "127.0.0.1:0",
		RESTAddr:        "127.0.0.1:0",
		RequestTimeout:  10 * time.Second,
		MaxBodyBytes:    1 << 20,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		TracerProvider:  tp,
	}, Services{Gateway: tracedService{}, Audit: tracedService{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s.GRPCAddr(), s.RESTAddr()
}

const (
	testTraceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
	testParentID = "00f067aa0ba902b7"
	traceparent  = "00-" + testTraceID + "-" + testParentID + "-01"
)

func restCall(t *testing.T, method, url, body string, headers map[string]string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return string(b)
}

// childOf finds the ended span named name whose parent is parent.
func childOf(t *testing.T, spans []sdktrace.ReadOnlySpan, name string, parent trace.SpanID) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name && s.Parent().SpanID() == parent {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name()+"<-"+s.Parent().SpanID().String())
	}
	t.Fatalf("no span %q with parent %s among %v", name, parent, names)
	return nil
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func TestRESTAndGRPCRequestsAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	grpcAddr, restAddr := startTraced(t, tp)
	parent, err := trace.SpanIDFromHex(testParentID)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("REST", func(t *testing.T) {
		rec.Reset()
		restCall(t, http.MethodPost, "http://"+restAddr+"/v1/datasets/market.enterprises:query", `{"purpose":"approval"}`,
			map[string]string{"traceparent": traceparent, "X-Request-Id": "req-rest-1"})
		spans := rec.Ended()
		edge := childOf(t, spans, "POST /v1/datasets", parent)
		if edge.SpanKind() != trace.SpanKindServer || edge.SpanContext().TraceID().String() != testTraceID {
			t.Errorf("REST span kind %v trace %s", edge.SpanKind(), edge.SpanContext().TraceID())
		}
		if got := attr(edge, telemetry.AttrRequestID); got != "req-rest-1" {
			t.Errorf("REST span request id = %q", got)
		}
		childOf(t, spans, "policy.decide", edge.SpanContext().SpanID())
	})

	t.Run("REST path holds no identifier", func(t *testing.T) {
		rec.Reset()
		const subject = "91130100MA0EXAMPLE"
		restCall(t, http.MethodGet, "http://"+restAddr+"/v1/subjects/"+subject+"/accesses", "", map[string]string{"traceparent": traceparent})
		edge := childOf(t, rec.Ended(), "GET /v1/subjects", parent)
		for _, kv := range edge.Attributes() {
			if strings.Contains(kv.Value.String(), subject) {
				t.Errorf("span attribute %s = %q carries the subject's identifier", kv.Key, kv.Value.String())
			}
		}
		if got := attr(edge, "url.path"); got != "/v1/subjects" {
			t.Errorf("url.path = %q, want the route", got)
		}
	})

	t.Run("gRPC", func(t *testing.T) {
		rec.Reset()
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent, "x-request-id", "req-grpc-1")
		resp, err := v1.NewGatewayClient(conn).QueryDataset(ctx, &v1.QueryRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetGrantIds()[0] != "traced" {
			t.Fatal("the service saw no span")
		}
		// Health checks are not traced.
		if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		spans := rec.Ended()
		call := childOf(t, spans, "tongban.v1.Gateway/QueryDataset", parent)
		if call.SpanKind() != trace.SpanKindServer || attr(call, telemetry.AttrRequestID) != "req-grpc-1" {
			t.Errorf("gRPC span kind %v, request id %q", call.SpanKind(), attr(call, telemetry.AttrRequestID))
		}
		childOf(t, spans, "policy.decide", call.SpanContext().SpanID())
		for _, s := range spans {
			if strings.Contains(s.Name(), "Health") {
				t.Errorf("health check traced: %s", s.Name())
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		rec.Reset()
		restCall(t, http.MethodGet, "http://"+restAddr+"/healthz", "", nil)
		restCall(t, http.MethodGet, "http://"+restAddr+"/metrics", "", nil)
		if n := len(rec.Ended()); n != 0 {
			t.Errorf("probes made %d spans", n)
		}
	})
}

func TestUntracedServerIgnoresTraceparent(t *testing.T) {
	_, restAddr := startTraced(t, nil)
	body := restCall(t, http.MethodPost, "http://"+restAddr+"/v1/datasets/market.enterprises:query", `{"purpose":"approval"}`,
		map[string]string{"traceparent": traceparent})
	if !strings.Contains(body, "untraced") {
		t.Fatalf("without a tracer provider the service still saw a trace: %s", body)
	}
}
