package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/merkle"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/policy/workflow"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

// Recorder writes the whole-process record: it implements query.Recorder
// for exchanges and workflow.TransitionSink for grant transitions, over an
// audit log. Every method returns only once the entry is durable, and any
// failure is returned so that the caller refuses the exchange or the
// transition (fail closed).
type Recorder struct {
	// Log is the node's audit log.
	Log *audit.Log
	// Node names this gateway node in entries and receipts.
	Node string
	// SubjectKey is the HMAC key that turns subject identifiers into the
	// hashes the log holds (audit.SubjectHash).
	SubjectKey []byte
	// Now gives the time of entries whose time is not set (time.Now when
	// nil).
	Now func() time.Time

	subjects subjectMemo
}

var (
	_ query.Recorder          = (*Recorder)(nil)
	_ workflow.TransitionSink = (*Recorder)(nil)
)

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// ExchangeEntry maps an exchange reported by the query pipeline to an audit
// entry. Subject identifiers become keyed hashes; an empty kind becomes
// audit.KindExchange.
func (r *Recorder) ExchangeEntry(ex query.Exchange) audit.Entry {
	e := audit.Entry{
		Time:               ex.Time,
		RequestID:          ex.RequestID,
		Node:               r.Node,
		Kind:               ex.Kind,
		Consumer:           ex.Consumer,
		ConsumerDepartment: ex.ConsumerDepartment,
		Subjects:           r.subjects.hashes(r.SubjectKey, ex.Subjects),
		Purpose:            ex.Purpose,
		LegalBasis:         ex.LegalBasis,
		GrantIDs:           ex.GrantIDs,
		Decision:           ex.Decision,
		DenyReason:         ex.DenyReason,
		FieldsReturned:     ex.FieldsReturned,
		FieldsWithheld:     ex.FieldsWithheld,
		Department:         ex.Department,
		Delivery:           ex.Delivery,
		ResponseDigest:     ex.ResponseDigest,
	}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Kind == "" {
		e.Kind = audit.KindExchange
	}
	if ex.Dataset != "" {
		e.Datasets = strings.Split(ex.Dataset, ",")
	}
	return e
}

// RecordExchange implements query.Recorder: it appends the exchange and
// returns its receipt once the entry is on disk.
func (r *Recorder) RecordExchange(ctx context.Context, ex query.Exchange) (*v1.Receipt, error) {
	rc, err := r.Log.AppendEntry(ctx, r.ExchangeEntry(ex))
	if err != nil {
		return nil, fmt.Errorf("recording exchange %s of %s: %w", ex.RequestID, ex.Dataset, err)
	}
	// The receipt and its leaf hash in one allocation.
	out := &receipt{hash: rc.LeafHash}
	out.Node, out.LeafIndex, out.LeafHash = r.Node, rc.Index, out.hash[:]
	return &out.Receipt, nil
}

// receipt is a v1.Receipt with the storage of its leaf hash.
type receipt struct {
	v1.Receipt
	hash merkle.Hash
}

// RecordTransition implements workflow.TransitionSink: it appends a
// audit.KindGrantTransition entry naming the grant, its dataset and legal
// basis, with the actor, role, states and opinion in Details.
func (r *Recorder) RecordTransition(ctx context.Context, g *v1.Grant, t *v1.GrantTransition) error {
	e := audit.Entry{
		Time:      t.GetAt().AsTime(),
		RequestID: reqctx.ID(ctx),
		Node:      r.Node,
		Kind:      audit.KindGrantTransition,
		GrantIDs:  []string{g.GetId()},
		Details: map[string]string{
			"actor":   t.GetActor(),
			"role":    t.GetActorRole(),
			"to":      grantState(t.GetTo()),
			"grantee": consumerName(g.GetConsumer()),
		},
	}
	if t.GetAt() == nil {
		e.Time = r.now()
	}
	if g.GetDataset() != "" {
		e.Datasets = []string{g.GetDataset()}
	}
	if g.GetLegalBasis() != "" {
		e.LegalBasis = []string{g.GetLegalBasis()}
	}
	if t.GetFrom() != v1.GrantState_GRANT_STATE_UNSPECIFIED {
		e.Details["from"] = grantState(t.GetFrom())
	}
	if t.GetOpinion() != "" {
		e.Details["opinion"] = t.GetOpinion()
	}
	if _, err := r.Log.AppendEntry(ctx, e); err != nil {
		return fmt.Errorf("recording transition of grant %s to %s: %w", g.GetId(), e.Details["to"], err)
	}
	return nil
}

// grantState returns the lowercase name of a grant state: "proposed",
// "active", ...
func grantState(s v1.GrantState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "GRANT_STATE_"))
}

// CorrectionCounter reports the number of open and resolved corrections
// (校核纠错) for the published statistics.
type CorrectionCounter interface {
	CorrectionCounts(ctx context.Context) (open, resolved uint64, err error)
}

// Limits of the audit API.
const (
	defaultAccessPage = 50
	maxAccessPage     = 500
	defaultStatsDays  = 30
	maxStatsDays      = 366
)

// Audit implements v1.AuditServer over the node's audit log.
//
// GetCheckpoint, GetConsistency and GetTransparencyStats are public;
// GetEntry needs role auditor; ListSubjectAccesses is readable by the data
// subject itself (an identity with role subject whose Subject is the
// requested identifier) and by auditors, and every read of it is recorded in
// Log.
type Audit struct {
	v1.UnimplementedAuditServer
	Auth *auth.Authenticator
	Log  *audit.Log
	// SubjectKey is the HMAC key the Recorder hashes subjects with.
	SubjectKey []byte
	// Node names this gateway node in subject accesses.
	Node string
	// Stats holds the published aggregates; it must be registered with
	// the log by audit.WithReplaySink.
	Stats *audit.Stats
	// Corrections reports correction counts; nil reports zero.
	Corrections CorrectionCounter
	// Now gives the current time for the default statistics window and
	// the time of the entries that record access-log reads (time.Now when
	// nil).
	Now func() time.Time
}

var _ v1.AuditServer = (*Audit)(nil)

// auditError translates errors of the audit log into API errors.
func auditError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, audit.ErrNotFound):
		return apierr.New(codes.NotFound, apierr.ReasonNotFound, strings.TrimPrefix(err.Error(), "audit: ")).WithCause(err)
	case errors.Is(err, audit.ErrClosed), errors.Is(err, audit.ErrFailed):
		return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable, "the audit log is not available").WithCause(err)
	}
	return apierr.From(err)
}

func checkpointMsg(cp audit.Checkpoint) *v1.Checkpoint {
	return &v1.Checkpoint{Origin: cp.Origin, Size: cp.Size, RootHash: append([]byte(nil), cp.Root[:]...), Note: cp.Note}
}

// latest returns the latest stored checkpoint, signing one when none exists
// or when it does not cover size entries.
func (s *Audit) latest(size uint64) (audit.Checkpoint, error) {
	if cp, ok := s.Log.LatestCheckpoint(); ok && cp.Size >= size {
		return cp, nil
	}
	cp, err := s.Log.Checkpoint()
	if err != nil {
		return cp, auditError(err)
	}
	return cp, nil
}

// GetCheckpoint implements v1.AuditServer. It is public and returns the
// latest stored checkpoint (one is signed when none exists yet); it never
// signs on demand otherwise, so anonymous callers cannot make the node
// write.
func (s *Audit) GetCheckpoint(_ context.Context, _ *v1.GetCheckpointRequest) (*v1.Checkpoint, error) {
	cp, err := s.latest(0)
	if err != nil {
		return nil, err
	}
	return checkpointMsg(cp), nil
}

// GetEntry implements v1.AuditServer (role auditor). It returns the entry's
// canonical encoding, its leaf hash and its inclusion proof in the tree of
// tree_size entries. tree_size 0 means the latest checkpoint; when that
// does not cover the entry yet, a new checkpoint is signed. Any other
// tree_size up to the log's size is accepted; the checkpoint of that size
// is included when one was signed.
func (s *Audit) GetEntry(ctx context.Context, req *v1.GetEntryRequest) (*v1.AuditEntry, error) {
	if _, err := s.Auth.Require(ctx, auth.RoleAuditor); err != nil {
		return nil, err
	}
	index, size := req.GetIndex(), req.GetTreeSize()
	if n := s.Log.Size(); index >= n {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "entry %d does not exist: the log holds %d entries", index, n).With("index", strconv.FormatUint(index, 10))
	}
	var cp *v1.Checkpoint
	if size == 0 {
		c, err := s.latest(index + 1)
		if err != nil {
			return nil, err
		}
		size, cp = c.Size, checkpointMsg(c)
	} else {
		if index >= size {
			return nil, apierr.Invalid("tree_size", "%d does not include entry %d", size, index)
		}
		if c, ok := s.Log.CheckpointAt(size); ok {
			cp = checkpointMsg(c)
		}
	}
	data, err := s.Log.Entry(ctx, index)
	if err != nil {
		return nil, auditError(err)
	}
	leaf, err := s.Log.LeafHash(index)
	if err != nil {
		return nil, auditError(err)
	}
	if merkle.HashLeaf(data) != leaf {
		return nil, apierr.Newf(codes.DataLoss, apierr.ReasonInternal, "entry %d on disk does not match the log's tree", index)
	}
	proof, err := s.Log.InclusionProof(index, size)
	if err != nil {
		return nil, auditError(err)
	}
	return &v1.AuditEntry{
		Index:          index,
		Data:           data,
		LeafHash:       leaf[:],
		TreeSize:       size,
		InclusionProof: merkle.HashesToBytes(proof),
		Checkpoint:     cp,
	}, nil
}

// GetConsistency implements v1.AuditServer. It is public. from and to may
// be any sizes with from <= to <= the log's size (in practice the sizes of
// two checkpoints the caller holds); to 0 means the latest checkpoint.
func (s *Audit) GetConsistency(_ context.Context, req *v1.GetConsistencyRequest) (*v1.ConsistencyProof, error) {
	from, to := req.GetFrom(), req.GetTo()
	if to == 0 {
		cp, err := s.latest(0)
		if err != nil {
			return nil, err
		}
		to = cp.Size
	}
	if from > to {
		return nil, apierr.Invalid("from", "%d is beyond to (%d)", from, to)
	}
	if n := s.Log.Size(); to > n {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "to %d is beyond the log's %d entries", to, n).With("field", "to")
	}
	proof, err := s.Log.ConsistencyProof(from, to)
	if err != nil {
		return nil, auditError(err)
	}
	out := &v1.ConsistencyProof{From: from, To: to, Proof: merkle.HashesToBytes(proof)}
	if cp, ok := s.Log.CheckpointAt(from); ok {
		out.OldCheckpoint = checkpointMsg(cp)
	}
	if cp, ok := s.Log.CheckpointAt(to); ok {
		out.NewCheckpoint = checkpointMsg(cp)
	}
	return out, nil
}

// KindAccessLogRead is the audit entry kind that records a read of a data
// subject's access log through ListSubjectAccesses.
const KindAccessLogRead = "access_log_read"

// ListSubjectAccesses implements v1.AuditServer: the data-subject access
// log. The subject may read its own; auditors may read anyone's; nobody
// else may read any. Pages are ordered oldest first.
//
// Every successful read is itself recorded: an entry of kind
// KindAccessLogRead naming the reader (consumer and department), the
// subject (as its keyed hash, so the read shows in the subject's own access
// log), the request id and the reader's role. The entry is appended after
// the page is read, so it is not in the page returned but in every later
// listing; a read that cannot be recorded is refused (fail closed), as an
// exchange is.
//
// A listing is a snapshot: the first page fixes the log's size at that
// moment, and the page token carries it, so later pages list only entries
// written before the listing began. A reader paging through therefore never
// chases the entries its own reads add.
func (s *Audit) ListSubjectAccesses(ctx context.Context, req *v1.ListSubjectAccessesRequest) (*v1.ListSubjectAccessesResponse, error) {
	id, err := s.Auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	subject := req.GetSubjectId()
	if subject == "" {
		return nil, apierr.Invalid("subject_id", "is required: a unified social credit code or a resident ID number")
	}
	if ident.Kind(subject) == "" {
		cerr := ident.ValidateCreditCode(subject)
		rerr := ident.ValidateResidentID(subject)
		return nil, apierr.InvalidIdentifier("subject_id",
			fmt.Errorf("neither a valid unified social credit code (%v) nor a valid resident ID (%v)", cerr, rerr))
	}
	var role string
	switch {
	case id.HasRole(auth.RoleAuditor):
		role = auth.RoleAuditor
	case id.HasRole(auth.RoleSubject) && strings.EqualFold(strings.TrimSpace(id.Subject), subject):
		role = auth.RoleSubject
	case id.HasRole(auth.RoleSubject):
		return nil, apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole,
			"%s may read only its own subject's access log, not that of the identifier asked for", id.SystemID)
	default:
		return nil, apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole,
			"%s may not read access logs: only the data subject (role subject) and auditors (role auditor) may", id.SystemID)
	}
	limit := int(req.GetPageSize())
	switch {
	case limit < 0:
		return nil, apierr.Invalid("page_size", "must not be negative")
	case limit == 0:
		limit = defaultAccessPage
	case limit > maxAccessPage:
		limit = maxAccessPage
	}
	from, bound := uint64(0), s.Log.Size()
	if t := req.GetPageToken(); t != "" {
		var ok bool
		if from, bound, ok = parseAccessToken(t, bound); !ok {
			return nil, apierr.Invalid("page_token", "is not a token this API returned")
		}
	}
	recs, next, err := s.Log.EntriesForSubject(ctx, audit.SubjectHash(s.SubjectKey, subject), limit, from)
	if err != nil {
		return nil, auditError(err)
	}
	// Entries written since the listing began belong to a later listing.
	if i := slices.IndexFunc(recs, func(r audit.Record) bool { return r.Index >= bound }); i >= 0 {
		recs, next = recs[:i], 0
	}
	if next >= bound {
		next = 0
	}
	out := &v1.ListSubjectAccessesResponse{}
	for _, r := range recs {
		e := r.Entry
		node := e.Node
		if node == "" {
			node = s.Node
		}
		out.Accesses = append(out.Accesses, &v1.SubjectAccess{
			At:                 timestamppb.New(e.Time),
			Consumer:           e.Consumer,
			ConsumerDepartment: e.ConsumerDepartment,
			Dataset:            strings.Join(e.Datasets, ","),
			Purpose:            e.Purpose,
			LegalBasis:         e.LegalBasis,
			Fields:             e.FieldsReturned,
			Decision:           e.Decision,
			Node:               node,
			LeafIndex:          r.Index,
			Kind:               e.Kind,
		})
		if e.Kind == KindAccessLogRead {
			out.Accesses[len(out.Accesses)-1].Role = e.Details["role"]
		}
	}
	if next != 0 {
		out.NextPageToken = strconv.FormatUint(next, 10) + "." + strconv.FormatUint(bound, 10)
	}
	if err := s.recordRead(ctx, id, role, subject); err != nil {
		return nil, err
	}
	return out, nil
}

// parseAccessToken reads a page token of ListSubjectAccesses: "next.bound",
// or the bare "next" of earlier versions, which lists up to size.
func parseAccessToken(t string, size uint64) (from, bound uint64, ok bool) {
	f, b, snap := strings.Cut(t, ".")
	from, err := strconv.ParseUint(f, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if !snap {
		return from, size, true
	}
	bound, err = strconv.ParseUint(b, 10, 64)
	if err != nil || from >= bound {
		return 0, 0, false
	}
	return from, bound, true
}

// recordRead appends the KindAccessLogRead entry of a read of subject's
// access log by id. Any failure refuses the read.
func (s *Audit) recordRead(ctx context.Context, id auth.Identity, role, subject string) error {
	e := audit.Entry{
		Time:               s.now(),
		RequestID:          reqctx.ID(ctx),
		Node:               s.Node,
		Kind:               KindAccessLogRead,
		Consumer:           id.SystemID,
		ConsumerDepartment: id.Department,
		Subjects:           audit.SubjectHashes(s.SubjectKey, []string{subject}),
		Details:            map[string]string{"role": role},
	}
	if _, err := s.Log.AppendEntry(ctx, e); err != nil {
		// The cause names no subject: the log holds only its hash.
		return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
			"the read of the access log could not be recorded in the audit log, so it was refused").
			WithCause(fmt.Errorf("recording %s's read of an access log: %w", id.SystemID, err))
	}
	return nil
}

func (s *Audit) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// GetTransparencyStats implements v1.AuditServer. It is public and holds
// aggregates only: exchanges per day, dataset and consumer, denials per day
// and reason, and correction counts. The window defaults to the last 30
// days (in the statistics' time zone) and may span at most 366 days.
func (s *Audit) GetTransparencyStats(ctx context.Context, req *v1.GetTransparencyStatsRequest) (*v1.TransparencyStats, error) {
	if s.Stats == nil {
		return nil, apierr.New(codes.Unimplemented, apierr.ReasonUnimplemented, "transparency statistics are not enabled on this node")
	}
	loc := s.Stats.Location()
	now := s.now
	parse := func(field, v string) (time.Time, error) {
		d, err := time.ParseInLocation(audit.DayLayout, v, loc)
		if err != nil {
			return d, apierr.Invalid(field, "%q is not a day in the form YYYY-MM-DD", v)
		}
		return d, nil
	}
	var from, to time.Time
	var err error
	if v := req.GetToDay(); v != "" {
		if to, err = parse("to_day", v); err != nil {
			return nil, err
		}
	} else {
		y, m, d := now().In(loc).Date()
		to = time.Date(y, m, d, 0, 0, 0, 0, loc)
	}
	if v := req.GetFromDay(); v != "" {
		if from, err = parse("from_day", v); err != nil {
			return nil, err
		}
	} else {
		from = to.AddDate(0, 0, -(defaultStatsDays - 1))
	}
	if from.After(to) {
		return nil, apierr.Invalid("from_day", "%s is after to_day %s", from.Format(audit.DayLayout), to.Format(audit.DayLayout))
	}
	if to.Sub(from) >= maxStatsDays*24*time.Hour {
		return nil, apierr.Invalid("from_day", "the window may span at most %d days", maxStatsDays)
	}
	ex, dn := s.Stats.Counts(from.Format(audit.DayLayout), to.Format(audit.DayLayout))
	out := &v1.TransparencyStats{}
	for _, c := range ex {
		out.Exchanges = append(out.Exchanges, &v1.ExchangeCount{Day: c.Day, Dataset: c.Dataset, Consumer: c.Consumer, Exchanges: c.Exchanges})
	}
	for _, c := range dn {
		out.Denials = append(out.Denials, &v1.DenialCount{Day: c.Day, Reason: c.Reason, Denials: c.Denials})
	}
	if s.Corrections != nil {
		open, resolved, err := s.Corrections.CorrectionCounts(ctx)
		if err != nil {
			return nil, fmt.Errorf("counting corrections: %w", err)
		}
		out.CorrectionsOpen, out.CorrectionsResolved = open, resolved
	}
	return out, nil
}
