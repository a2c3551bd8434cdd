// Package otlptest is an OTLP trace receiver for tests: a real OTLP/gRPC and
// OTLP/HTTP (protobuf) endpoint on loopback that keeps the spans it is sent,
// so tests can check what the gateway and its plugin processes export.
package otlptest

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened with its resource.
type Span struct {
	Name     string
	Kind     tracepb.Span_SpanKind
	TraceID  string // hex
	SpanID   string // hex
	ParentID string // hex; "" for a root span
	// Service is the resource's service.name.
	Service string
	// Resource and Attrs hold string, bool and integer values as strings.
	Resource map[string]string
	Attrs    map[string]string
	// StatusError reports whether the span's status is Error.
	StatusError bool
}

// Collector receives spans over OTLP/gRPC and OTLP/HTTP.
type Collector struct {
	coltracepb.UnimplementedTraceServiceServer

	grpcAddr string
	httpAddr string

	mu    sync.Mutex
	spans []Span
}

// Start runs a collector on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	c.grpcAddr = gl.Addr().String()

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(c.serveHTTP)}
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close() })
	c.httpAddr = hl.Addr().String()
	return c
}

// GRPCEndpoint is the collector's OTLP/gRPC endpoint URL (plain text).
func (c *Collector) GRPCEndpoint() string { return "http://" + c.grpcAddr }

// HTTPEndpoint is the collector's OTLP/HTTP base URL (plain text); spans are
// posted to /v1/traces.
func (c *Collector) HTTPEndpoint() string { return "http://" + c.httpAddr }

// Export implements the OTLP/gRPC trace service.
func (c *Collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *Collector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, fmt.Sprintf("decoding OTLP request: %v", err), http.StatusBadRequest)
		return
	}
	c.add(&req)
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

func (c *Collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Name:        s.GetName(),
					Kind:        s.GetKind(),
					TraceID:     hex.EncodeToString(s.GetTraceId()),
					SpanID:      hex.EncodeToString(s.GetSpanId()),
					Service:     res["service.name"],
					Resource:    res,
					Attrs:       attrs(s.GetAttributes()),
					StatusError: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				if len(s.GetParentSpanId()) > 0 {
					sp.ParentID = hex.EncodeToString(s.GetParentSpanId())
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			out[kv.GetKey()] = v.String()
		}
	}
	return out
}

// Spans returns a copy of the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Span(nil), c.spans...)
}

// Trace returns the received spans of the trace with the given hex id.
func (c *Collector) Trace(traceID string) []Span {
	var out []Span
	for _, s := range c.Spans() {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}
