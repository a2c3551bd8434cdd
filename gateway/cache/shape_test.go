package cache

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

type snapDecider struct{ s *policy.Snapshot }

func (d snapDecider) Decide(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.s.Decide(r)
}

type nopRecorder struct{}

func (nopRecorder) RecordExchange(context.Context, query.Exchange) (*v1.Receipt, error) {
	return &v1.Receipt{}, nil
}

func validCreditCode(t *testing.T) string {
	t.Helper()
	org := "MA0G5XKQ"
	oc, err := ident.OrgCodeCheckChar(org)
	if err != nil {
		t.Fatal(err)
	}
	first := "91130102" + org + string(oc)
	cc, err := ident.CreditCodeCheckChar(first)
	if err != nil {
		t.Fatal(err)
	}
	code := first + string(cc)
	if err := ident.ValidateCreditCode(code); err != nil {
		t.Fatalf("built credit code %s: %v", code, err)
	}
	return code
}

// TestCachedRecordShapedPerConsumer: one department call fills the shared
// cache; two consumers with different grants, on two nodes, get the same
// cached record shaped by their own grant.
func TestCachedRecordShapedPerConsumer(t *testing.T) {
	cl := newCluster(t)
	dict := datasets.Default()
	dec := snapDecider{policy.Prepare(dict, policy.DemoGrants(time.Now()), 1)}
	code := validCreditCode(t)
	src := &shapeSource{code: code}
	mk := func() *query.Pipeline {
		c := New(src, Options{MaxBytes: 1 << 20, MaxStale: time.Hour, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Redis: &RedisOptions{Addrs: []string{cl.redis.Addr}, Keyring: cl.ring}})
		t.Cleanup(func() { c.Close() })
		return &query.Pipeline{Dict: dict, Policy: dec, Fetch: c, Record: nopRecorder{}}
	}
	nodeA, nodeB := mk(), mk()
	ctx := context.Background()
	run := func(p *query.Pipeline, system, dept, purpose string) *v1.Record {
		t.Helper()
		resp, err := p.Run(ctx, query.Request{
			Principal: policy.Principal{SystemID: system, Department: dept, Region: "1301"},
			Query:     &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": code}, Purpose: purpose},
		})
		if err != nil {
			t.Fatalf("%s: %v", system, err)
		}
		return resp.GetRecords()[0]
	}
	approval := run(nodeA, "approval-bureau", "approval", "approval")
	enforcement := run(nodeB, "enforcement-platform", "enforcement", "inspection")
	if src.calls != 1 {
		t.Fatalf("department calls = %d, want 1 (the second consumer hit the shared cache)", src.calls)
	}
	if d := enforcement.GetProvenance().GetDelivery(); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("enforcement delivery = %v, want cache", d)
	}
	af, ef := approval.GetFields().GetFields(), enforcement.GetFields().GetFields()
	if got := af["legal_representative_id"].GetStringValue(); got == residentID || got == "" {
		t.Fatalf("approval bureau legal_representative_id = %q, want masked", got)
	}
	if _, ok := ef["legal_representative_id"]; ok {
		t.Fatal("enforcement platform got legal_representative_id, which its grant does not give")
	}
	if _, ok := ef["legal_representative"]; ok {
		t.Fatal("enforcement platform got legal_representative")
	}
	if af["legal_representative"].GetStringValue() != holderName || ef["name"].GetStringValue() != companyName {
		t.Fatalf("shared fields wrong: approval %v, enforcement %v", af, ef)
	}
}

type shapeSource struct {
	code  string
	calls int
}

func (s *shapeSource) Fetch(_ context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	s.calls++
	p := &piiSource{}
	resp, err := p.Fetch(context.Background(), req)
	if err != nil {
		return nil, err
	}
	f := resp.Records[0].Fields.Fields
	f["legal_representative"] = f["legal_rep"]
	f["legal_representative_id"] = f["legal_rep_id_no"]
	f["region_code"] = structString("130102")
	delete(f, "legal_rep")
	delete(f, "legal_rep_id_no")
	return resp, nil
}

func structString(s string) *structpb.Value { return structpb.NewStringValue(s) }
