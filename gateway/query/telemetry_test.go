package query

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tongban/tongban/gateway/telemetry"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.String()
	}
	return out
}

func TestQuerySpans(t *testing.T) {
	cases := []struct {
		name      string
		query     *v1.QueryRequest
		principal string
		recErr    error
		// want maps span name to attributes it must carry.
		want map[string]map[string]string
	}{
		{
			name:  "permit",
			query: &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"},
			want: map[string]map[string]string{
				"policy.decide": {telemetry.AttrDataset: "market.business_licences", telemetry.AttrPurpose: "approval", telemetry.AttrConsumer: "approval-bureau"},
				"audit.append":  {telemetry.AttrDataset: "market.business_licences"},
			},
		},
		{
			name:  "deny",
			query: &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "marketing"},
			want: map[string]map[string]string{
				"policy.decide": {telemetry.AttrDecision: DecisionDeny, telemetry.AttrPurpose: "marketing"},
				"audit.append":  {telemetry.AttrDecision: DecisionDeny},
			},
		},
		{
			name:   "audit down",
			query:  &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"},
			recErr: errors.New("disk full"),
			want:   map[string]map[string]string{"audit.append": {telemetry.AttrDataset: "market.business_licences"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			p := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{err: tc.recErr})
			ctx, root := tp.Tracer("test").Start(context.Background(), "request")
			_, _ = p.Run(ctx, Request{Principal: approvalBureau, RequestID: "r1", Query: tc.query})
			root.End()
			got := map[string]sdktrace.ReadOnlySpan{}
			for _, s := range rec.Ended() {
				got[s.Name()] = s
				for k, v := range spanAttrs(s) {
					if strings.Contains(v, goodCode) {
						t.Errorf("span %s attribute %s carries the credit code", s.Name(), k)
					}
				}
			}
			for name, attrs := range tc.want {
				s, ok := got[name]
				if !ok {
					t.Fatalf("no span %q", name)
				}
				if s.Parent().SpanID() != root.SpanContext().SpanID() {
					t.Errorf("%s is not a child of the request span", name)
				}
				have := spanAttrs(s)
				for k, v := range attrs {
					if have[k] != v {
						t.Errorf("%s %s = %q, want %q", name, k, have[k], v)
					}
				}
			}
			if tc.recErr != nil && got["audit.append"].Status().Code.String() != "Error" {
				t.Errorf("failed audit append status = %v", got["audit.append"].Status())
			}
		})
	}
}

func TestQueryUntracedMakesNoSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	defer root.End()
	p := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{})
	q := &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}
	if _, err := p.Run(ctx, Request{Principal: approvalBureau, Query: q}); err != nil {
		t.Fatal(err)
	}
	if trace.SpanFromContext(ctx).IsRecording() || len(rec.Started()) != 0 {
		t.Fatalf("an unsampled request started %d spans", len(rec.Started()))
	}
}

func TestQueryDurationHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{})
	p.Registerer = reg
	// A second pipeline on the same registry shares the histogram.
	p2 := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{})
	p2.Registerer = reg
	ctx := context.Background()
	ok := &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}
	for _, tc := range []struct {
		p *Pipeline
		q *v1.QueryRequest
	}{
		{p, ok},
		{p2, ok},
		{p, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "marketing"}},
		{p, &v1.QueryRequest{Dataset: "made.up." + goodCode, Purpose: "approval"}},
	} {
		_, _ = tc.p.Run(ctx, Request{Principal: approvalBureau, Query: tc.q})
	}
	want := map[string]int{
		"market.business_licences/approval-bureau/ok":                  2,
		"market.business_licences/approval-bureau/purpose_not_covered": 1,
		"unknown/approval-bureau/unknown_dataset":                      1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		if mf.GetName() != "tongban_query_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			got[l["dataset"]+"/"+l["consumer"]+"/"+l["outcome"]] = int(m.GetHistogram().GetSampleCount())
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("series %s count = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if n := testutil.CollectAndCount(reg, "tongban_query_duration_seconds"); n != len(want) {
		t.Errorf("%d series, want %d: %v", n, len(want), got)
	}
}

func TestQueryWithoutRegistererRecordsNothing(t *testing.T) {
	p := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{})
	q := &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}
	if _, err := p.Run(context.Background(), Request{Principal: approvalBureau, Query: q}); err != nil {
		t.Fatal(err)
	}
	if p.metrics() != nil {
		t.Fatal("a pipeline without Registerer made metrics")
	}
}
