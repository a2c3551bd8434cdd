package autofill

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var (
	simOnce sync.Once
	simData *simulate.Data
)

// sim returns the demo data, generated once per test binary.
func sim() *simulate.Data {
	simOnce.Do(func() { simData = simulate.Generate(simulate.DefaultSeed) })
	return simData
}

type snapshotDecider struct{ s *policy.Snapshot }

func (d snapshotDecider) Decide(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.s.Decide(r)
}

// simFetcher serves the simulated departments' records from memory and
// counts the lookups it answers.
type simFetcher struct {
	d *simulate.Data

	mu    sync.Mutex
	calls map[string]int
	// down lists departments that answer UNAVAILABLE.
	down map[string]bool
	// edit, when set, may change the records of a dataset before they are
	// returned.
	edit func(dataset string, recs []*v1.SourceRecord)
}

func newSimFetcher() *simFetcher {
	return &simFetcher{d: sim(), calls: map[string]int{}, down: map[string]bool{}}
}

func (f *simFetcher) callsOf(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *simFetcher) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	if err := ctx.Err(); err != nil {
		return query.Result{}, err
	}
	f.mu.Lock()
	for k, v := range req.GetKeys() {
		f.calls[ds.Name+"|"+k+"="+v]++
	}
	down := f.down[ds.Department]
	f.mu.Unlock()
	if down {
		return query.Result{}, apierr.Unavailable(ds.Department, fmt.Errorf("simulated outage"))
	}
	var items []any
	var ids []string
	for k, v := range req.GetKeys() {
		switch ds.Name + "|" + k {
		case "market.business_licences|credit_code":
			if l, ok := f.d.Licence(v); ok {
				items, ids = append(items, l), append(ids, l.CreditCode)
			}
		case "market.enterprises|credit_code":
			if e, ok := f.d.Enterprise(v); ok {
				items, ids = append(items, e), append(ids, e.CreditCode)
			}
		case "approval.permits|applicant_id":
			for _, p := range f.d.PermitsOf(v) {
				items, ids = append(items, p), append(ids, p.PermitID)
			}
		case "resources.parcels|holder_id":
			for _, p := range f.d.ParcelsOf(v) {
				items, ids = append(items, p), append(ids, p.ParcelID)
			}
		case "resources.land_use_certificates|holder_id":
			for _, c := range f.d.CertificatesOf(v) {
				items, ids = append(items, c), append(ids, c.CertificateNo)
			}
		default:
			return query.Result{}, apierr.Invalid("keys."+k, "the fake cannot look up %s by %s", ds.Name, k)
		}
	}
	if len(items) == 0 {
		return query.Result{}, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no record of %s", ds.Name)
	}
	recs := make([]*v1.SourceRecord, len(items))
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return query.Result{}, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return query.Result{}, err
		}
		s, err := structpb.NewStruct(m)
		if err != nil {
			return query.Result{}, err
		}
		recs[i] = &v1.SourceRecord{Id: ids[i], Fields: s}
	}
	if f.edit != nil {
		f.edit(ds.Name, recs)
	}
	return query.Result{Records: recs, Delivery: v1.Delivery_DELIVERY_LIVE, FetchedAt: time.Now()}, nil
}

type fakeRecorder struct {
	mu  sync.Mutex
	got []query.Exchange
	err error
}

func (r *fakeRecorder) RecordExchange(_ context.Context, ex query.Exchange) (*v1.Receipt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.got = append(r.got, ex)
	return &v1.Receipt{Node: "test", LeafIndex: uint64(len(r.got) - 1)}, nil
}

func (r *fakeRecorder) exchanges() []query.Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]query.Exchange(nil), r.got...)
}

var approvalBureau = policy.Principal{SystemID: "approval-bureau", Department: "approval", Region: "130100"}

type testEngine struct {
	*Engine
	fetch *simFetcher
	rec   *fakeRecorder
	store *MemoryStore
}

func newEngine(t testing.TB, grants []*v1.Grant) *testEngine {
	t.Helper()
	dict := datasets.Default()
	cat, err := forms.Load(dict)
	if err != nil {
		t.Fatal(err)
	}
	if grants == nil {
		grants = policy.DemoGrants(time.Now())
	}
	te := &testEngine{fetch: newSimFetcher(), rec: &fakeRecorder{}, store: NewMemoryStore()}
	te.Engine = &Engine{
		Dict:        dict,
		Forms:       cat,
		Policy:      snapshotDecider{policy.Prepare(dict, grants, 1)},
		Fetch:       te.fetch,
		Record:      te.rec,
		Corrections: te.store,
	}
	return te
}

func fieldOf(t *testing.T, resp *v1.AutofillResponse, name string) *v1.FilledField {
	t.Helper()
	for _, f := range resp.GetFields() {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("form %s has no field %s", resp.GetForm(), name)
	return nil
}

func materialOf(t *testing.T, resp *v1.AutofillResponse, name string) *v1.MaterialStatus {
	t.Helper()
	for _, m := range resp.GetMaterials() {
		if m.GetName() == name {
			return m
		}
	}
	t.Fatalf("form %s has no material %s", resp.GetForm(), name)
	return nil
}

type queryExchange = query.Exchange

func formsText(v *structpb.Value) string { return forms.Text(v.AsInterface()) }
