package autofill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
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
	out, _, err := e.fill(ctx, r, []*forms.Form{f}, false)
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
		c.Dataset, c.RecordID = prov.GetDataset(), prov.GetRecordId()
		if fd.CheckRef != nil {
			if s, _ := f.Source(fd.CheckRef.Source); s.Dataset == prov.GetDataset() && s.Dataset != src.Dataset {
				c.SourceField = fd.CheckRef.Field
			}
		}
	}
	ds, _ := e.Dict.Dataset(c.Dataset)
	c.Department = ds.Department

	digest, err := correctionDigest(c)
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
	return c.Proto(), nil
}

// ListCorrections returns the corrections matching f, oldest first. The
// caller checks who may read them (see api.Forms).
func (e *Engine) ListCorrections(ctx context.Context, f Filter) ([]*v1.Correction, error) {
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
	out := make([]*v1.Correction, len(cs))
	for i, c := range cs {
		out[i] = c.Proto()
	}
	return out, nil
}

// ResolveCorrection marks a correction resolved once its department has
// dealt with it. Only the department's own systems (p.Department equal to
// the correction's department) or a principal with role "admin" may.
//
// The resolution is recorded in the audit log inside the store's
// resolution, after the correction is marked resolved and before that is
// committed (see Store.Resolve): a resolution that cannot be recorded does
// not take effect (fail closed), and a resolution that does not take
// effect — the correction is unknown, or resolved already, say by another
// gateway node racing this one — is not recorded as one. The one window
// left is a commit that fails after the record was appended; it is logged.
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
	var receipt *v1.Receipt
	res, err := e.Corrections.Resolve(ctx, id, by, now, func(after *Correction) error {
		// The record's digest commits to the correction as resolved.
		digest, err := correctionDigest(after)
		if err != nil {
			return err
		}
		receipt, err = e.Record.RecordExchange(ctx, query.Exchange{
			Time: now, RequestID: requestID, Kind: KindCorrection,
			Consumer: p.SystemID, ConsumerDepartment: p.Department,
			Dataset: after.Dataset, Department: after.Department, Subjects: []string{after.ApplicantID},
			ResponseDigest: digest,
		})
		if err != nil {
			return apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
				"the resolution could not be recorded in the audit log, so it was refused").WithCause(err)
		}
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
	return res.Proto(), nil
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

// correctionDigest is the SHA-256 of the correction's deterministic
// encoding, recorded in the audit log.
func correctionDigest(c *Correction) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Proto())
	if err != nil {
		return "", fmt.Errorf("digesting correction: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
