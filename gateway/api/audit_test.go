package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/policy/store/sqlstore"
	"github.com/tongban/tongban/policy/workflow"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const (
	auditTestOrigin = "tongban.test/node-1"
	enterpriseID    = "91350100M000100Y43"
	personID        = "11010519491231002X"
)

var auditTestSubjectKey = []byte("api test subject key, 32 bytes!!")

type auditFixture struct {
	log   *audit.Log
	cfg   audit.Config
	vkey  string
	stats *audit.Stats
	rec   *Recorder
	svc   *Audit
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(auditTestOrigin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := audit.Config{Dir: t.TempDir(), Origin: auditTestOrigin, SigningKey: skey, CheckpointInterval: time.Hour}
	stats := audit.NewStats(time.FixedZone("CST", 8*3600))
	l, err := audit.Open(context.Background(), cfg, audit.WithReplaySink(stats))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := auth.New([]auth.Entry{
		{TokenSHA256: auth.Digest("auditor"), Identity: auth.Identity{SystemID: "auditor-1", Roles: []string{auth.RoleAuditor}}},
		{TokenSHA256: auth.Digest("person"), Identity: auth.Identity{SystemID: "citizen", Roles: []string{auth.RoleSubject}, Subject: personID}},
		{TokenSHA256: auth.Digest("enterprise"), Identity: auth.Identity{SystemID: "firm", Roles: []string{auth.RoleSubject}, Subject: enterpriseID}},
		{TokenSHA256: auth.Digest("system"), Identity: auth.Identity{SystemID: "sjz-approval", Department: "approval"}},
		{TokenSHA256: auth.Digest("admin"), Identity: auth.Identity{SystemID: "admin-1", Roles: []string{auth.RoleAdmin}}},
	})
	return &auditFixture{
		log: l, cfg: cfg, vkey: vkey, stats: stats,
		rec: &Recorder{Log: l, Node: "node-1", SubjectKey: auditTestSubjectKey},
		svc: &Audit{Auth: a, Log: l, SubjectKey: auditTestSubjectKey, Node: "node-1", Stats: stats},
	}
}

func withToken(token string) context.Context {
	ctx := context.Background()
	if token == "" {
		return ctx
	}
	return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
}

func wantCode(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if got := apierr.CodeOf(err); got != code {
		t.Fatalf("error %v: code %v, want %v", err, got, code)
	}
	if reason != "" && apierr.ReasonOf(err) != reason {
		t.Fatalf("error %v: reason %q, want %q", err, apierr.ReasonOf(err), reason)
	}
}

var auditT0 = time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC) // 10:00 in Shanghai

func exchange(i int, subjects ...string) query.Exchange {
	return query.Exchange{
		Time:               auditT0.Add(time.Duration(i) * time.Minute),
		RequestID:          fmt.Sprintf("req-%d", i),
		Kind:               "query",
		Consumer:           "sjz-approval",
		ConsumerDepartment: "石家庄市行政审批局",
		Dataset:            "resources.parcels",
		Department:         "resources",
		Subjects:           subjects,
		Purpose:            "approval",
		LegalBasis:         []string{"《行政许可法》第三十一条"},
		GrantIDs:           []string{"g-1"},
		Decision:           query.DecisionPermit,
		FieldsReturned:     []string{"parcel_id", "holder"},
		Delivery:           "live",
		ResponseDigest:     audit.Digest([]byte(strconv.Itoa(i))),
	}
}

func TestRecordExchange(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	// A bounding-box query returning parcels of two holders, one twice.
	rc, err := f.rec.RecordExchange(ctx, exchange(0, personID, enterpriseID, personID))
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetNode() != "node-1" || rc.GetLeafIndex() != 0 || len(rc.GetLeafHash()) != 32 {
		t.Fatalf("receipt %v", rc)
	}
	data, err := f.log.Entry(ctx, rc.GetLeafIndex())
	if err != nil {
		t.Fatal(err)
	}
	e, err := audit.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.SubjectHashes(auditTestSubjectKey, []string{enterpriseID, personID})
	if !slices.Equal(e.Subjects, want) || len(want) != 2 {
		t.Errorf("subjects %v, want %v", e.Subjects, want)
	}
	if e.Node != "node-1" || e.Kind != "query" || !slices.Equal(e.Datasets, []string{"resources.parcels"}) ||
		e.Consumer != "sjz-approval" || e.Decision != audit.DecisionPermit || e.Delivery != audit.DeliveryLive || !e.Time.Equal(auditT0) {
		t.Errorf("entry %+v", e)
	}
	for _, id := range []string{personID, enterpriseID} {
		recs, _, err := f.log.EntriesForSubject(ctx, audit.SubjectHash(auditTestSubjectKey, id), 10, 0)
		if err != nil || len(recs) != 1 {
			t.Errorf("entries of %s: %v %v", id, recs, err)
		}
	}
	for _, id := range []string{personID, enterpriseID} {
		if bytes.Contains(data, []byte(id)) {
			t.Errorf("entry holds the raw identifier %s", id)
		}
	}

	// Fail closed: an exchange that cannot be recorded returns an error.
	bad := exchange(1)
	bad.Decision = "perhaps"
	if _, err := f.rec.RecordExchange(ctx, bad); !errors.Is(err, audit.ErrEncoding) {
		t.Errorf("invalid exchange: %v", err)
	}
	f.log.Close()
	if _, err := f.rec.RecordExchange(ctx, exchange(2)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("closed log: %v", err)
	}
}

func TestRecordTransitionThroughWorkflow(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "grants.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clock := func() time.Time { return auditT0 }
	wf := workflow.New(st, datasets.Default(), workflow.Options{Clock: clock, Sink: f.rec, NewID: func() string { return "g-42" }})
	g := &v1.Grant{
		Consumer:   &v1.Consumer{SystemId: "approval-bureau"},
		Dataset:    "market.business_licences",
		Fields:     []string{"credit_code", "name"},
		Purposes:   []string{"approval"},
		LegalBasis: "《中华人民共和国行政许可法》第三十三条",
		ValidFrom:  timestamppb.New(auditT0.Add(-time.Hour)),
		ValidUntil: timestamppb.New(auditT0.Add(24 * time.Hour)),
	}
	admin1 := workflow.Actor{ID: "admin-1", Roles: []string{workflow.RoleAdmin}}
	admin2 := workflow.Actor{ID: "admin-2", Roles: []string{workflow.RoleAdmin}}
	if _, err := wf.Propose(ctx, admin1, g); err != nil {
		t.Fatal(err)
	}
	if _, err := wf.Review(ctx, admin2, "g-42", v1.ReviewDecision_REVIEW_DECISION_APPROVE, "符合条件"); err != nil {
		t.Fatal(err)
	}
	var got []audit.Entry
	if err := f.log.Scan(ctx, 0, func(_ uint64, data []byte) error {
		e, err := audit.Decode(data)
		got = append(got, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d entries, want 2", len(got))
	}
	want := []map[string]string{
		{"actor": "admin-1", "role": "admin", "to": "proposed", "grantee": "approval-bureau"},
		{"actor": "admin-2", "role": "admin", "from": "proposed", "to": "active", "opinion": "符合条件", "grantee": "approval-bureau"},
	}
	for i, e := range got {
		if e.Kind != audit.KindGrantTransition || !slices.Equal(e.GrantIDs, []string{"g-42"}) ||
			!slices.Equal(e.Datasets, []string{"market.business_licences"}) || len(e.LegalBasis) != 1 || !e.Time.Equal(auditT0) {
			t.Errorf("entry %d: %+v", i, e)
		}
		if fmt.Sprint(e.Details) != fmt.Sprint(want[i]) {
			t.Errorf("entry %d details %v, want %v", i, e.Details, want[i])
		}
	}
	// Fail closed: with the log closed, the transition is refused.
	f.log.Close()
	_, err = wf.Revoke(ctx, admin1, "g-42", "no longer needed")
	wantCode(t, err, codes.Unavailable, apierr.ReasonAuditUnavailable)
	if gr, err := wf.Get(ctx, "g-42"); err != nil || gr.GetState() != v1.GrantState_GRANT_STATE_ACTIVE {
		t.Errorf("after refused revocation: %v %v", gr.GetState(), err)
	}
}

func TestAuditEntryAndProofs(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := f.rec.RecordExchange(ctx, exchange(i, personID)); err != nil {
			t.Fatal(err)
		}
	}
	cp1, err := f.svc.GetCheckpoint(withToken(""), &v1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cp1.GetSize() != 5 || cp1.GetOrigin() != auditTestOrigin {
		t.Fatalf("checkpoint %v", cp1)
	}
	for i := 5; i < 12; i++ {
		if _, err := f.rec.RecordExchange(ctx, exchange(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The public checkpoint does not sign on demand once one exists.
	if cp, err := f.svc.GetCheckpoint(ctx, &v1.GetCheckpointRequest{}); err != nil || cp.GetSize() != 5 {
		t.Fatalf("checkpoint %v %v", cp, err)
	}

	t.Run("entry needs auditor", func(t *testing.T) {
		for token, code := range map[string]codes.Code{"": codes.Unauthenticated, "wrong": codes.Unauthenticated, "system": codes.PermissionDenied, "person": codes.PermissionDenied} {
			_, err := f.svc.GetEntry(withToken(token), &v1.GetEntryRequest{Index: 0})
			wantCode(t, err, code, "")
		}
	})
	t.Run("entry against latest signs a covering checkpoint", func(t *testing.T) {
		e, err := f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 9})
		if err != nil {
			t.Fatal(err)
		}
		if e.GetTreeSize() != 12 || e.GetCheckpoint().GetSize() != 12 {
			t.Fatalf("tree size %d, checkpoint %v", e.GetTreeSize(), e.GetCheckpoint())
		}
		if err := audit.VerifyReceipt(e.GetData(), e.GetIndex(), e.GetInclusionProof(), e.GetCheckpoint().GetNote(), f.vkey); err != nil {
			t.Fatal(err)
		}
		// A flipped byte of the entry fails the proof.
		d := slices.Clone(e.GetData())
		d[10] ^= 1
		if err := audit.VerifyReceipt(d, e.GetIndex(), e.GetInclusionProof(), e.GetCheckpoint().GetNote(), f.vkey); err == nil {
			t.Fatal("tampered entry verified")
		}
	})
	t.Run("entry against an older checkpoint", func(t *testing.T) {
		e, err := f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 3, TreeSize: 5})
		if err != nil {
			t.Fatal(err)
		}
		if e.GetCheckpoint().GetNote() != cp1.GetNote() {
			t.Fatalf("checkpoint %v, want the one of size 5", e.GetCheckpoint())
		}
		if err := audit.VerifyReceipt(e.GetData(), 3, e.GetInclusionProof(), cp1.GetNote(), f.vkey); err != nil {
			t.Fatal(err)
		}
		// An unsigned size gives a proof without a checkpoint.
		e, err = f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 3, TreeSize: 7})
		if err != nil || e.GetCheckpoint() != nil || len(e.GetInclusionProof()) == 0 {
			t.Fatalf("size 7: %v %v", e, err)
		}
	})
	t.Run("bad entry requests", func(t *testing.T) {
		_, err := f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 12})
		wantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
		_, err = f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 5, TreeSize: 5})
		wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
		_, err = f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 5, TreeSize: 99})
		wantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	})
	t.Run("consistency", func(t *testing.T) {
		cp2, err := f.svc.GetCheckpoint(ctx, &v1.GetCheckpointRequest{})
		if err != nil || cp2.GetSize() != 12 {
			t.Fatalf("checkpoint %v %v", cp2, err)
		}
		p, err := f.svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: 5, To: 12})
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyConsistency(cp1.GetNote(), cp2.GetNote(), p.GetProof(), f.vkey); err != nil {
			t.Fatal(err)
		}
		// The answer carries both signed checkpoints, which verify with it.
		if p.GetOldCheckpoint().GetNote() != cp1.GetNote() || p.GetNewCheckpoint().GetNote() != cp2.GetNote() {
			t.Fatalf("checkpoints in the answer: %v, %v; want the ones at 5 and 12", p.GetOldCheckpoint(), p.GetNewCheckpoint())
		}
		if err := audit.VerifyConsistency(p.GetOldCheckpoint().GetNote(), p.GetNewCheckpoint().GetNote(), p.GetProof(), f.vkey); err != nil {
			t.Fatal(err)
		}
		// to 0 means the latest checkpoint.
		p0, err := f.svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: 5})
		if err != nil || p0.GetTo() != 12 || len(p0.GetProof()) != len(p.GetProof()) {
			t.Fatalf("to 0: %v %v", p0, err)
		}
		// A proof for other sizes does not verify; no checkpoint of size 3.
		p3, err := f.svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: 3, To: 12})
		if err != nil {
			t.Fatal(err)
		}
		if p3.GetOldCheckpoint() != nil {
			t.Fatalf("a checkpoint of size 3 was invented: %v", p3.GetOldCheckpoint())
		}
		if err := audit.VerifyConsistency(cp1.GetNote(), cp2.GetNote(), p3.GetProof(), f.vkey); err == nil {
			t.Fatal("proof for 3..12 verified 5..12")
		}
		_, err = f.svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: 8, To: 6})
		wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
		_, err = f.svc.GetConsistency(ctx, &v1.GetConsistencyRequest{From: 8, To: 13})
		wantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	})
	t.Run("closed log", func(t *testing.T) {
		f.log.Close()
		_, err := f.svc.GetEntry(withToken("auditor"), &v1.GetEntryRequest{Index: 1, TreeSize: 5})
		wantCode(t, err, codes.Unavailable, apierr.ReasonAuditUnavailable)
	})
}

func TestListSubjectAccesses(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	var personIdx []uint64
	for i := range 7 {
		subjects := []string{enterpriseID}
		if i%2 == 0 {
			subjects = append(subjects, personID)
		}
		rc, err := f.rec.RecordExchange(ctx, exchange(i, subjects...))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			personIdx = append(personIdx, rc.GetLeafIndex())
		}
	}
	cases := []struct {
		name, token, subject string
		code                 codes.Code
		reason               string
		n                    int
	}{
		{"subject reads own", "person", personID, codes.OK, "", 4},
		{"enterprise reads own", "enterprise", enterpriseID, codes.OK, "", 7},
		// Four exchanges and the subject's own read just before.
		{"auditor reads any", "auditor", personID, codes.OK, "", 5},
		{"subject reads another", "person", enterpriseID, codes.PermissionDenied, apierr.ReasonForbiddenRole, 0},
		{"member system", "system", personID, codes.PermissionDenied, apierr.ReasonForbiddenRole, 0},
		{"admin", "admin", personID, codes.PermissionDenied, apierr.ReasonForbiddenRole, 0},
		{"no token", "", personID, codes.Unauthenticated, apierr.ReasonUnauthenticated, 0},
		{"bad id", "auditor", "110105194912310021", codes.InvalidArgument, apierr.ReasonInvalidIdentifier, 0},
		{"lower case", "person", "11010519491231002x", codes.InvalidArgument, apierr.ReasonInvalidIdentifier, 0},
		{"empty id", "auditor", "", codes.InvalidArgument, apierr.ReasonInvalidArgument, 0},
		{"unknown subject", "auditor", "914403001922038216", codes.OK, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := f.svc.ListSubjectAccesses(withToken(c.token), &v1.ListSubjectAccessesRequest{SubjectId: c.subject})
			if c.code != codes.OK {
				wantCode(t, err, c.code, c.reason)
				if c.code == codes.InvalidArgument && apierr.From(err).Meta["field"] != "subject_id" {
					t.Errorf("error %v does not name subject_id", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetAccesses()) != c.n || resp.GetNextPageToken() != "" {
				t.Fatalf("%d accesses, token %q; want %d", len(resp.GetAccesses()), resp.GetNextPageToken(), c.n)
			}
		})
	}
	t.Run("fields and paging", func(t *testing.T) {
		var got []uint64
		reads := 0
		token := ""
		for page := 0; page < 10; page++ {
			resp, err := f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID, PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range resp.GetAccesses() {
				if a.GetDataset() == "" {
					// A read of the access log (by the subject and the
					// auditor above).
					reads++
					if a.GetConsumer() != "citizen" && a.GetConsumer() != "auditor-1" {
						t.Errorf("read entry %v", a)
					}
					continue
				}
				if a.GetConsumer() != "sjz-approval" || a.GetConsumerDepartment() != "石家庄市行政审批局" || a.GetDataset() != "resources.parcels" ||
					a.GetPurpose() != "approval" || len(a.GetLegalBasis()) != 1 || !slices.Equal(a.GetFields(), []string{"parcel_id", "holder"}) ||
					a.GetDecision() != "permit" || a.GetNode() != "node-1" || !a.GetAt().AsTime().Equal(auditT0.Add(time.Duration(a.GetLeafIndex())*time.Minute)) {
					t.Errorf("access %v", a)
				}
				got = append(got, a.GetLeafIndex())
			}
			token = resp.GetNextPageToken()
			if token == "" {
				break
			}
		}
		if !slices.Equal(got, personIdx) {
			t.Errorf("paged indexes %v, want %v", got, personIdx)
		}
		if reads != 2 {
			t.Errorf("%d reads listed, want the 2 made before the listing began", reads)
		}
		_, err := f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID, PageToken: "x"})
		wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
		_, err = f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID, PageSize: -1})
		wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
	})
}

type corrections struct {
	open, resolved uint64
	err            error
}

func (c corrections) CorrectionCounts(context.Context) (uint64, uint64, error) {
	return c.open, c.resolved, c.err
}

func TestTransparencyStats(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	f.svc.Now = func() time.Time { return auditT0.Add(48 * time.Hour) } // 4 March in Shanghai
	f.svc.Corrections = corrections{open: 2, resolved: 5}
	for i := range 3 {
		if _, err := f.rec.RecordExchange(ctx, exchange(i, personID)); err != nil {
			t.Fatal(err)
		}
	}
	deny := exchange(3)
	deny.Decision, deny.DenyReason, deny.Consumer = query.DecisionDeny, apierr.ReasonNoGrant, "curious"
	if _, err := f.rec.RecordExchange(ctx, deny); err != nil {
		t.Fatal(err)
	}
	old := exchange(4)
	old.Time = auditT0.AddDate(0, 0, -40)
	if _, err := f.rec.RecordExchange(ctx, old); err != nil {
		t.Fatal(err)
	}

	st, err := f.svc.GetTransparencyStats(withToken(""), &v1.GetTransparencyStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetExchanges()) != 1 || st.GetExchanges()[0].GetExchanges() != 3 || st.GetExchanges()[0].GetDay() != "2026-03-02" ||
		st.GetExchanges()[0].GetConsumer() != "sjz-approval" || st.GetExchanges()[0].GetDataset() != "resources.parcels" {
		t.Errorf("exchanges %v", st.GetExchanges())
	}
	if len(st.GetDenials()) != 1 || st.GetDenials()[0].GetReason() != apierr.ReasonNoGrant || st.GetDenials()[0].GetDenials() != 1 {
		t.Errorf("denials %v", st.GetDenials())
	}
	if st.GetCorrectionsOpen() != 2 || st.GetCorrectionsResolved() != 5 {
		t.Errorf("corrections %d/%d", st.GetCorrectionsOpen(), st.GetCorrectionsResolved())
	}
	// The 40-day-old exchange is outside the default window but inside an
	// explicit one.
	st, err = f.svc.GetTransparencyStats(ctx, &v1.GetTransparencyStatsRequest{FromDay: "2026-01-01", ToDay: "2026-03-02"})
	if err != nil || len(st.GetExchanges()) != 2 {
		t.Fatalf("explicit window: %v %v", st.GetExchanges(), err)
	}
	for name, req := range map[string]*v1.GetTransparencyStatsRequest{
		"bad from":     {FromDay: "2026-3-1"},
		"bad to":       {ToDay: "tomorrow"},
		"reversed":     {FromDay: "2026-03-05", ToDay: "2026-03-01"},
		"too wide":     {FromDay: "2020-01-01", ToDay: "2026-03-01"},
		"after to day": {FromDay: "2026-03-05"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.svc.GetTransparencyStats(ctx, req)
			wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
		})
	}
	f.svc.Corrections = corrections{err: errors.New("store down")}
	if _, err := f.svc.GetTransparencyStats(ctx, &v1.GetTransparencyStatsRequest{}); err == nil {
		t.Error("corrections error ignored")
	}
}

// TestAccessLogReadsAreRecorded checks that every read of a subject's access
// log is itself in the log, under the subject, so that the subject sees who
// looked: not in the page just returned, but in every later one.
func TestAccessLogReadsAreRecorded(t *testing.T) {
	f := newAuditFixture(t)
	readAt := auditT0.Add(time.Hour)
	f.svc.Now = func() time.Time { return readAt }
	ctx := context.Background()
	for i := range 2 {
		if _, err := f.rec.RecordExchange(ctx, exchange(i, personID)); err != nil {
			t.Fatal(err)
		}
	}
	list := func(token, requestID string) *v1.ListSubjectAccessesResponse {
		t.Helper()
		resp, err := f.svc.ListSubjectAccesses(reqctx.With(withToken(token), requestID), &v1.ListSubjectAccessesRequest{SubjectId: personID})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	first := list("auditor", "req-audit-1")
	if n := len(first.GetAccesses()); n != 2 {
		t.Fatalf("the first read lists %d accesses, want the 2 exchanges only", n)
	}
	second := list("person", "req-own-1")
	if n := len(second.GetAccesses()); n != 3 {
		t.Fatalf("the second read lists %d accesses, want the 2 exchanges and the first read", n)
	}
	read := second.GetAccesses()[2]
	if read.GetConsumer() != "auditor-1" || read.GetConsumerDepartment() != "" || read.GetDataset() != "" ||
		read.GetDecision() != "" || len(read.GetFields()) != 0 || read.GetNode() != "node-1" || !read.GetAt().AsTime().Equal(readAt) ||
		read.GetKind() != KindAccessLogRead || read.GetRole() != "auditor" {
		t.Errorf("the auditor's read shows as %v", read)
	}

	t.Run("entries", func(t *testing.T) {
		want := []struct {
			consumer, requestID, role string
		}{
			{"auditor-1", "req-audit-1", auth.RoleAuditor},
			{"citizen", "req-own-1", auth.RoleSubject},
		}
		for i, w := range want {
			data, err := f.log.Entry(ctx, uint64(2+i))
			if err != nil {
				t.Fatal(err)
			}
			e, err := audit.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind != KindAccessLogRead || e.Consumer != w.consumer || e.RequestID != w.requestID || e.Node != "node-1" ||
				!slices.Equal(e.Subjects, []string{audit.SubjectHash(auditTestSubjectKey, personID)}) ||
				e.Details["role"] != w.role || len(e.Datasets) != 0 || e.Decision != "" {
				t.Errorf("entry %d: %+v", 2+i, e)
			}
			if bytes.Contains(data, []byte(personID)) {
				t.Errorf("entry %d holds the subject's identifier in clear", 2+i)
			}
		}
	})
	t.Run("reads are not exchanges in the statistics", func(t *testing.T) {
		ex, dn := f.stats.Counts("2026-03-01", "2026-03-03")
		if len(ex) != 1 || ex[0].Exchanges != 2 || len(dn) != 0 {
			t.Errorf("exchanges %v, denials %v", ex, dn)
		}
	})
	t.Run("refused reads are not recorded", func(t *testing.T) {
		size := f.log.Size()
		for _, token := range []string{"system", "enterprise", ""} {
			if _, err := f.svc.ListSubjectAccesses(withToken(token), &v1.ListSubjectAccessesRequest{SubjectId: personID}); err == nil {
				t.Fatalf("%q read the access log", token)
			}
		}
		if f.log.Size() != size {
			t.Errorf("refused reads appended %d entries", f.log.Size()-size)
		}
	})
}

// TestAccessLogPagingIsASnapshot checks that a listing paged one entry at a
// time ends although every page read appends an entry for the subject.
func TestAccessLogPagingIsASnapshot(t *testing.T) {
	f := newAuditFixture(t)
	ctx := context.Background()
	var want []uint64
	for i := range 3 {
		rc, err := f.rec.RecordExchange(ctx, exchange(i, personID))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, rc.GetLeafIndex())
	}
	var got []uint64
	token, pages := "", 0
	for ; pages < 20; pages++ {
		resp, err := f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID, PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.GetAccesses() {
			got = append(got, a.GetLeafIndex())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v in %d pages, want %v", got, pages+1, want)
	}
	// Each page read was recorded; a new listing shows them all.
	resp, err := f.svc.ListSubjectAccesses(withToken("auditor"), &v1.ListSubjectAccessesRequest{SubjectId: personID})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetAccesses()); n != 3+3 {
		t.Fatalf("a new listing shows %d accesses, want 3 exchanges and 3 page reads", n)
	}

	t.Run("tokens", func(t *testing.T) {
		for token, ok := range map[string]bool{"1": true, "1.3": true, "x": false, "1.x": false, "3.3": false, "-1.3": false, ".3": false} {
			_, err := f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID, PageToken: token})
			if ok && err != nil {
				t.Errorf("token %q: %v", token, err)
			}
			if !ok {
				wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
			}
		}
	})
}

// TestAccessLogReadFailsClosed checks that a read that cannot be recorded
// is refused.
func TestAccessLogReadFailsClosed(t *testing.T) {
	f := newAuditFixture(t)
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	// A subject with no accesses: listing needs no entry from disk, only
	// recording the read touches the closed log.
	resp, err := f.svc.ListSubjectAccesses(withToken("person"), &v1.ListSubjectAccessesRequest{SubjectId: personID})
	if err == nil {
		t.Fatalf("read not recorded, yet answered %v", resp)
	}
	wantCode(t, err, codes.Unavailable, apierr.ReasonAuditUnavailable)
}
