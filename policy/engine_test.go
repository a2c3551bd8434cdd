package policy

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/policy/store/sqlstore"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func TestLocalBus(t *testing.T) {
	b := NewLocalBus()
	var mu sync.Mutex
	var got []string
	un1 := b.Subscribe(func(_ context.Context, c Change) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "1:"+c.GrantID)
	})
	un2 := b.Subscribe(func(_ context.Context, c Change) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, "2:"+c.GrantID)
	})
	ctx := context.Background()
	if err := b.Publish(ctx, Change{GrantID: "a", Revision: 1}); err != nil {
		t.Fatal(err)
	}
	un1()
	if err := b.Publish(ctx, Change{GrantID: "b", Revision: 2}); err != nil {
		t.Fatal(err)
	}
	un2()
	if err := b.Publish(ctx, Change{GrantID: "c", Revision: 3}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	joined := strings.Join(got, " ")
	if len(got) != 3 || !strings.Contains(joined, "1:a") || !strings.Contains(joined, "2:a") || !strings.Contains(joined, "2:b") {
		t.Errorf("delivered %v, want 1:a 2:a 2:b", got)
	}
}

func TestEngineRefreshAndPoll(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "grants.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dict := datasets.Default()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	eng, err := NewEngine(ctx, dict, st, EngineOptions{Clock: func() time.Time { return now }, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if eng.Snapshot().Revision() != 0 || eng.Snapshot().Grants() != 0 {
		t.Fatalf("empty store: revision %d, %d grants", eng.Snapshot().Revision(), eng.Snapshot().Grants())
	}
	if changed, err := eng.Refresh(ctx); err != nil || changed {
		t.Fatalf("Refresh with nothing new = %v, %v", changed, err)
	}
	demo := DemoGrants(now)
	broken := DemoGrants(now)[0]
	broken.Id = "broken"
	broken.Fields = append(broken.Fields, "no_such_field")
	proposed := DemoGrants(now)[1]
	proposed.Id, proposed.State = "proposed", v1.GrantState_GRANT_STATE_PROPOSED
	for _, g := range append(demo, broken, proposed) {
		if _, err := st.Create(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	// Written behind the engine's back: only the poll can see it.
	stop := eng.Follow(nil, 20*time.Millisecond)
	defer stop()
	for i := 0; eng.Snapshot().Revision() < int64(len(demo)+2); i++ {
		if i > 500 {
			t.Fatalf("the poll did not pick up the grants; revision %d", eng.Snapshot().Revision())
		}
		time.Sleep(10 * time.Millisecond)
	}
	snap := eng.Snapshot()
	if snap.Grants() != len(demo) {
		t.Errorf("compiled %d grants, want %d (broken and proposed ones skipped)", snap.Grants(), len(demo))
	}
	if sk := snap.Skipped(); len(sk) != 1 || sk[0].GrantID != "broken" {
		t.Errorf("skipped = %v, want the broken grant", sk)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "grant_id=broken") {
		t.Errorf("skipped grant not logged: %s", logs.String())
	}
	logMu.Unlock()
	d, err := eng.Decide(Request{Principal: Principal{SystemID: "enforcement-platform"}, Dataset: "approval.permits", Fields: []string{"applicant_id"}, Purpose: "inspection"})
	if err != nil || d.Masks["applicant_id"] != v1.MaskKind_MASK_KIND_RESIDENT_ID {
		t.Errorf("Decide = %+v, %v", d, err)
	}
	_, err = eng.Decide(Request{Principal: Principal{SystemID: "approval-bureau"}, Dataset: "approval.permits", Purpose: "inspection"})
	if apierr.CodeOf(err) != codes.PermissionDenied || apierr.ReasonOf(err) != ReasonPurposeNotCovered {
		t.Errorf("approval bureau inspecting: %v, want PURPOSE_NOT_COVERED", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestEffectiveState(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	g := DemoGrants(now)[0]
	until := g.ValidUntil.AsTime()
	tests := []struct {
		state v1.GrantState
		at    time.Time
		want  v1.GrantState
	}{
		{v1.GrantState_GRANT_STATE_ACTIVE, until.Add(-time.Nanosecond), v1.GrantState_GRANT_STATE_ACTIVE},
		{v1.GrantState_GRANT_STATE_ACTIVE, until, v1.GrantState_GRANT_STATE_EXPIRED},
		{v1.GrantState_GRANT_STATE_PROPOSED, until, v1.GrantState_GRANT_STATE_EXPIRED},
		{v1.GrantState_GRANT_STATE_REVOKED, until, v1.GrantState_GRANT_STATE_REVOKED},
		{v1.GrantState_GRANT_STATE_REJECTED, until.Add(time.Hour), v1.GrantState_GRANT_STATE_REJECTED},
	}
	for _, tt := range tests {
		g.State = tt.state
		if got := EffectiveState(g, tt.at); got != tt.want {
			t.Errorf("EffectiveState(%v at %v) = %v, want %v", tt.state, tt.at, got, tt.want)
		}
	}
}
