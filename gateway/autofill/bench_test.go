package autofill

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// benchDepartments is the number of departments of the benchmark form and
// benchLatency how long each takes to answer.
const (
	benchDepartments = 4
	benchFields      = 10 // per department: 40 fields in all
	benchLatency     = 20 * time.Millisecond
	benchApplicant   = "91350100M000100Y43"
)

// benchSetup builds a dictionary of four departments, a 40-field form
// drawing on all four, grants for it, and a fetcher whose departments each
// take benchLatency to answer.
func benchSetup(tb testing.TB) *Engine {
	tb.Helper()
	var dict, form strings.Builder
	dict.WriteString("departments:\n")
	for d := range benchDepartments {
		fmt.Fprintf(&dict, "  - {id: dep%d, name: 部门%d, title: Department %d}\n", d, d, d)
	}
	dict.WriteString("datasets:\n")
	form.WriteString("kind: form\nid: bench\ntitle: 基准表\npurpose: approval\nlegal_basis: 基准\napplicant_kind: enterprise\nsources:\n")
	var fieldsYAML strings.Builder
	var grants []*v1.Grant
	for d := range benchDepartments {
		fmt.Fprintf(&dict, "  - name: dep%d.records\n    title: t\n    department: dep%d\n    kind: register\n    record: x\n    sharing: conditional\n    sensitivity: normal\n    keys: [credit_code]\n    freshness: 1h\n    fields:\n      - {name: credit_code, title: c, type: string, class: public, ident: credit_code}\n", d, d)
		fmt.Fprintf(&form, "  - {name: s%d, dataset: dep%d.records, by: credit_code}\n", d, d)
		names := []string{"credit_code"}
		for f := range benchFields {
			fmt.Fprintf(&dict, "      - {name: f%d, title: f, type: string, class: public}\n", f)
			fmt.Fprintf(&fieldsYAML, "  - {name: d%df%d, label: 字段%d-%d, source: s%d.f%d}\n", d, f, d, f, d, f)
			names = append(names, fmt.Sprintf("f%d", f))
		}
		grants = append(grants, &v1.Grant{
			Id: fmt.Sprintf("g%d", d), Consumer: &v1.Consumer{SystemId: "bench"}, Dataset: fmt.Sprintf("dep%d.records", d),
			Fields: names, Purposes: []string{"approval"}, State: v1.GrantState_GRANT_STATE_ACTIVE,
		})
	}
	form.WriteString("fields:\n" + fieldsYAML.String())
	dc, err := datasets.Parse([]byte(dict.String()))
	if err != nil {
		tb.Fatal(err)
	}
	cat, err := forms.Parse(dc, fstest.MapFS{"bench.yaml": {Data: []byte(form.String())}}, "")
	if err != nil {
		tb.Fatal(err)
	}
	return &Engine{
		Dict:   dc,
		Forms:  cat,
		Policy: snapshotDecider{policy.Prepare(dc, grants, 1)},
		Fetch:  slowFetcher{latency: benchLatency},
		Record: &fakeRecorder{},
	}
}

// slowFetcher answers every lookup with one record after latency.
type slowFetcher struct{ latency time.Duration }

func (f slowFetcher) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	t := time.NewTimer(f.latency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return query.Result{}, apierr.Newf(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded, "%v", ctx.Err())
	}
	m := map[string]any{"credit_code": req.GetKeys()["credit_code"]}
	for i := range benchFields {
		m[fmt.Sprintf("f%d", i)] = fmt.Sprintf("%s-%d", ds.Name, i)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return query.Result{}, err
	}
	return query.Result{Records: []*v1.SourceRecord{{Id: benchApplicant, Fields: s}}, Delivery: v1.Delivery_DELIVERY_LIVE, FetchedAt: time.Now()}, nil
}

func TestBenchFormFills(t *testing.T) {
	e := benchSetup(t)
	resp, err := e.FillForm(context.Background(), Request{Principal: policy.Principal{SystemID: "bench"}, ApplicantID: benchApplicant}, "bench")
	if err != nil {
		t.Fatal(err)
	}
	if s := resp.GetSummary(); s.GetFieldsFilled() != benchDepartments*benchFields || s.GetFieldsTotal() != benchDepartments*benchFields {
		t.Fatalf("summary = %v", s)
	}
}

// BenchmarkFillFortyFieldsFourDepartments fills a 40-field form drawing on
// four departments that each answer in 20 ms. The departments are asked in
// parallel, so an auto-fill takes about the slowest department, not the
// sum (80 ms). It reports the p50 and p99 latency in milliseconds.
func BenchmarkFillFortyFieldsFourDepartments(b *testing.B) {
	e := benchSetup(b)
	ctx := context.Background()
	r := Request{Principal: policy.Principal{SystemID: "bench"}, ApplicantID: benchApplicant}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := e.FillForm(ctx, r, "bench")
		lat = append(lat, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if resp.GetSummary().GetFieldsFilled() != benchDepartments*benchFields {
			b.Fatalf("summary = %v", resp.GetSummary())
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
