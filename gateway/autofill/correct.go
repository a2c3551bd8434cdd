package autofill

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// MaxProposedValue bounds the length of a proposed value or comment, in
// characters.
const MaxProposedValue = 2000

// errNoCorrections is returned when the engine has no corrections store.
var errNoCorrections = apierr.New(codes.Unimplemented, apierr.ReasonUnimplemented, "corrections are not enabled on this gateway")

// CreateCorrection disputes a pre-filled value. The gateway re-runs the
// fill of the form to find the department, dataset and record the field
// came from (or, when the field is empty, the template's source) and
// queues the correction to that department. The correction is recorded in
// the audit log before it is stored; later auto-fills of the form for the
// applicant show the field as disputed and keep the department's value.
//
// The queued correction keeps the department's id of the record (the
// department needs it to correct the record), whatever the caller may
// see. The correction returned shows the caller the record id as the
// auto-fill showed it: the id itself where the form's decision releases
// the dataset's key fields of that record unmasked (the form shows them or
// chooses its record by them), else its opaque reference (or none without
// Engine.Refs); a caller of the department the correction is queued to
// sees the id. The audit record's digest covers the correction
// as returned but with the record id always in its reference form
// (Engine.Refs; no id without it), whoever the caller is (see
// correctionDigest).
func (e *Engine) CreateCorrection(ctx context.Context, p policy.Principal, requestID string, req *v1.CreateCorrectionRequest) (*v1.Correction, error) {
	if e.Corrections == nil {
		return nil, errNoCorrections
	}
	f, err := e.form(req.GetForm())
	if err != nil {
		return nil, err
	}
	fd, ok := f.Field(req.GetField())
	if !ok {
		names := make([]string, len(f.Fields))
		for i, x := range f.Fields {
			names[i] = x.Name
		}
		return nil, apierr.Invalid("field", "form %s has no field %q; its fields are %s", f.ID, req.GetField(), strings.Join(names, ", "))
	}
	proposed := strings.TrimSpace(req.GetProposedValue())
	if proposed == "" {
		return nil, apierr.Invalid("proposed_value", "is required: the value you believe is right")
	}
	if utf8.RuneCountInString(proposed) > MaxProposedValue {
		return nil, apierr.Invalid("proposed_value", "is longer than %d characters", MaxProposedValue)
	}
	if utf8.RuneCountInString(req.GetComment()) > MaxProposedValue {
		return nil, apierr.Invalid("comment", "is longer than %d characters", MaxProposedValue)
	}
	r := Request{Principal: p, RequestID: requestID, ApplicantID: req.GetApplicantId()}
	ids := map[*v1.Provenance]string{}
	out, _, err := e.fill(ctx, r, []*forms.Form{f}, false, ids)
	if err != nil {
		return nil, err
	}
	var filled *v1.FilledField
	for _, x := range out[0].Fields {
		if x.Name == fd.Name {
			filled = x
		}
	}
	primary := fd.Primary()
	src, _ := f.Source(primary.Source)
	c := &Correction{
		ID:            newID(),
		Form:          f.ID,
		Field:         fd.Name,
		ApplicantID:   r.ApplicantID,
		Dataset:       src.Dataset,
		SourceField:   primary.Field,
		ProposedValue: proposed,
		Comment:       strings.TrimSpace(req.GetComment()),
		State:         StateOpen,
		RaisedBy:      p.SystemID,
		RaisedAt:      e.now(),
	}
	if c.RaisedBy == "" {
		c.RaisedBy = "department " + p.Department
	}
	var prov *v1.Provenance
	switch {
	case filled.GetFilled():
		prov = filled.GetProvenance()
		c.CurrentValue = forms.Text(filled.GetValue().AsInterface())
	case len(filled.GetConflictingSources()) > 0:
		prov = filled.GetConflictingSources()[0]
		c.CurrentValue = forms.Text(filled.GetConflictingValues()[0].AsInterface())
	}
	if prov != nil {
		c.Dataset, c.RecordID = prov.GetDataset(), ids[prov]
		if fd.CheckRef != nil {
			if s, _ := f.Source(fd.CheckRef.Source); s.Dataset == prov.GetDataset() && s.Dataset != src.Dataset {
				c.SourceField = fd.CheckRef.Field
			}
		}
	}
	ds, _ := e.Dict.Dataset(c.Dataset)
	c.Department = ds.Department

	shown := e.correctionFor(p, c)
	if prov != nil && prov.GetRecordId() == c.RecordID {
		shown.RecordId = c.RecordID // the auto-fill showed the caller the id
	}
	digest, err := correctionDigest(e.auditedCorrection(c))
	if err != nil {
		return nil, err
	}
	ex := query.Exchange{
		Time:               c.RaisedAt,
		RequestID:          requestID,
		Kind:               KindCorrection,
		Consumer:           p.SystemID,
		ConsumerDepartment: p.Department,
		Dataset:            c.Dataset,
		Department:         c.Department,
		Subjects:           []string{c.ApplicantID},
		Purpose:            f.Purpose,
		ResponseDigest:     digest,
	}
	if c.CurrentValue != "" {
		ex.FieldsReturned = []string{c.Dataset + "." + c.SourceField}
	}
	receiptErr := func(err error) error {
		return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
			"the correction could not be recorded in the audit log, so it was refused").WithCause(err)
	}
	if _, err := e.Record.RecordExchange(ctx, ex); err != nil {
		return nil, receiptErr(err)
	}
	if err := e.Corrections.Add(ctx, c); err != nil {
		return nil, fmt.Errorf("queueing correction to %s: %w", c.Department, err)
	}
	return shown, nil
}

// correctionFor returns the API form of c as p may see it. The record id
// is the department's own only for the department the correction is
// queued to (p.Department equal to c.Department), which holds the record
// and needs its id to correct it. Every other caller, admins and auditors
// included, sees the id's opaque reference (Engine.Refs; none without
// it): the id is a key value (for a licence, the applicant's credit code,
// which the API form of a correction leaves out) that no role as such
// entitles a caller to, and the reference still tells which record, and
// matches the references of queries and auto-fills.
func (e *Engine) correctionFor(p policy.Principal, c *Correction) *v1.Correction {
	out := c.Proto()
	if p.Department == "" || p.Department != c.Department {
		out.RecordId = e.Refs.Ref(c.Dataset, c.RecordID)
	}
	return out
}

// ListCorrectionsAs returns the corrections matching f, oldest first, as
// p may see them: with the department's record ids only for the
// department each is queued to, and otherwise their opaque references
// (see CreateCorrection). The caller checks who may read them (see
// api.Forms).
func (e *Engine) ListCorrectionsAs(ctx context.Context, p policy.Principal, f Filter) ([]*v1.Correction, error) {
	cs, err := e.listCorrections(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]*v1.Correction, len(cs))
	for i, c := range cs {
		out[i] = e.correctionFor(p, c)
	}
	return out, nil
}

// ListCorrections returns the corrections matching f, oldest first, with
// the department's record ids: for the departments they are queued to.
// The caller checks who may read them (see api.Forms); a caller that may
// read other departments' queues (admins, auditors) should be served by
// ListCorrectionsAs, which shows it references instead.
func (e *Engine) ListCorrections(ctx context.Context, f Filter) ([]*v1.Correction, error) {
	cs, err := e.listCorrections(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]*v1.Correction, len(cs))
	for i, c := range cs {
		out[i] = c.Proto()
	}
	return out, nil
}

func (e *Engine) listCorrections(ctx context.Context, f Filter) ([]*Correction, error) {
	if e.Corrections == nil {
		return nil, errNoCorrections
	}
	if f.State != "" && f.State != StateOpen && f.State != StateResolved {
		return nil, apierr.Invalid("state", "must be %q or %q, not %q", StateOpen, StateResolved, f.State)
	}
	cs, err := e.Corrections.List(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("listing corrections: %w", err)
	}
	return cs, nil
}

// ResolveCorrection marks a correction resolved once its department has
// dealt with it. Only the department's own systems (p.Department equal to
// the correction's department) or a principal with role "admin" may. The
// correction returned shows the record id as p may see it (see
// ListCorrectionsAs): an admin sees the reference. The digest recorded
// covers the resolved correction with the record id in its reference form,
// whoever p is (see correctionDigest).
//
// The resolution is recorded in the audit log inside the store's
// resolution, after the correction is marked resolved and before that is
// committed (see Store.Resolve). A resolution that does not take effect —
// the correction is unknown, or resolved already, say by another gateway
// node racing this one — is not recorded as one, and one whose append the
// log refuses does not take effect (fail closed).
//
// Until the append starts, the resolution follows ctx: a caller that
// leaves before then resolves nothing. From then on it does not: the
// append, and the commit after it, run under a context detached from ctx
// and bounded by Engine.ResolveTimeout each, so that a caller leaving
// while its entry waits to be made durable cannot undo a resolution the
// log holds. Two windows remain, both logged at ERROR with the correction
// id: the log does not confirm the entry within ResolveTimeout (the entry
// may still be recorded, at an index not known; the resolution is refused
// and the correction stays open), and the store fails to commit after the
// entry was recorded.
func (e *Engine) ResolveCorrection(ctx context.Context, p policy.Principal, requestID, id string) (*v1.Correction, error) {
	if e.Corrections == nil {
		return nil, errNoCorrections
	}
	all, err := e.Corrections.List(ctx, Filter{})
	if err != nil {
		return nil, fmt.Errorf("reading corrections: %w", err)
	}
	var c *Correction
	for _, x := range all {
		if x.ID == id {
			c = x
		}
	}
	if c == nil {
		return nil, ErrCorrectionNotFound(id)
	}
	admin := false
	for _, r := range p.Roles {
		admin = admin || r == "admin"
	}
	if !admin && p.Department != c.Department {
		return nil, apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole,
			"%s may not resolve a correction queued to department %s", p, c.Department)
	}
	if c.State == StateResolved {
		return nil, ErrAlreadyResolved(id)
	}
	now := e.now()
	by := p.SystemID
	if by == "" {
		by = "department " + p.Department
	}
	timeout := e.ResolveTimeout
	if timeout <= 0 {
		timeout = DefaultResolveTimeout
	}

	// The store's transaction runs under txCtx, which ends with ctx until
	// the append starts (detached) and is bounded after the append.
	txCtx, cancelTx := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTx()
	var mu sync.Mutex
	detached := false
	stopFollowing := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !detached {
			cancelTx()
		}
	})
	defer stopFollowing()
	var receipt *v1.Receipt
	var commitTimer *time.Timer
	defer func() {
		if commitTimer != nil {
			commitTimer.Stop()
		}
	}()
	res, err := e.Corrections.Resolve(txCtx, id, by, now, func(after *Correction) error {
		// The record's digest commits to the correction as resolved,
		// with the record id as a reference.
		digest, err := correctionDigest(e.auditedCorrection(after))
		if err != nil {
			return err
		}
		mu.Lock()
		if err := cmp.Or(ctx.Err(), txCtx.Err()); err != nil {
			mu.Unlock()
			return fmt.Errorf("resolving correction %s: %w", id, err) // the caller left: nothing recorded
		}
		detached = true
		mu.Unlock()
		actx, cancel := context.WithTimeout(txCtx, timeout)
		defer cancel()
		receipt, err = e.Record.RecordExchange(actx, query.Exchange{
			Time: now, RequestID: requestID, Kind: KindCorrection,
			Consumer: p.SystemID, ConsumerDepartment: p.Department,
			Dataset: after.Dataset, Department: after.Department, Subjects: []string{after.ApplicantID},
			ResponseDigest: digest,
		})
		if err != nil {
			receipt = nil
			if actx.Err() != nil {
				// The entry may have been queued and may still be
				// recorded, at an index not known.
				e.logger().ErrorContext(ctx, "correction resolution refused, but its audit entry may still be recorded: the audit log did not confirm it in time",
					"correction", id, "request_id", requestID, "timeout", timeout, "err", err)
			}
			return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
				"the resolution could not be recorded in the audit log, so it was refused").WithCause(err)
		}
		// Recorded: the commit gets a bounded time of its own.
		commitTimer = time.AfterFunc(timeout, cancelTx)
		return nil
	})
	if err != nil {
		if receipt != nil {
			// Recorded, but the store did not confirm the change (a
			// failed commit, whose outcome may be unknown): the log says
			// resolved and the queue may not. Say so loudly.
			e.logger().ErrorContext(ctx, "correction resolution recorded in the audit log but not confirmed by the store",
				"correction", id, "audit_node", receipt.GetNode(), "audit_entry", receipt.GetLeafIndex(), "err", err)
		}
		return nil, err // the store's errors say what it was doing
	}
	return e.correctionFor(p, res), nil
}

// CorrectionCounts returns the open and resolved corrections per
// department, for the published statistics.
func (e *Engine) CorrectionCounts(ctx context.Context) ([]Count, error) {
	if e.Corrections == nil {
		return nil, nil
	}
	cs, err := e.Corrections.Counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("counting corrections: %w", err)
	}
	return cs, nil
}

// auditedCorrection returns the API form of c that its audit digest
// covers: the record id is always the id's opaque reference
// (Engine.Refs), or none without it, whoever the caller is.
func (e *Engine) auditedCorrection(c *Correction) *v1.Correction {
	out := c.Proto()
	out.RecordId = e.Refs.Ref(c.Dataset, c.RecordID)
	return out
}

// correctionDigest is the SHA-256 of the deterministic encoding of c,
// recorded in the audit log. c must be the audited form of a correction
// (auditedCorrection): its record id is the reference, never the real id,
// even when the caller was shown the real id. An auditor who reads the
// log entry and sees every other field of the correction (ListCorrectionsAs)
// could otherwise test guesses of the id against the digest offline.
func correctionDigest(c *v1.Correction) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("digesting correction: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
