// Package correctiontest is the conformance suite every corrections store
// (autofill.Store) passes.
package correctiontest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/schemas/apierr"
)

// Run runs the suite; newStore returns an empty store.
func Run(t *testing.T, newStore func(t *testing.T) autofill.Store) {
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	mk := func(id, dep string, at time.Time) *autofill.Correction {
		return &autofill.Correction{
			ID: id, Form: "food_business_licence", Field: "premises_area", ApplicantID: "91130109MAAY40HT30",
			Dataset: dep + ".x", SourceField: "area_sqm", Department: dep, RecordID: "r-" + id,
			CurrentValue: "24490.8", ProposedValue: "24000", Comment: "测绘面积有误", State: autofill.StateOpen,
			RaisedBy: "approval-bureau", RaisedAt: at,
		}
	}

	t.Run("add list filter", func(t *testing.T) {
		s := newStore(t)
		for i, dep := range []string{"resources", "market", "resources"} {
			if err := s.Add(ctx, mk(fmt.Sprintf("c%d", i), dep, base.Add(time.Duration(3-i)*time.Minute))); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.List(ctx, autofill.Filter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("list = %v, %v", all, err)
		}
		if all[0].ID != "c2" || all[2].ID != "c0" {
			t.Errorf("order = %s %s %s, want oldest first", all[0].ID, all[1].ID, all[2].ID)
		}
		want := mk("c2", "resources", base.Add(time.Minute))
		if got := all[0]; *got != *want {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
		res, _ := s.List(ctx, autofill.Filter{Department: "resources"})
		if len(res) != 2 {
			t.Errorf("resources = %d, want 2", len(res))
		}
		none, _ := s.List(ctx, autofill.Filter{ApplicantID: "other"})
		if len(none) != 0 {
			t.Errorf("other applicant = %d", len(none))
		}
		if err := s.Add(ctx, mk("c0", "market", base)); err == nil {
			t.Error("duplicate id accepted")
		}
	})

	t.Run("resolve and count", func(t *testing.T) {
		s := newStore(t)
		for i := range 3 {
			if err := s.Add(ctx, mk(fmt.Sprintf("c%d", i), "resources", base.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		at := base.Add(time.Hour)
		var recorded []autofill.Correction
		record := func(c *autofill.Correction) error {
			recorded = append(recorded, *c)
			return nil
		}
		c, err := s.Resolve(ctx, "c1", "resources-desk", at, record)
		if err != nil || c.State != autofill.StateResolved || c.ResolvedBy != "resources-desk" || !c.ResolvedAt.Equal(at) {
			t.Fatalf("resolve = %+v, %v", c, err)
		}
		if len(recorded) != 1 || recorded[0] != *c {
			t.Errorf("record saw %+v, want the correction as resolved %+v", recorded, c)
		}
		if _, err := s.Resolve(ctx, "c1", "x", at, record); apierr.CodeOf(err) != codes.FailedPrecondition {
			t.Errorf("resolve twice: err = %v", err)
		}
		if _, err := s.Resolve(ctx, "nope", "x", at, record); apierr.CodeOf(err) != codes.NotFound {
			t.Errorf("resolve unknown: err = %v", err)
		}
		if len(recorded) != 1 {
			t.Errorf("record called %d times, want once: not for a resolution that fails", len(recorded))
		}
		open, _ := s.List(ctx, autofill.Filter{State: autofill.StateOpen})
		if len(open) != 2 {
			t.Errorf("open = %d", len(open))
		}
		if err := s.Add(ctx, mk("m1", "market", base)); err != nil {
			t.Fatal(err)
		}
		counts, err := s.Counts(ctx)
		want := []autofill.Count{{Department: "market", Open: 1}, {Department: "resources", Open: 2, Resolved: 1}}
		if err != nil || fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Errorf("counts = %v, %v, want %v", counts, err, want)
		}
	})

	t.Run("record fails", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, mk("c1", "resources", base)); err != nil {
			t.Fatal(err)
		}
		refused := apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable, "audit log down")
		if _, err := s.Resolve(ctx, "c1", "desk", base.Add(time.Hour), func(*autofill.Correction) error { return refused }); err != refused {
			t.Fatalf("resolve with a failing record: err = %v, want the record's error unchanged", err)
		}
		got, err := s.List(ctx, autofill.Filter{})
		if err != nil || len(got) != 1 || *got[0] != *mk("c1", "resources", base) {
			t.Fatalf("after a failed record: %+v, %v; want the correction unchanged (open)", got, err)
		}
		// It can still be resolved, and without a record function.
		if c, err := s.Resolve(ctx, "c1", "desk", base.Add(time.Hour), nil); err != nil || c.State != autofill.StateResolved {
			t.Fatalf("resolve after a failed record = %+v, %v", c, err)
		}
	})

	t.Run("concurrent resolves record once", func(t *testing.T) {
		s := newStore(t)
		if err := s.Add(ctx, mk("c1", "resources", base)); err != nil {
			t.Fatal(err)
		}
		const resolvers = 8
		var mu sync.Mutex
		var recorded []string
		var won []string
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range resolvers {
			wg.Go(func() {
				<-start
				by := fmt.Sprintf("desk-%d", i)
				// The first resolver's record fails, so another resolves.
				_, err := s.Resolve(ctx, "c1", by, base.Add(time.Hour), func(c *autofill.Correction) error {
					mu.Lock()
					defer mu.Unlock()
					if c.ResolvedBy != by || c.State != autofill.StateResolved {
						t.Errorf("record of %s saw %+v", by, c)
					}
					recorded = append(recorded, by)
					if len(recorded) == 1 {
						return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable, "audit log down")
					}
					return nil
				})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, by)
				case apierr.CodeOf(err) != codes.FailedPrecondition && apierr.CodeOf(err) != codes.Unavailable:
					t.Errorf("%s: err = %v", by, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(won) != 1 || len(recorded) != 2 || recorded[1] != won[0] {
			t.Fatalf("won %v, recorded %v: want one winner, recorded after the one whose record failed", won, recorded)
		}
		got, err := s.List(ctx, autofill.Filter{State: autofill.StateResolved})
		if err != nil || len(got) != 1 || got[0].ResolvedBy != won[0] {
			t.Errorf("resolved = %+v, %v; want resolved by %s", got, err, won[0])
		}
	})

	t.Run("concurrent adds", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				if err := s.Add(ctx, mk(fmt.Sprintf("p%02d", i), "approval", base)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		all, err := s.List(ctx, autofill.Filter{})
		if err != nil || len(all) != 20 {
			t.Fatalf("list = %d, %v", len(all), err)
		}
	})
}
