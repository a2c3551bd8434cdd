// Package storetest is the conformance suite every store.Store passes. A
// store package's test calls Run with a constructor that returns a fresh,
// empty store for each subtest.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Grant returns a complete, valid grant with the given id, for tests.
func Grant(id, dataset, systemID string) *v1.Grant {
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC))
	return &v1.Grant{
		Id:           id,
		Consumer:     &v1.Consumer{SystemId: systemID, Department: "approval"},
		Dataset:      dataset,
		Fields:       []string{"credit_code", "name", "legal_representative_id"},
		Masks:        []*v1.FieldMask{{Field: "legal_representative_id", Mask: v1.MaskKind_MASK_KIND_RESIDENT_ID}},
		Purposes:     []string{"approval"},
		LegalBasis:   "《中华人民共和国行政许可法》第三十三条",
		Jurisdiction: "1301",
		ValidFrom:    at,
		ValidUntil:   timestamppb.New(at.AsTime().AddDate(1, 0, 0)),
		Quota:        &v1.Quota{PerMinute: 60, PerDay: 1000},
		State:        v1.GrantState_GRANT_STATE_PROPOSED,
		ProposedBy:   "admin-1",
		History: []*v1.GrantTransition{{
			From: v1.GrantState_GRANT_STATE_UNSPECIFIED, To: v1.GrantState_GRANT_STATE_PROPOSED,
			Actor: "admin-1", ActorRole: "admin", At: at, Opinion: "申请共享营业执照信息",
		}},
	}
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if got := apierr.CodeOf(err); got != code {
		t.Fatalf("%s: error %v has code %v, want %v", what, err, got, code)
	}
}

// Run runs the conformance suite. newStore returns a fresh, empty store; Run
// closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	open := func(t *testing.T) (store.Store, context.Context) {
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		return s, ctx
	}

	t.Run("CreateGet", func(t *testing.T) {
		s, ctx := open(t)
		g := Grant("g-1", "market.business_licences", "approval-bureau")
		rec, err := s.Create(ctx, g)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if rec.Version != 1 || rec.Revision != 1 || rec.UpdatedAt.IsZero() {
			t.Errorf("Create record = version %d revision %d at %v, want 1, 1, set", rec.Version, rec.Revision, rec.UpdatedAt)
		}
		if !proto.Equal(rec.Grant, g) {
			t.Errorf("Create returned %v, want %v", rec.Grant, g)
		}
		got, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !proto.Equal(got.Grant, g) {
			t.Errorf("Get = %v, want %v", got.Grant, g)
		}
		if got.Version != 1 || got.Revision != 1 {
			t.Errorf("Get version %d revision %d, want 1, 1", got.Version, got.Revision)
		}
		// Callers own returned messages.
		got.Grant.Fields[0] = "changed"
		g.Dataset = "changed"
		again, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatal(err)
		}
		if again.Grant.Fields[0] != "credit_code" || again.Grant.Dataset != "market.business_licences" {
			t.Errorf("store shares messages with callers: %v", again.Grant)
		}
	})

	t.Run("CreateErrors", func(t *testing.T) {
		s, ctx := open(t)
		if _, err := s.Create(ctx, Grant("g-1", "market.business_licences", "a")); err != nil {
			t.Fatal(err)
		}
		_, err := s.Create(ctx, Grant("g-1", "approval.permits", "b"))
		wantCode(t, err, codes.AlreadyExists, "Create of an existing id")
		_, err = s.Create(ctx, Grant("", "approval.permits", "b"))
		wantCode(t, err, codes.InvalidArgument, "Create without id")
		_, err = s.Create(ctx, nil)
		wantCode(t, err, codes.InvalidArgument, "Create of nil")
		rev, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rev != 1 {
			t.Errorf("revision after failed creates = %d, want 1", rev)
		}
		got, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Grant.Dataset != "market.business_licences" {
			t.Errorf("failed Create overwrote the grant: %v", got.Grant)
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		s, ctx := open(t)
		_, err := s.Get(ctx, "nope")
		wantCode(t, err, codes.NotFound, "Get of an unknown id")
	})

	t.Run("Update", func(t *testing.T) {
		s, ctx := open(t)
		g := Grant("g-1", "market.business_licences", "a")
		if _, err := s.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
		g.State = v1.GrantState_GRANT_STATE_ACTIVE
		g.History = append(g.History, &v1.GrantTransition{From: v1.GrantState_GRANT_STATE_PROPOSED, To: v1.GrantState_GRANT_STATE_ACTIVE, Actor: "admin-2", ActorRole: "admin"})
		rec, err := s.Update(ctx, g, 1)
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if rec.Version != 2 || rec.Revision != 2 {
			t.Errorf("Update record version %d revision %d, want 2, 2", rec.Version, rec.Revision)
		}
		got, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got.Grant, g) || got.Version != 2 {
			t.Errorf("Get after Update = %v (version %d), want %v", got.Grant, got.Version, g)
		}
		_, err = s.Update(ctx, g, 1)
		wantCode(t, err, codes.Aborted, "Update at a stale version")
		if apierr.ReasonOf(err) != apierr.ReasonConflict {
			t.Errorf("stale Update reason = %s, want %s", apierr.ReasonOf(err), apierr.ReasonConflict)
		}
		_, err = s.Update(ctx, Grant("nope", "x.y", "a"), 1)
		wantCode(t, err, codes.NotFound, "Update of an unknown id")
		if rev, _ := s.Revision(ctx); rev != 2 {
			t.Errorf("revision after failed updates = %d, want 2", rev)
		}
	})

	t.Run("List", func(t *testing.T) {
		s, ctx := open(t)
		mk := func(id, dataset, system, dept string, st v1.GrantState) {
			g := Grant(id, dataset, system)
			g.Consumer.Department = dept
			if system == "" {
				g.Consumer.Role = "officer"
			}
			g.State = st
			if _, err := s.Create(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		active, proposed, revoked := v1.GrantState_GRANT_STATE_ACTIVE, v1.GrantState_GRANT_STATE_PROPOSED, v1.GrantState_GRANT_STATE_REVOKED
		mk("g-3", "approval.permits", "enforcement-platform", "enforcement", active)
		mk("g-1", "market.business_licences", "approval-bureau", "approval", active)
		mk("g-2", "market.business_licences", "", "enforcement", proposed)
		mk("g-4", "resources.parcels", "approval-bureau", "approval", revoked)
		tests := []struct {
			name string
			f    store.Filter
			want []string
		}{
			{"all", store.Filter{}, []string{"g-1", "g-2", "g-3", "g-4"}},
			{"state", store.Filter{State: active}, []string{"g-1", "g-3"}},
			{"dataset", store.Filter{Dataset: "market.business_licences"}, []string{"g-1", "g-2"}},
			{"system", store.Filter{SystemID: "approval-bureau"}, []string{"g-1", "g-4"}},
			{"department", store.Filter{Department: "enforcement"}, []string{"g-2", "g-3"}},
			{"combined", store.Filter{Dataset: "market.business_licences", State: proposed, Department: "enforcement"}, []string{"g-2"}},
			{"none", store.Filter{Dataset: "nothing.here"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				recs, err := s.List(ctx, tt.f)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, r := range recs {
					ids = append(ids, r.Grant.GetId())
					if r.Version != 1 || r.Grant.GetLegalBasis() == "" {
						t.Errorf("record %s incomplete: version %d, %v", r.Grant.GetId(), r.Version, r.Grant)
					}
				}
				if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
					t.Errorf("List(%+v) = %v, want %v", tt.f, ids, tt.want)
				}
			})
		}
	})

	t.Run("RevisionAndChanges", func(t *testing.T) {
		s, ctx := open(t)
		rev, err := s.Revision(ctx)
		if err != nil || rev != 0 {
			t.Fatalf("Revision of an empty store = %d, %v; want 0", rev, err)
		}
		for _, id := range []string{"g-1", "g-2", "g-3"} {
			if _, err := s.Create(ctx, Grant(id, "approval.permits", "a")); err != nil {
				t.Fatal(err)
			}
		}
		g1, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatal(err)
		}
		g1.Grant.State = v1.GrantState_GRANT_STATE_REVOKED
		if _, err := s.Update(ctx, g1.Grant, g1.Version); err != nil {
			t.Fatal(err)
		}
		changes, now, err := s.Changes(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if now != 4 {
			t.Errorf("Changes revision = %d, want 4", now)
		}
		var got []string
		for _, c := range changes {
			got = append(got, fmt.Sprintf("%s@%d", c.Grant.GetId(), c.Revision))
		}
		if fmt.Sprint(got) != "[g-3@3 g-1@4]" {
			t.Errorf("Changes(2) = %v, want [g-3@3 g-1@4]", got)
		}
		if changes[1].Grant.GetState() != v1.GrantState_GRANT_STATE_REVOKED {
			t.Errorf("Changes gave the old grant: %v", changes[1].Grant)
		}
		none, now, err := s.Changes(ctx, 4)
		if err != nil || len(none) != 0 || now != 4 {
			t.Errorf("Changes(4) = %d records at %d, %v; want none at 4", len(none), now, err)
		}
	})

	t.Run("ConcurrentUpdatesOneWins", func(t *testing.T) {
		s, ctx := open(t)
		if _, err := s.Create(ctx, Grant("g-1", "approval.permits", "a")); err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := Grant("g-1", "approval.permits", "a")
				g.ProposedBy = fmt.Sprintf("writer-%d", i)
				_, errs[i] = s.Update(ctx, g, 1)
			}()
		}
		wg.Wait()
		wins := 0
		var winner string
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = fmt.Sprintf("writer-%d", i)
			case apierr.CodeOf(err) != codes.Aborted:
				t.Errorf("writer %d: %v, want success or Aborted", i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d concurrent updates at the same version won, want exactly 1", wins)
		}
		got, err := s.Get(ctx, "g-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Grant.ProposedBy != winner || got.Version != 2 {
			t.Errorf("stored %s at version %d, want the winner %s at version 2", got.Grant.ProposedBy, got.Version, winner)
		}
	})

	t.Run("ConcurrentCreatesDistinctRevisions", func(t *testing.T) {
		s, ctx := open(t)
		const n = 16
		var wg sync.WaitGroup
		recs := make([]store.Record, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				recs[i], errs[i] = s.Create(ctx, Grant(fmt.Sprintf("g-%02d", i), "approval.permits", "a"))
			}()
		}
		wg.Wait()
		seen := map[int64]bool{}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Create %d: %v", i, errs[i])
			}
			if seen[recs[i].Revision] {
				t.Errorf("revision %d given twice", recs[i].Revision)
			}
			seen[recs[i].Revision] = true
		}
		if rev, err := s.Revision(ctx); err != nil || rev != n {
			t.Errorf("Revision = %d, %v; want %d", rev, err, n)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s, _ := open(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Create(ctx, Grant("g-1", "approval.permits", "a")); err == nil {
			t.Error("Create with a cancelled context succeeded")
		}
		if _, err := s.List(ctx, store.Filter{}); err == nil {
			t.Error("List with a cancelled context succeeded")
		}
		if _, err := s.Get(ctx, "g-1"); err == nil {
			t.Error("Get with a cancelled context succeeded")
		}
	})
}
