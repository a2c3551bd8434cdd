package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/telemetry"
	"github.com/tongban/tongban/gateway/telemetry/otlptest"
)

// TestQueryIsTracedIntoThePlugin runs a REST query through a node that
// exports to an OTLP receiver, with real connector plugin processes that
// export to the same receiver, and checks the whole span tree: the REST
// server span, policy.decide, cache.fetch, connector.fetch, the client span
// of the plugin call and, exported by the plugin process, its server span
// continuing the trace. It also checks that no span carries the identifier
// asked for, and the query latency histogram.
func TestQueryIsTracedIntoThePlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts simulators and plugin processes")
	}
	col := otlptest.Start(t)
	deps, err := simulate.Start(context.Background(), simulate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deps.Close() })
	cfg := nodeConfig(t, "node-a", deps)
	cfg.Telemetry = telemetry.Config{OTLPEndpoint: col.GRPCEndpoint(), SampleRatio: 1}
	node := startNode(t, cfg)
	if err := node.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- node.Serve(ctx) }()

	code := deps.Data.SampleEnterprise().CreditCode
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	query := func(parent string) {
		t.Helper()
		body := fmt.Sprintf(`{"keys":{"credit_code":%q},"purpose":"approval"}`, code)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			"http://"+node.RESTAddr()+"/v1/datasets/market.business_licences:query", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer t-approval")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("query: %s: %s", resp.Status, b)
		}
	}
	const firstParent, secondParent = "00f067aa0ba902b7", "00f067aa0ba902b8"
	query(firstParent)  // a miss: through the plugin
	query(secondParent) // a memory hit

	metrics := get(t, ctx, "http://"+node.RESTAddr()+"/metrics")
	wantSeries := `tongban_query_duration_seconds_count{consumer="approval-bureau",dataset="market.business_licences",outcome="ok"} 2`
	if !strings.Contains(metrics, wantSeries) {
		t.Errorf("/metrics lacks %s", wantSeries)
	}

	// Stop serving and close the node: the plugin processes flush their
	// spans as the host ends them, the node flushes its own last.
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}

	spans := col.Trace(traceID)
	byName := map[string][]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		for k, v := range s.Attrs {
			if strings.Contains(v, code) {
				t.Errorf("span %s attribute %s carries the credit code: %q", s.Name, k, v)
			}
		}
	}
	one := func(name, parentID string) otlptest.Span {
		t.Helper()
		for _, s := range byName[name] {
			if s.ParentID == parentID {
				return s
			}
		}
		t.Fatalf("no span %q with parent %s among %d spans of the trace: %s", name, parentID, len(spans), describe(spans))
		return otlptest.Span{}
	}

	// First query: the miss.
	rest := one("POST /v1/datasets", firstParent)
	if rest.Kind != tracepb.Span_SPAN_KIND_SERVER || rest.Service != telemetry.ServiceName || rest.Resource[telemetry.AttrNode] != "node-a" {
		t.Errorf("REST span = %+v", rest)
	}
	if rest.Attrs[telemetry.AttrRequestID] == "" || rest.Attrs["url.path"] != "/v1/datasets" {
		t.Errorf("REST span attributes = %v", rest.Attrs)
	}
	decide := one("policy.decide", rest.SpanID)
	for k, want := range map[string]string{
		telemetry.AttrDataset: "market.business_licences", telemetry.AttrPurpose: "approval",
		telemetry.AttrConsumer: "approval-bureau", telemetry.AttrDecision: "permit",
	} {
		if decide.Attrs[k] != want && !(k == telemetry.AttrDecision && decide.Attrs[k] == "partial") {
			t.Errorf("policy.decide %s = %q, want %q", k, decide.Attrs[k], want)
		}
	}
	fetch := one("cache.fetch", rest.SpanID)
	if fetch.Attrs[telemetry.AttrTier] != "miss" || fetch.Attrs[telemetry.AttrCoalesced] != "false" || fetch.Attrs[telemetry.AttrDelivery] != "live" {
		t.Errorf("cache.fetch attributes = %v", fetch.Attrs)
	}
	conn := one("connector.fetch", fetch.SpanID)
	if conn.Attrs[telemetry.AttrDepartment] != "market" || conn.Attrs[telemetry.AttrConnector] != "market" {
		t.Errorf("connector.fetch attributes = %v", conn.Attrs)
	}
	call := one("tongban.v1.Connector/Fetch", conn.SpanID)
	if call.Kind != tracepb.Span_SPAN_KIND_CLIENT || call.Service != telemetry.ServiceName {
		t.Errorf("plugin call span = %+v", call)
	}
	// Exported by the plugin process: the trace crossed the process boundary.
	plugin := one("tongban.v1.Connector/Fetch", call.SpanID)
	if plugin.Kind != tracepb.Span_SPAN_KIND_SERVER || plugin.Service != sdk.TracingServiceName ||
		plugin.Resource["tongban.connector"] != "market" || plugin.Resource[telemetry.AttrNode] != "node-a" {
		t.Errorf("plugin server span = %+v", plugin)
	}
	one("audit.append", rest.SpanID)

	// Second query: a memory hit, no department call.
	rest2 := one("POST /v1/datasets", secondParent)
	if hit := one("cache.fetch", rest2.SpanID); hit.Attrs[telemetry.AttrTier] != "memory" || hit.Attrs[telemetry.AttrDelivery] != "cache" {
		t.Errorf("second cache.fetch attributes = %v", hit.Attrs)
	}
	if n := len(byName["connector.fetch"]); n != 1 {
		t.Errorf("%d connector.fetch spans, want 1 (the second query is a cache hit)", n)
	}
	one("policy.decide", rest2.SpanID)
	one("audit.append", rest2.SpanID)
}

func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func describe(spans []otlptest.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s (span %s, parent %s, service %s)", s.Kind, s.Name, s.SpanID, s.ParentID, s.Service)
	}
	return b.String()
}
