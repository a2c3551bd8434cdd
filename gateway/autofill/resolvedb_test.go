package autofill_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/autofill/correctiondb"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// callerGoneRecorder holds each append until the caller's context ends,
// then, the entry having been queued, records it and returns its own
// context's error if that ended (as the audit log does).
type callerGoneRecorder struct {
	caller  context.Context
	entered chan struct{}
	once    sync.Once

	mu  sync.Mutex
	got []query.Exchange
}

func (r *callerGoneRecorder) RecordExchange(ctx context.Context, ex query.Exchange) (*v1.Receipt, error) {
	r.once.Do(func() { close(r.entered) })
	safety := time.NewTimer(30 * time.Second) // bounds a broken test
	defer safety.Stop()
	select {
	case <-r.caller.Done():
	case <-ctx.Done():
	case <-safety.C:
	}
	r.mu.Lock()
	r.got = append(r.got, ex)
	n := len(r.got)
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &v1.Receipt{Node: "test", LeafIndex: uint64(n - 1)}, nil
}

// TestResolveCommitsInTheDatabaseAfterTheCallerLeft: with the SQL store,
// whose transaction database/sql rolls back when its context ends, a
// resolution whose audit entry is confirmed after the caller left still
// commits.
func TestResolveCommitsInTheDatabaseAfterTheCallerLeft(t *testing.T) {
	bg := context.Background()
	store, err := correctiondb.Open(bg, filepath.Join(t.TempDir(), "corrections.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Add(bg, &autofill.Correction{
		ID: "c1", Form: "food_business_licence", Field: "premises_area", ApplicantID: "91130109MAAY40HT30",
		Dataset: "resources.land_use_certificates", SourceField: "area_sqm", Department: "resources", RecordID: "r-1",
		CurrentValue: "24490.8", ProposedValue: "24000", State: autofill.StateOpen, RaisedBy: "approval-bureau",
		RaisedAt: time.Unix(1700000000, 0).UTC(),
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	rec := &callerGoneRecorder{caller: ctx, entered: make(chan struct{})}
	e := &autofill.Engine{Corrections: store, Record: rec}

	type result struct {
		c   *v1.Correction
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := e.ResolveCorrection(ctx, policy.Principal{SystemID: "resources-desk", Department: "resources"}, "r", "c1")
		done <- result{c, err}
	}()
	select {
	case <-rec.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the resolution never reached the audit log")
	}
	cancel()
	var got result
	select {
	case got = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the resolution did not end")
	}
	if got.err != nil || got.c.GetState() != autofill.StateResolved {
		t.Fatalf("resolve = %v, %v; want resolved", got.c, got.err)
	}
	list, err := store.List(bg, autofill.Filter{})
	if err != nil || len(list) != 1 || list[0].State != autofill.StateResolved {
		t.Fatalf("stored = %v, %v; want c1 resolved", list, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.got) != 1 {
		t.Fatalf("%d audit entries, want 1", len(rec.got))
	}
}
