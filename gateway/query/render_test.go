package query

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/pbjson"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// renderCase is one caller and query of the rendering tests.
type renderCase struct {
	system string
	query  *v1.QueryRequest
}

// renderCases are callers with different grants (all fields, fields
// withheld, a key redacted, the key masked in part of the jurisdiction) and
// queries that ask for all fields, some, or the key, so that one source
// record is shaped many different ways.
func renderCases() []renderCase {
	lic := "market.business_licences"
	byStatus := func(fields ...string) *v1.QueryRequest {
		return &v1.QueryRequest{Dataset: lic, Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: fields}
	}
	var out []renderCase
	for _, system := range []string{"approval-bureau", "withheld-sys", "masked-sys", "split-sys"} {
		for _, q := range []*v1.QueryRequest{
			byStatus(), byStatus("name"), byStatus("name", "status"), byStatus("credit_code", "name", "region_code"), byStatus("legal_representative_id"),
			{Dataset: lic, Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"},
			{Dataset: lic, Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval", Fields: []string{"legal_representative_id"}},
		} {
			out = append(out, renderCase{system, q})
		}
	}
	return out
}

// answerOf runs c on p and returns the answer and the digest recorded.
func answerOf(t *testing.T, p *Pipeline, rec *fakeRecorder, c renderCase) (Answer, string, error) {
	t.Helper()
	who := policy.Principal{SystemID: c.system, Department: "d-" + c.system, Region: "130100"}
	if c.system == "approval-bureau" {
		who = approvalBureau
	}
	a, err := p.RunAnswer(context.Background(), Request{Principal: who, RequestID: "r", Query: c.query})
	if err != nil {
		return a, "", err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return a, rec.got[len(rec.got)-1].ResponseDigest, nil
}

// TestRenderingsMatchFreshShaping: an answer made from kept renderings is
// the answer shaping the records afresh gives, whatever the order in which
// callers with different grants ask, and the JSON kept with it is the JSON
// of its fields.
func TestRenderingsMatchFreshShaping(t *testing.T) {
	fetched := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	now := func() time.Time { return fetched.Add(90 * time.Second) }
	records := []*v1.SourceRecord{licenceWith(goodCode, "130104"), licenceWith(otherCode, "130105")}
	sharedRec, freshRec := &fakeRecorder{}, &fakeRecorder{}
	shared := idPipeline(t, mustRefs(t, refKey), &fakeFetcher{records: records, shared: true, fetchedAt: fetched}, sharedRec)
	fresh := idPipeline(t, mustRefs(t, refKey), &fakeFetcher{records: records, shared: true, fetchedAt: fetched}, freshRec)
	shared.Now, fresh.Now = now, now
	fresh.renderOnce.Do(func() {}) // leaves its table nil: it shapes afresh every time

	cases := renderCases()
	for round := range 3 {
		// Every case, in a different order each round.
		for _, i := range rand.New(rand.NewPCG(1, uint64(round))).Perm(len(cases)) {
			c := cases[i]
			name := fmt.Sprintf("round %d, %s %v fields %v", round, c.system, c.query.GetKeys(), c.query.GetFields())
			got, gotDigest, gotErr := answerOf(t, shared, sharedRec, c)
			want, wantDigest, wantErr := answerOf(t, fresh, freshRec, c)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("%s: error %v, shaping afresh %v", name, gotErr, wantErr)
			}
			if gotErr != nil {
				continue
			}
			if fresh.render != nil || want.FieldsJSON != nil {
				t.Fatal("the fresh pipeline kept renderings")
			}
			if !proto.Equal(got.Response, want.Response) {
				t.Fatalf("%s: answers differ\nkept:  %v\nfresh: %v", name, got.Response, want.Response)
			}
			if gotDigest != wantDigest {
				t.Fatalf("%s: recorded digest %s, shaping afresh %s", name, gotDigest, wantDigest)
			}
			if len(got.FieldsJSON) != len(got.Response.Records) {
				t.Fatalf("%s: %d JSON renderings for %d records", name, len(got.FieldsJSON), len(got.Response.Records))
			}
			for j, r := range got.Response.Records {
				js, _ := pbjson.AppendStruct(nil, r.GetFields())
				if !bytes.Equal(got.FieldsJSON[j], js) {
					t.Fatalf("%s: record %d: kept JSON %s, fields %s", name, j, got.FieldsJSON[j], js)
				}
			}
		}
	}
	if shared.render == nil {
		t.Fatal("no renderings kept")
	}
}

// TestRenderingsFollowTheRecords: a record replaced in the cache (a new
// value) is shaped afresh; an answer never shows the old one.
func TestRenderingsFollowTheRecords(t *testing.T) {
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}, shared: true, fetchedAt: time.Now()}
	p := newPipeline(t, f, &fakeRecorder{})
	q := Request{Principal: approvalBureau, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}}
	first, err := p.RunAnswer(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.RunAnswer(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if again.Response.Records[0].Fields != first.Response.Records[0].Fields {
		t.Fatal("the second answer did not reuse the rendering of the same record")
	}
	changed := licence("130104")
	changed.Fields.Fields["name"] = structpb.NewStringValue("石家庄新名称有限公司")
	f.records = []*v1.SourceRecord{changed}
	after, err := p.RunAnswer(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Response.Records[0].GetFields().GetFields()["name"].GetStringValue(); got != "石家庄新名称有限公司" {
		t.Fatalf("name after the record changed = %q", got)
	}
	if !bytes.Contains(after.FieldsJSON[0], []byte("石家庄新名称有限公司")) {
		t.Fatalf("kept JSON after the record changed: %s", after.FieldsJSON[0])
	}
}

// TestSoleDigestFollowsProvenance: the digest kept with a rendering for
// one-record answers is the digest of the answer given, also when the same
// kept record is delivered otherwise (stale) and then as before.
func TestSoleDigestFollowsProvenance(t *testing.T) {
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}, shared: true, fetchedAt: time.Now()}
	rec := &fakeRecorder{}
	p := newPipeline(t, f, rec)
	c := renderCase{"approval-bureau", &v1.QueryRequest{
		Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}}
	seen := map[v1.Delivery]string{}
	for _, d := range []v1.Delivery{v1.Delivery_DELIVERY_CACHE, v1.Delivery_DELIVERY_CACHE, v1.Delivery_DELIVERY_STALE, v1.Delivery_DELIVERY_CACHE, v1.Delivery_DELIVERY_STALE} {
		f.delivery = d
		a, recorded, err := answerOf(t, p, rec, c)
		if err != nil {
			t.Fatal(err)
		}
		want, err := digestOf(a.Response.Records, nil)
		if err != nil {
			t.Fatal(err)
		}
		if recorded != want {
			t.Fatalf("%v: recorded digest %s, digest of the answer %s", d, recorded, want)
		}
		seen[d] = recorded
	}
	if seen[v1.Delivery_DELIVERY_CACHE] == seen[v1.Delivery_DELIVERY_STALE] {
		t.Fatal("cached and stale deliveries have the same digest")
	}
	if f.calls != 5 {
		t.Fatalf("%d fetches", f.calls)
	}
}

// TestRenderingsConcurrent runs callers with different grants at once on
// shared records (for the race detector), each checking its answer against
// the one it got alone.
func TestRenderingsConcurrent(t *testing.T) {
	records := []*v1.SourceRecord{licenceWith(goodCode, "130104"), licenceWith(otherCode, "130105")}
	rec := &fakeRecorder{}
	p := idPipeline(t, mustRefs(t, refKey), &fakeFetcher{records: records, shared: true, fetchedAt: time.Now()}, rec)
	p.Now = func() time.Time { return time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC) }
	cases := renderCases()
	want := make([]*v1.QueryResponse, len(cases))
	for i, c := range cases {
		if a, _, err := answerOf(t, p, rec, c); err == nil {
			want[i] = withoutReceipt(a.Response)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cases))
	for i, c := range cases {
		wg.Go(func() {
			who := policy.Principal{SystemID: c.system, Department: "d-" + c.system, Region: "130100"}
			if c.system == "approval-bureau" {
				who = approvalBureau
			}
			for range 20 {
				a, err := p.RunAnswer(context.Background(), Request{Principal: who, RequestID: "r", Query: c.query})
				if (err == nil) != (want[i] != nil) {
					errs <- fmt.Errorf("case %d: error %v", i, err)
					return
				}
				if err == nil && !proto.Equal(withoutReceipt(a.Response), want[i]) {
					errs <- fmt.Errorf("case %d: answer changed under concurrency", i)
					return
				}
				// Answers sharing kept fields are encoded at once, as the
				// gRPC and REST front ends do.
				if err == nil {
					if _, err := proto.Marshal(a.Response); err != nil {
						errs <- fmt.Errorf("case %d: marshalling: %v", i, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// withoutReceipt is r without its receipt, which differs for every answer.
func withoutReceipt(r *v1.QueryResponse) *v1.QueryResponse {
	c := proto.CloneOf(r)
	c.Receipt = nil
	return c
}

func TestRenderingsKeyedByShape(t *testing.T) {
	src := licence("130104")
	tab := newRenderings()
	ds, _ := idPipeline(t, nil, &fakeFetcher{}, &fakeRecorder{}).Dict.Dataset("market.business_licences")
	r := &rendering{src: src, ds: ds, sig: "i name\x00\x00"}
	tab.put(r)
	if tab.get(src, ds, []byte(r.sig)) != r {
		t.Fatal("a kept rendering is not found")
	}
	for name, miss := range map[string]func() *rendering{
		"other shape":  func() *rendering { return tab.get(src, ds, []byte("h name\x00\x00")) },
		"other record": func() *rendering { return tab.get(licence("130104"), ds, []byte(r.sig)) },
		"other dataset": func() *rendering {
			other, _ := idPipeline(t, nil, &fakeFetcher{}, &fakeRecorder{}).Dict.Dataset("market.enterprises")
			return tab.get(src, other, []byte(r.sig))
		},
	} {
		if got := miss(); got != nil {
			t.Errorf("%s: found the rendering of another key", name)
		}
	}
}

// TestRenderingsKeepCollidingKeys: two records whose keys share a slot are
// both kept, so that hot records that collide do not displace each other
// on every hit.
func TestRenderingsKeepCollidingKeys(t *testing.T) {
	tab := newRenderings()
	ds, _ := idPipeline(t, nil, &fakeFetcher{}, &fakeRecorder{}).Dict.Dataset("market.business_licences")
	sig := []byte("i name\x00\x00")
	bySlot := map[*atomic.Pointer[rendering]]*v1.SourceRecord{}
	var first, second *v1.SourceRecord
	for range 100000 {
		src := licence("130104")
		a, _ := tab.pair(src, ds, sig)
		if other, ok := bySlot[a]; ok {
			first, second = other, src
			break
		}
		bySlot[a] = src
	}
	if first == nil {
		t.Fatal("no two keys share a slot")
	}
	r1 := &rendering{src: first, ds: ds, sig: string(sig)}
	r2 := &rendering{src: second, ds: ds, sig: string(sig)}
	tab.put(r1)
	tab.put(r2)
	if tab.get(first, ds, sig) != r1 || tab.get(second, ds, sig) != r2 {
		t.Fatal("a rendering was displaced by one whose key shares its slot")
	}
	// Storing a key again replaces its own rendering, in place.
	r1b := &rendering{src: first, ds: ds, sig: string(sig)}
	tab.put(r1b)
	if tab.get(first, ds, sig) != r1b || tab.get(second, ds, sig) != r2 {
		t.Fatal("a renewed rendering was not found, or displaced its neighbour")
	}
}
