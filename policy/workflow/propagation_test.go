package workflow

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/store/sqlstore"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var approvalReq = policy.Request{
	Principal: policy.Principal{SystemID: "approval-bureau", Department: "approval"},
	Dataset:   "market.business_licences",
	Fields:    []string{"credit_code", "legal_representative_id"},
	Purpose:   "approval",
}

func activeLicenceGrant(t *testing.T, f *fixture) *v1.Grant {
	t.Helper()
	ctx := context.Background()
	g, err := f.wf.Propose(ctx, admin1, licenceGrant())
	if err != nil {
		t.Fatal(err)
	}
	g, err = f.wf.Review(ctx, admin2, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, "")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestRevokeTakesEffectOnNextDecide(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	eng, err := policy.NewEngine(ctx, f.dict, f.st, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Follow(f.bus, 0)() // no polling: only the bus can update it
	if _, err := eng.Decide(approvalReq); apierr.CodeOf(err) != codes.PermissionDenied {
		t.Fatalf("before any grant: %v, want PermissionDenied", err)
	}
	g := activeLicenceGrant(t, f)
	d, err := eng.Decide(approvalReq)
	if err != nil {
		t.Fatalf("after approval: %v", err)
	}
	if d.Masks["legal_representative_id"] != v1.MaskKind_MASK_KIND_RESIDENT_ID || d.GrantIDs[0] != g.Id {
		t.Errorf("decision = %+v", d)
	}
	if _, err := f.wf.Revoke(ctx, admin1, g.Id, "停止共享"); err != nil {
		t.Fatal(err)
	}
	_, err = eng.Decide(approvalReq)
	if apierr.CodeOf(err) != codes.PermissionDenied || apierr.ReasonOf(err) != policy.ReasonNoGrant {
		t.Fatalf("first Decide after revoke: %v, want PermissionDenied NO_GRANT", err)
	}
}

func TestRevokeUnderLoad(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	eng, err := policy.NewEngine(ctx, f.dict, f.st, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Follow(f.bus, 0)()
	g := activeLicenceGrant(t, f)

	var revoked, stop atomic.Bool
	var allowedAfter, allowedBefore, decisions atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2_000_000 && !stop.Load(); i++ {
				after := revoked.Load() // read before deciding
				_, err := eng.Decide(approvalReq)
				decisions.Add(1)
				if err == nil {
					if after {
						allowedAfter.Add(1)
					} else {
						allowedBefore.Add(1)
					}
				}
			}
		}()
	}
	// Let the deciders run, bounded in count and time.
	for i := 0; i < 1000 && allowedBefore.Load() < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	if _, err := f.wf.Revoke(ctx, admin1, g.Id, "停止共享"); err != nil {
		t.Fatal(err)
	}
	revoked.Store(true)
	base := decisions.Load()
	for i := 0; i < 1000 && decisions.Load() < base+1000; i++ {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if allowedBefore.Load() == 0 {
		t.Fatal("no decision was allowed before the revocation; the test proved nothing")
	}
	if n := allowedAfter.Load(); n > 0 {
		t.Fatalf("%d decisions allowed after the revocation returned", n)
	}
	t.Logf("%d decisions, %d allowed before the revocation, none after", decisions.Load(), allowedBefore.Load())
}

// TestRevocationReachesOtherNode runs two nodes on one SQLite file: node A
// holds the workflow and its own bus, node B only polls the store. B stops
// serving the revoked grant at its next poll.
func TestRevocationReachesOtherNode(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g := activeLicenceGrant(t, f)

	stB, err := sqlstore.Open(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer stB.Close()
	nodeB, err := policy.NewEngine(ctx, f.dict, stB, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	const poll = 100 * time.Millisecond
	defer nodeB.Follow(nil, poll)()
	if _, err := nodeB.Decide(approvalReq); err != nil {
		t.Fatalf("node B before revocation: %v", err)
	}
	if _, err := f.wf.Revoke(ctx, admin1, g.Id, "停止共享"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; ; i++ {
		_, err := nodeB.Decide(approvalReq)
		if apierr.CodeOf(err) == codes.PermissionDenied {
			break
		}
		if i >= 500 {
			t.Fatalf("node B still serves the revoked grant after %v", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("node B denied %v after the revocation (poll every %v)", time.Since(start).Round(time.Millisecond), poll)
}

func TestDecideWithQuota(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	eng, err := policy.NewEngine(ctx, f.dict, f.st, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Follow(f.bus, 0)()
	g := activeLicenceGrant(t, f) // 10 per minute
	lim := policy.NewMemoryLimiter(f.clock.Now)
	for i := range 10 {
		if _, err := policy.DecideWithQuota(ctx, eng, lim, approvalReq); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err = policy.DecideWithQuota(ctx, eng, lim, approvalReq)
	if apierr.CodeOf(err) != codes.ResourceExhausted || apierr.ReasonOf(err) != policy.ReasonQuotaExceeded {
		t.Fatalf("11th request: %v, want ResourceExhausted QUOTA_EXCEEDED", err)
	}
	if m := apierr.From(err).Msg; m != "quota of grant "+g.Id+" (10 per minute) is exhausted for system approval-bureau" {
		t.Errorf("message = %q", m)
	}
	f.clock.Set(t0.Add(time.Minute))
	if _, err := policy.DecideWithQuota(ctx, eng, lim, approvalReq); err != nil {
		t.Fatalf("next minute: %v", err)
	}
}
