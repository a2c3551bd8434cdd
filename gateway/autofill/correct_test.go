package autofill

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// interleavedStore is a Store whose Resolve first runs hook once: another
// gateway node acting between this node's read of the correction and its
// resolution.
type interleavedStore struct {
	Store
	once sync.Once
	hook func()
}

func (s *interleavedStore) Resolve(ctx context.Context, id, by string, at time.Time, record func(*Correction) error) (*Correction, error) {
	s.once.Do(s.hook)
	return s.Store.Resolve(ctx, id, by, at, record)
}

// raiseCorrection files a correction of the food business licence's
// premises area through te.
func raiseCorrection(t *testing.T, te *testEngine) *v1.Correction {
	t.Helper()
	c, err := te.CreateCorrection(context.Background(), approvalBureau, "raise", &v1.CreateCorrectionRequest{
		Form: "food_business_licence", ApplicantId: sim().SampleEnterprise().CreditCode, Field: "premises_area", ProposedValue: "24000",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resolutions returns the audit records of resolutions among ex: the
// correction records whose digest commits to c resolved, with its record
// id as the reference refs gives (none when refs is nil). c is the
// correction as returned to a raiser who was shown the real record id.
func resolutions(t *testing.T, refs *query.RecordRefs, ex []queryExchange, c *v1.Correction) int {
	t.Helper()
	resolved := &Correction{ID: c.GetId(), Form: c.GetForm(), Field: c.GetField(), Dataset: c.GetDataset(), Department: c.GetDepartment(),
		RecordID: c.GetRecordId(), CurrentValue: c.GetCurrentValue(), ProposedValue: c.GetProposedValue(), Comment: c.GetComment(),
		State: StateResolved, RaisedBy: c.GetRaisedBy(), RaisedAt: c.GetRaisedAt().AsTime()}
	audited := resolved.Proto()
	audited.RecordId = refs.Ref(c.GetDataset(), c.GetRecordId())
	want, err := correctionDigest(audited)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ex {
		if e.Kind == KindCorrection && e.ResponseDigest == want {
			n++
		}
	}
	return n
}

// TestResolveRace: two gateway nodes share the queue; node B resolves the
// correction after node A has read it as open and before A resolves it.
// Exactly one resolution happens, so exactly one is recorded, by B: A's
// log must not claim a resolution that did not happen.
func TestResolveRace(t *testing.T) {
	ctx := context.Background()
	a, b := newEngine(t, nil), newEngine(t, nil)
	b.Corrections = a.store // one shared queue
	desk := policy.Principal{SystemID: "resources-desk", Department: "resources"}
	c := raiseCorrection(t, a)

	var bRes *v1.Correction
	var bErr error
	a.Corrections = &interleavedStore{Store: a.store, hook: func() {
		bRes, bErr = b.ResolveCorrection(ctx, desk, "b", c.GetId())
	}}
	_, aErr := a.ResolveCorrection(ctx, desk, "a", c.GetId())

	if bErr != nil || bRes.GetState() != StateResolved {
		t.Fatalf("node B: %v, %v; want resolved", bRes, bErr)
	}
	if apierr.CodeOf(aErr) != codes.FailedPrecondition {
		t.Errorf("node A: err = %v, want FailedPrecondition", aErr)
	}
	if n := resolutions(t, b.Refs, b.rec.exchanges(), c); n != 1 {
		t.Errorf("node B's log records %d resolutions, want 1", n)
	}
	if n := resolutions(t, a.Refs, a.rec.exchanges(), c); n != 0 {
		t.Errorf("node A's log records %d resolutions of a correction node A did not resolve", n)
	}
}

// TestResolveAuditFailure: a resolution that cannot be recorded is
// refused and does not take effect; once the log is back, it can be made,
// and is recorded once.
func TestResolveAuditFailure(t *testing.T) {
	ctx := context.Background()
	te := newEngine(t, nil)
	desk := policy.Principal{SystemID: "resources-desk", Department: "resources"}
	c := raiseCorrection(t, te)

	te.rec.mu.Lock()
	te.rec.err = errors.New("disk full")
	te.rec.mu.Unlock()
	if _, err := te.ResolveCorrection(ctx, desk, "r1", c.GetId()); apierr.CodeOf(err) != codes.Unavailable || apierr.ReasonOf(err) != apierr.ReasonAuditUnavailable {
		t.Fatalf("resolve with the audit log down: err = %v, want Unavailable AUDIT_UNAVAILABLE", err)
	}
	if open, _ := te.ListCorrections(ctx, Filter{State: StateOpen}); len(open) != 1 {
		t.Fatalf("open corrections after a refused resolution = %d, want 1", len(open))
	}

	te.rec.mu.Lock()
	te.rec.err = nil
	te.rec.mu.Unlock()
	res, err := te.ResolveCorrection(ctx, desk, "r2", c.GetId())
	if err != nil || res.GetState() != StateResolved {
		t.Fatalf("resolve = %v, %v", res, err)
	}
	if n := resolutions(t, te.Refs, te.rec.exchanges(), c); n != 1 {
		t.Errorf("log records %d resolutions, want 1", n)
	}
	if _, err := te.ResolveCorrection(ctx, desk, "r3", c.GetId()); apierr.CodeOf(err) != codes.FailedPrecondition {
		t.Errorf("resolve twice: err = %v", err)
	}
	if n := resolutions(t, te.Refs, te.rec.exchanges(), c); n != 1 {
		t.Errorf("log records %d resolutions after a second attempt, want 1", n)
	}
}
