// Package autofill fills application forms and one-thing bundles (一件事)
// from what the departments already hold (the once-only principle).
//
// One auto-fill plans the (dataset, lookup) pairs its forms need, decides
// each dataset under each form's purpose with the policy engine, fetches
// every pair once through the gateway's Fetcher (so the cache and its
// coalescing apply) in parallel under one deadline, and assembles each
// field with its provenance, or the reason it stays empty. Fields someone
// has disputed (校核纠错) are shown as disputed and keep the department's
// value. Each auto-fill is one audit record; each correction is one too.
//
// Audit records: an auto-fill is recorded as a query.Exchange of Kind
// "autofill" whose Dataset is the comma-joined, sorted list of the datasets
// pulled and Department the comma-joined departments; FieldsReturned and
// FieldsWithheld list "dataset.field" names; Subjects holds the applicant.
// A correction is recorded with Kind "correction", the dataset and
// department it is queued to.
package autofill

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

// Reasons a field stays unfilled or a material unsatisfied. They are stable
// API: never rename one.
const (
	ReasonNoGrant               = "NO_GRANT"
	ReasonFieldNotGranted       = "FIELD_NOT_GRANTED"
	ReasonDepartmentUnavailable = "DEPARTMENT_UNAVAILABLE"
	ReasonNotFound              = "NOT_FOUND"
	ReasonSourcesDisagree       = "SOURCES_DISAGREE"
	ReasonOutsideJurisdiction   = "OUTSIDE_JURISDICTION"
	ReasonQuotaExceeded         = "QUOTA_EXCEEDED"
	// ReasonTransformFailed: the department's value could not be
	// transformed as the template says (e.g. an unknown region code).
	ReasonTransformFailed = "TRANSFORM_FAILED"
	// ReasonConditionNotMet: the record exists but does not meet the
	// material's condition (e.g. the licence is 注销, not 存续).
	ReasonConditionNotMet = "CONDITION_NOT_MET"
	// ReasonNoSource: no department holds the material; the applicant
	// hands it in.
	ReasonNoSource = "NO_SOURCE"
	// ReasonSelectorNotGranted: the source chooses its record by a field
	// (its by, where, match or latest field) that the caller's grant does
	// not release, or releases only masked, so it chooses none: choosing
	// by a value the caller may not see would reveal it. The audit record
	// lists that field as withheld.
	ReasonSelectorNotGranted = "SELECTOR_NOT_GRANTED"
)

// Exchange kinds recorded.
const (
	KindAutofill   = "autofill"
	KindCorrection = "correction"
)

// Defaults of an Engine.
const (
	DefaultDeadline       = 5 * time.Second
	DefaultPageSize       = 100
	DefaultResolveTimeout = 10 * time.Second
)

// Engine fills forms. Set the exported fields before the first call; the
// Engine is then safe for concurrent use.
type Engine struct {
	// Dict is the dataset dictionary.
	Dict *datasets.Dictionary
	// Forms is the catalog of form templates and bundles.
	Forms *forms.Catalog
	// Policy decides each dataset under each form's purpose.
	Policy query.Decider
	// Fetch pulls department records (the gateway's cache).
	Fetch query.Fetcher
	// Record appends the audit records; an auto-fill that cannot be
	// recorded is refused.
	Record query.Recorder
	// Corrections is the corrections queue; nil disables corrections.
	Corrections Store
	// Refs stands in for record ids the caller may not see, as in the
	// query pipeline (query.RecordRefs): a provenance names the
	// department's record id only where the form's own decision on the
	// dataset (over the fields it shows and the fields it chooses records
	// by) releases every key field of that record unmasked, and otherwise
	// the id's opaque reference, the same one a query gives. Nil omits
	// such ids. Corrections keep the real id (see Correction.RecordID).
	Refs *query.RecordRefs
	// Deadline bounds the fan-out to the departments of one auto-fill
	// (DefaultDeadline when zero).
	Deadline time.Duration
	// ResolveTimeout bounds how long a correction's resolution waits for
	// its audit record once the append is under way, and then for the
	// store to commit: from then on the resolution no longer follows the
	// caller's context (see ResolveCorrection). DefaultResolveTimeout when
	// zero.
	ResolveTimeout time.Duration
	// PageSize is the most records asked of one lookup (DefaultPageSize
	// when zero).
	PageSize int32
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger logs department failures (slog.Default when nil).
	Logger *slog.Logger
}

// Request names the caller and the applicant of an auto-fill.
type Request struct {
	Principal policy.Principal
	RequestID string
	// ApplicantID is the credit code of an enterprise applicant or the
	// resident ID of a person.
	ApplicantID string
}

// ListForms returns the forms and bundles of the catalog.
func (e *Engine) ListForms() *v1.ListFormsResponse {
	out := &v1.ListFormsResponse{}
	for _, f := range e.Forms.Forms {
		out.Forms = append(out.Forms, &v1.FormSummary{Id: f.ID, Title: f.Title, Purpose: f.Purpose, LegalBasis: f.LegalBasis, ApplicantKind: f.ApplicantKind})
	}
	for _, b := range e.Forms.Bundles {
		s := &v1.FormSummary{Id: b.ID, Title: b.Title}
		var ps, bases []string
		for _, id := range b.Forms {
			f, _ := e.Forms.Form(id)
			s.ApplicantKind = f.ApplicantKind
			ps = appendUnique(ps, f.Purpose)
			bases = appendUnique(bases, f.LegalBasis)
		}
		s.Purpose, s.LegalBasis = strings.Join(ps, ","), strings.Join(bases, "；")
		out.Bundles = append(out.Bundles, s)
	}
	return out
}

// FillForm fills one form for the applicant.
func (e *Engine) FillForm(ctx context.Context, r Request, formID string) (*v1.AutofillResponse, error) {
	f, err := e.form(formID)
	if err != nil {
		return nil, err
	}
	out, receipt, err := e.fill(ctx, r, []*forms.Form{f}, true, nil)
	if err != nil {
		return nil, err
	}
	out[0].Receipt = receipt
	return out[0], nil
}

// FillBundle fills every form of a bundle; each (dataset, lookup) is
// fetched once for the whole bundle, and the bundle is one audit record.
func (e *Engine) FillBundle(ctx context.Context, r Request, bundleID string) (*v1.AutofillBundleResponse, error) {
	if bundleID == "" {
		return nil, apierr.Invalid("bundle", "is required")
	}
	b, ok := e.Forms.Bundle(bundleID)
	if !ok {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "bundle %q does not exist (see GET /v1/forms)", bundleID).With("bundle", bundleID)
	}
	fs := make([]*forms.Form, len(b.Forms))
	for i, id := range b.Forms {
		fs[i], _ = e.Forms.Form(id)
	}
	out, receipt, err := e.fill(ctx, r, fs, true, nil)
	if err != nil {
		return nil, err
	}
	resp := &v1.AutofillBundleResponse{Bundle: b.ID, Title: b.Title, Forms: out, Summary: &v1.AutofillSummary{}, Receipt: receipt}
	for _, f := range out {
		resp.Summary.FieldsFilled += f.Summary.FieldsFilled
		resp.Summary.FieldsTotal += f.Summary.FieldsTotal
		resp.Summary.MaterialsSatisfied += f.Summary.MaterialsSatisfied
		resp.Summary.MaterialsTotal += f.Summary.MaterialsTotal
	}
	return resp, nil
}

func (e *Engine) form(id string) (*forms.Form, error) {
	if id == "" {
		return nil, apierr.Invalid("form", "is required")
	}
	f, ok := e.Forms.Form(id)
	if !ok {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "form %q does not exist (see GET /v1/forms)", id).With("form", id)
	}
	return f, nil
}

func validateApplicant(kind, id string) error {
	if id == "" {
		return apierr.Invalid("applicant_id", "is required: the credit code of an enterprise or the resident ID of a person")
	}
	var err error
	if kind == forms.ApplicantPerson {
		err = ident.ValidateResidentID(id)
	} else {
		err = ident.ValidateCreditCode(id)
	}
	if err != nil {
		return apierr.InvalidIdentifier("applicant_id", err)
	}
	return nil
}

// lookup is one department call: a dataset looked up by the applicant.
type lookup struct{ dataset, by string }

type fetched struct {
	res query.Result
	err error
}

// decided is the policy decision on one dataset for one form.
type decided struct {
	// dec also tells whether record ids may be released
	// (query.RecordRefs.Release): only where it gives every key field
	// unmasked, that is when the form shows the key fields or chooses its
	// records by them.
	dec    policy.Decision
	reason string // set when denied
	detail string // the denial's safe message, when denied
}

// fill runs the whole auto-fill of forms and, when record is set, writes
// its audit record. When ids is not nil, it is given the department's
// record id of every provenance in the answer (which names the id only
// where the caller may see it).
func (e *Engine) fill(ctx context.Context, r Request, fs []*forms.Form, record bool, ids map[*v1.Provenance]string) ([]*v1.AutofillResponse, *v1.Receipt, error) {
	if err := validateApplicant(fs[0].ApplicantKind, r.ApplicantID); err != nil {
		return nil, nil, err
	}
	now := e.now()

	// Decide each dataset of each form under the form's purpose.
	decisions := make([]map[string]*decided, len(fs))
	need := map[lookup]*fetched{}
	for i, f := range fs {
		decisions[i] = map[string]*decided{}
		for _, ds := range formDatasets(f) {
			d := &decided{}
			req := policy.Request{
				Principal: r.Principal, Dataset: ds, Fields: fieldsOf(f, ds), Purpose: f.Purpose, Time: now,
			}
			dec, err := e.Policy.Decide(ctx, req)
			if err != nil {
				reason, ok := denyReason(err)
				if !ok {
					return nil, nil, err
				}
				d.reason, d.detail = reason, denyDetail(r.Principal, ds, f.Purpose, err)
			} else {
				d.dec = dec
			}
			decisions[i][ds] = d
		}
		for _, s := range f.Sources {
			// A source that cannot choose a record under the decision
			// needs no department call.
			if _, blocked := staticBlock(f, decisions[i], s); decisions[i][s.Dataset].reason == "" && blocked == "" {
				need[lookup{s.Dataset, s.By}] = &fetched{}
			}
		}
	}

	var disputes []*Correction
	if e.Corrections != nil {
		var err error
		disputes, err = e.Corrections.List(ctx, Filter{ApplicantID: r.ApplicantID, State: StateOpen})
		if err != nil {
			return nil, nil, fmt.Errorf("reading open corrections: %w", err)
		}
	}

	e.fetchAll(ctx, r.ApplicantID, need)

	a := &audit{datasets: map[string]bool{}, departments: map[string]bool{}}
	out := make([]*v1.AutofillResponse, len(fs))
	for i, f := range fs {
		fr := &formRun{e: e, f: f, applicant: r.ApplicantID, now: now, decisions: decisions[i], fetched: need, disputes: disputes, audit: a, ids: ids}
		out[i] = fr.run()
	}
	if !record {
		return out, nil, nil
	}
	receipt, err := e.recordFill(ctx, r, fs, decisions, out, a, now)
	if err != nil {
		return nil, nil, err
	}
	return out, receipt, nil
}

// fetchAll fetches every lookup in parallel under one deadline.
func (e *Engine) fetchAll(ctx context.Context, applicant string, need map[lookup]*fetched) {
	deadline := e.Deadline
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	size := e.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	fctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var wg sync.WaitGroup
	for l, res := range need {
		ds, ok := e.Dict.Dataset(l.dataset)
		if !ok {
			res.err = apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset, "dataset %q does not exist", l.dataset)
			continue
		}
		wg.Go(func() {
			res.res, res.err = e.Fetch.Fetch(fctx, ds, &v1.FetchRequest{
				Dataset: l.dataset, Keys: map[string]string{l.by: applicant}, PageSize: size,
			})
			if res.err != nil && apierr.CodeOf(res.err) != codes.NotFound {
				e.logger().WarnContext(ctx, "auto-fill lookup failed", "dataset", l.dataset, "department", ds.Department, "err", res.err)
			}
		})
	}
	wg.Wait()
}

// denyReason maps a policy error to the reason a field stays empty; false
// means the error is not a denial and fails the auto-fill.
func denyReason(err error) (string, bool) {
	switch apierr.CodeOf(err) {
	case codes.PermissionDenied:
		if apierr.ReasonOf(err) == apierr.ReasonOutsideJurisdiction {
			return ReasonOutsideJurisdiction, true
		}
		return ReasonNoGrant, true
	case codes.ResourceExhausted:
		return ReasonQuotaExceeded, true
	}
	return "", false
}

// denyDetail is the detail of a denial of dataset to p under purpose. A
// denial of grants says so in one line per dataset, with why when the
// policy tells (a grant for another purpose, expired, not yet valid); any
// other denial (quota, dataset not shared) gives the policy's message,
// which is safe to show to the caller.
func denyDetail(p policy.Principal, dataset, purpose string, err error) string {
	if apierr.CodeOf(err) == codes.PermissionDenied {
		why := ""
		switch apierr.ReasonOf(err) {
		case policy.ReasonPurposeNotCovered:
			why = " (it is granted only for other purposes)"
		case policy.ReasonGrantExpired:
			why = " (the grant covering it has expired)"
		case policy.ReasonGrantNotYetValid:
			why = " (the grant covering it is not yet valid)"
		case policy.ReasonNoGrant, policy.ReasonFieldNotGranted:
		default:
			return policyMessage(dataset, err)
		}
		return fmt.Sprintf("no active grant lets %s read %s for purpose %q%s", p, dataset, purpose, why)
	}
	return policyMessage(dataset, err)
}

func policyMessage(dataset string, err error) string {
	var e *apierr.Error
	if errors.As(err, &e) && e.Msg != "" {
		return e.Msg
	}
	return "the policy refuses " + dataset + " for this form's purpose"
}

// formDatasets returns the datasets of a form's sources, sorted.
func formDatasets(f *forms.Form) []string {
	var out []string
	for _, s := range f.Sources {
		out = appendUnique(out, s.Dataset)
	}
	slices.Sort(out)
	return out
}

// fieldsOf returns the dataset fields a form shows from dataset ds, in
// template order; nil when the form shows none (the dataset serves only
// materials or matches), which asks the policy for any field.
func fieldsOf(f *forms.Form, ds string) []string {
	var out []string
	for _, fd := range f.Fields {
		for _, r := range fd.Refs() {
			if s, _ := f.Source(r.Source); s.Dataset == ds {
				out = appendUnique(out, r.Field)
			}
		}
	}
	// Sources choose their records by fields (by, where, match, latest,
	// and the other source's field a match compares with): they are
	// decided too, so that a choice never rests on a field the grant does
	// not give.
	for _, s := range f.Sources {
		if s.Dataset == ds {
			for _, sel := range selectorsOf(s) {
				out = appendUnique(out, sel.field)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
			if other, _ := f.Source(s.Matches[k].Source); other.Dataset == ds {
				out = appendUnique(out, s.Matches[k].Field)
			}
		}
	}
	// A material's condition reads fields too: they must be decided, so
	// that a material never reveals a field the grant does not give.
	for _, m := range f.Materials {
		if m.SatisfiedBy == nil {
			continue
		}
		if s, _ := f.Source(m.SatisfiedBy.Source); s.Dataset == ds {
			for _, k := range slices.Sorted(maps.Keys(m.SatisfiedBy.Where)) {
				out = appendUnique(out, k)
			}
		}
	}
	return out
}

// audit collects what an auto-fill released.
type audit struct {
	mu          sync.Mutex
	datasets    map[string]bool
	departments map[string]bool
	returned    []string
	withheld    []string
	delivery    v1.Delivery
}

func (a *audit) pulled(ds *datasets.Dataset, d v1.Delivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.datasets[ds.Name] = true
	a.departments[ds.Department] = true
	if deliveryRank(d) > deliveryRank(a.delivery) {
		a.delivery = d
	}
}

func (a *audit) release(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.returned = appendUnique(a.returned, name)
}

func (a *audit) withhold(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.withheld = appendUnique(a.withheld, name)
}

func deliveryRank(d v1.Delivery) int {
	switch d {
	case v1.Delivery_DELIVERY_LIVE:
		return 1
	case v1.Delivery_DELIVERY_CACHE:
		return 2
	case v1.Delivery_DELIVERY_STALE:
		return 3
	}
	return 0
}

func deliveryName(d v1.Delivery) string {
	switch d {
	case v1.Delivery_DELIVERY_LIVE:
		return "live"
	case v1.Delivery_DELIVERY_CACHE:
		return "cache"
	case v1.Delivery_DELIVERY_STALE:
		return "stale"
	}
	return ""
}

func (e *Engine) recordFill(ctx context.Context, r Request, fs []*forms.Form, decisions []map[string]*decided, out []*v1.AutofillResponse, a *audit, now time.Time) (*v1.Receipt, error) {
	ex := query.Exchange{
		Time:               now,
		RequestID:          r.RequestID,
		Kind:               KindAutofill,
		Consumer:           r.Principal.SystemID,
		ConsumerDepartment: r.Principal.Department,
		Dataset:            strings.Join(slices.Sorted(maps.Keys(a.datasets)), ","),
		Department:         strings.Join(slices.Sorted(maps.Keys(a.departments)), ","),
		Subjects:           []string{r.ApplicantID},
		FieldsReturned:     a.returned,
		FieldsWithheld:     a.withheld,
		Delivery:           deliveryName(a.delivery),
	}
	var purposes []string
	for i, f := range fs {
		purposes = appendUnique(purposes, f.Purpose)
		for _, ds := range slices.Sorted(maps.Keys(decisions[i])) {
			d := decisions[i][ds]
			for _, g := range d.dec.GrantIDs {
				ex.GrantIDs = appendUnique(ex.GrantIDs, g)
			}
			for _, b := range d.dec.LegalBasis {
				ex.LegalBasis = appendUnique(ex.LegalBasis, b)
			}
		}
	}
	ex.Purpose = strings.Join(purposes, ",")
	var filled, total uint32
	firstReason := ""
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, resp := range out {
		filled += resp.Summary.FieldsFilled
		total += resp.Summary.FieldsTotal
		for _, fd := range resp.Fields {
			if !fd.Filled && firstReason == "" {
				firstReason = fd.UnfilledReason
			}
		}
		b, err := opts.Marshal(resp)
		if err != nil {
			return nil, fmt.Errorf("digesting auto-fill response: %w", err)
		}
		h.Write(b)
	}
	ex.ResponseDigest = hex.EncodeToString(h.Sum(nil))
	switch {
	case filled == total:
		ex.Decision = query.DecisionPermit
	case filled > 0:
		ex.Decision = query.DecisionPartial
	default:
		ex.Decision, ex.DenyReason = query.DecisionDeny, firstReason
	}
	receipt, err := e.Record.RecordExchange(ctx, ex)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
			"the auto-fill could not be recorded in the audit log, so it was refused").WithCause(err)
	}
	return receipt, nil
}

// formRun assembles one form from the fetched records.
type formRun struct {
	e         *Engine
	f         *forms.Form
	applicant string
	now       time.Time
	decisions map[string]*decided
	fetched   map[lookup]*fetched
	disputes  []*Correction
	audit     *audit
	// ids, when not nil, is given the record id of each provenance made.
	ids map[*v1.Provenance]string

	sources map[string]*chosen
}

// chosen is the record a source settled on, or why there is none (reason,
// and detail for people).
type chosen struct {
	ds     *datasets.Dataset
	dec    *policy.Decision
	rec    *v1.SourceRecord
	region string
	prov   *v1.Provenance
	reason string
	detail string
}

func (fr *formRun) run() *v1.AutofillResponse {
	f := fr.f
	fr.sources = map[string]*chosen{}
	for _, s := range f.Sources {
		fr.source(s.Name)
	}
	resp := &v1.AutofillResponse{Form: f.ID, Title: f.Title, Purpose: f.Purpose, LegalBasis: f.LegalBasis, Summary: &v1.AutofillSummary{}}
	for _, fd := range f.Fields {
		ff := fr.field(fd)
		resp.Fields = append(resp.Fields, ff)
		resp.Summary.FieldsTotal++
		if ff.Filled {
			resp.Summary.FieldsFilled++
		}
	}
	for _, m := range f.Materials {
		ms := fr.material(m)
		resp.Materials = append(resp.Materials, ms)
		resp.Summary.MaterialsTotal++
		if ms.Satisfied {
			resp.Summary.MaterialsSatisfied++
		}
	}
	return resp
}

// source resolves a source (and, first, the sources it matches on).
func (fr *formRun) source(name string) *chosen {
	if c, ok := fr.sources[name]; ok {
		return c
	}
	s, _ := fr.f.Source(name)
	ds, _ := fr.e.Dict.Dataset(s.Dataset)
	c := &chosen{ds: ds}
	fr.sources[name] = c
	d := fr.decisions[s.Dataset]
	if d.reason != "" {
		c.reason, c.detail = d.reason, d.detail
		return c
	}
	c.dec = &d.dec
	if dataset, f := staticBlock(fr.f, fr.decisions, s); f != "" {
		dec := c.dec
		if dataset != s.Dataset {
			dec = &fr.decisions[dataset].dec
		}
		return fr.cannotSelect(c, s, dataset, f, grantWording(dec.Fields, dec.Masks[f], f))
	}
	got := fr.fetched[lookup{s.Dataset, s.By}]
	if got.err != nil {
		if apierr.CodeOf(got.err) == codes.NotFound {
			c.reason = ReasonNotFound
			c.detail = fmt.Sprintf("department %s holds no %s record of the applicant", ds.Department, ds.Name)
		} else {
			c.reason = ReasonDepartmentUnavailable
			c.detail = fmt.Sprintf("department %s did not answer the lookup of %s; the rest of the form is still filled", ds.Department, ds.Name)
		}
		return c
	}
	fr.audit.pulled(ds, got.res.Delivery)
	// A match compares with the other source's record: the caller must
	// see that field of it, unmasked.
	for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
		ref := s.Matches[k]
		other := fr.source(ref.Source)
		if other.rec != nil && !releasedUnmasked(other.dec, other.region, ref.Field) {
			return fr.cannotSelect(c, s, other.ds.Name, ref.Field, "the grant does not release unmasked for the region of that record")
		}
	}
	// Records are chosen only by what the caller may see of each: first
	// the records its grants admit, then those whose selector fields the
	// grants for the record's region release, and only then by the values
	// of those fields. So neither the choice nor the reason for no choice
	// tells anything of a field the caller may not see.
	var admitted []*v1.SourceRecord
	outside, blocked := 0, ""
	for _, rec := range got.res.Records {
		region := regionOf(ds, rec)
		if c.dec.FieldsFor(region) == nil {
			outside++
			continue
		}
		if f := unselectableIn(c.dec, region, s); f != "" {
			if blocked == "" {
				blocked = f
			}
			continue
		}
		fields := rec.GetFields().GetFields()
		if fields[s.By].GetStringValue() != fr.applicant {
			continue
		}
		ok := true
		for k, vals := range s.Where {
			if !slices.Contains(vals, forms.Text(fields[k].AsInterface())) {
				ok = false
				break
			}
		}
		for k, ref := range s.Matches {
			other := fr.source(ref.Source)
			if other.rec == nil {
				ok = false
				break
			}
			want := forms.Text(other.rec.GetFields().GetFields()[ref.Field].AsInterface())
			if forms.Text(fields[k].AsInterface()) != want {
				ok = false
				break
			}
		}
		if ok {
			admitted = append(admitted, rec)
		}
	}
	switch {
	case len(admitted) > 0:
	case blocked != "":
		// Records the caller may not choose among could be the one.
		return fr.cannotSelect(c, s, ds.Name, blocked, "the grant does not release unmasked for the regions of the applicant's records")
	case outside > 0:
		// The record may be one outside the jurisdiction; whether it
		// would match is not the caller's to know, so the detail does not
		// say whether one would.
		c.reason = ReasonOutsideJurisdiction
		c.detail = fmt.Sprintf("department %s holds %s records of the applicant outside the grant's jurisdiction%s, and none within it qualifies",
			ds.Department, ds.Name, jurisdictionText(c.dec.Jurisdiction))
		return c
	default:
		c.reason = ReasonNotFound
		c.detail = notFoundDetail(ds, s)
		return c
	}
	// Ties on latest are broken by the record id as the caller is shown it
	// (Refs.Release): the id where the caller may see the key fields of
	// that record unmasked, else its opaque reference, a keyed hash that
	// orders records at random but the same way every time. Breaking them
	// by the department's ids would let the choice tell the order of ids
	// the caller may not see. Records the caller is shown no id of (no
	// reference key) stay in the department's order, which a query shows
	// too.
	shown := make(map[*v1.SourceRecord]string, len(admitted))
	for _, rec := range admitted {
		shown[rec] = fr.e.Refs.Release(c.dec, ds, regionOf(ds, rec), rec.GetId())
	}
	slices.SortStableFunc(admitted, func(a, b *v1.SourceRecord) int {
		if s.Latest != "" {
			la := forms.Text(a.GetFields().GetFields()[s.Latest].AsInterface())
			lb := forms.Text(b.GetFields().GetFields()[s.Latest].AsInterface())
			if n := cmp.Compare(lb, la); n != 0 {
				return n // latest first
			}
		}
		return cmp.Compare(shown[a], shown[b])
	})
	c.rec = admitted[0]
	c.region = regionOf(ds, c.rec)
	// The id is released as a query would release it under the same
	// decision: itself where the key fields of the record's region are
	// released unmasked, else its reference.
	c.prov = &v1.Provenance{
		Department: ds.Department,
		Dataset:    ds.Name,
		RecordId:   shown[c.rec],
		FetchedAt:  timestamppb.New(got.res.FetchedAt),
		Delivery:   got.res.Delivery,
	}
	if fr.ids != nil {
		fr.ids[c.prov] = c.rec.GetId()
	}
	if got.res.Delivery != v1.Delivery_DELIVERY_LIVE && !got.res.FetchedAt.IsZero() {
		c.prov.Age = durationpb.New(fr.now.Sub(got.res.FetchedAt))
	}
	return c
}

// cannotSelect settles c, the record of source s, as unable to be chosen
// because the grant does not release field of dataset as the choice needs;
// why completes the detail ("which " + why). The field is recorded as
// withheld.
func (fr *formRun) cannotSelect(c *chosen, s *forms.Source, dataset, field, why string) *chosen {
	c.reason = ReasonSelectorNotGranted
	by := field
	if dataset != s.Dataset {
		by = "matching " + dataset + "." + field
	}
	c.detail = fmt.Sprintf("%s is chosen by %s, which %s", s.Dataset, by, why)
	fr.audit.withhold(dataset + "." + field)
	return c
}

// grantWording says how a decision that releases fields with masks falls
// short for field, whose mask is mask: not released at all, or masked.
func grantWording(fields []string, mask v1.MaskKind, field string) string {
	if !slices.Contains(fields, field) {
		return "the grant does not release"
	}
	if mask != v1.MaskKind_MASK_KIND_UNSPECIFIED {
		return "the grant releases only masked"
	}
	return "the grant does not release unmasked"
}

// jurisdictionText is " (1301, 1302)" for a decision's jurisdiction, or ""
// when it admits every region. Grants and their jurisdictions are public
// (the catalogue lists them).
func jurisdictionText(prefixes []string) string {
	if len(prefixes) == 0 || slices.Contains(prefixes, "") {
		return ""
	}
	return " (" + strings.Join(prefixes, ", ") + ")"
}

// notFoundDetail says that no record of dataset ds found for the applicant
// meets source s's conditions. The conditions are the template's, and the
// fields they read are released unmasked, or the source would have been
// blocked.
func notFoundDetail(ds *datasets.Dataset, s *forms.Source) string {
	conds := slices.Sorted(maps.Keys(s.Where))
	for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
		conds = appendUnique(conds, k)
	}
	if len(conds) == 0 {
		return fmt.Sprintf("department %s holds no %s record of the applicant", ds.Department, ds.Name)
	}
	return fmt.Sprintf("no %s record of the applicant within the grant's jurisdiction meets the form's conditions on %s",
		ds.Name, strings.Join(conds, ", "))
}

// selector is a field a source chooses records by.
type selector struct {
	field string
	// unmasked: the choice compares the field's full value, so the grant
	// must release it unmasked. The applicant's identifier (by) may be
	// masked: the caller already holds it, as in a query's keys.
	unmasked bool
}

// selectorsOf returns the fields of its own dataset source s chooses
// records by: by, the where and match fields, and latest.
func selectorsOf(s *forms.Source) []selector {
	out := []selector{{field: s.By}}
	for _, k := range slices.Sorted(maps.Keys(s.Where)) {
		out = append(out, selector{field: k, unmasked: true})
	}
	for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
		out = append(out, selector{field: k, unmasked: true})
	}
	if s.Latest != "" {
		out = append(out, selector{field: s.Latest, unmasked: true})
	}
	return out
}

// unselectable returns the first selector field of s that no grant of the
// decision releases (unmasked where the choice needs it), or "" when every
// one is released for some region.
func unselectable(dec *policy.Decision, s *forms.Source) string {
	for _, sel := range selectorsOf(s) {
		if !slices.Contains(dec.Fields, sel.field) ||
			sel.unmasked && dec.Masks[sel.field] != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return sel.field
		}
	}
	return ""
}

// staticBlock returns the dataset and field of the first selector of
// source s that no grant of the form's decisions releases as the choice
// needs, including the other sources' fields its matches compare with; ""
// when there is none. A source it blocks is not fetched.
func staticBlock(f *forms.Form, decs map[string]*decided, s *forms.Source) (dataset, field string) {
	if d := decs[s.Dataset]; d.reason == "" {
		if field := unselectable(&d.dec, s); field != "" {
			return s.Dataset, field
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
		ref := s.Matches[k]
		other, _ := f.Source(ref.Source)
		od := decs[other.Dataset]
		if od.reason != "" {
			continue // the other source chooses no record, so none matches
		}
		if !slices.Contains(od.dec.Fields, ref.Field) || od.dec.Masks[ref.Field] != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return other.Dataset, ref.Field
		}
	}
	return "", ""
}

// unselectableIn is unselectable for a record of one region: the grants
// whose jurisdiction admits the record must release every selector field.
func unselectableIn(dec *policy.Decision, region string, s *forms.Source) string {
	for _, sel := range selectorsOf(s) {
		if !slices.Contains(dec.FieldsFor(region), sel.field) ||
			sel.unmasked && dec.MaskFor(region, sel.field) != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return sel.field
		}
	}
	return ""
}

// releasedUnmasked reports whether the decision releases field of a record
// of region unmasked.
func releasedUnmasked(dec *policy.Decision, region, field string) bool {
	return slices.Contains(dec.FieldsFor(region), field) && dec.MaskFor(region, field) == v1.MaskKind_MASK_KIND_UNSPECIFIED
}

func regionOf(ds *datasets.Dataset, rec *v1.SourceRecord) string {
	if ds.RegionField == "" {
		return ""
	}
	return rec.GetFields().GetFields()[ds.RegionField].GetStringValue()
}

// value is one source field after policy and transforms.
type value struct {
	v      any
	cmp    string // the unmasked transformed value, for cross-checks
	masked bool
	prov   *v1.Provenance
	id     string // the department's id of the record, with prov
	ref    forms.Ref
	ds     string
	reason string
	detail string // for people, with reason
}

func (v value) ok() bool { return v.reason == "" }

// read reads ref from its source's chosen record, shaped by the decision:
// an ungranted field is withheld, a masked one masked (and then not
// transformed: the mask applies to the department's value).
func (fr *formRun) read(ref forms.Ref, ts []*forms.Transform) value {
	c := fr.source(ref.Source)
	out := value{ref: ref, ds: c.ds.Name}
	if c.rec == nil {
		out.reason, out.detail = c.reason, c.detail
		return out
	}
	name := c.ds.Name + "." + ref.Field
	if !slices.Contains(c.dec.FieldsFor(c.region), ref.Field) {
		out.reason = ReasonFieldNotGranted
		out.detail = "the grant does not release " + name
		if slices.Contains(c.dec.Fields, ref.Field) {
			out.detail += " for the region of the chosen record"
		}
		return out
	}
	out.prov, out.id = c.prov, c.rec.GetId()
	raw := c.rec.GetFields().GetFields()[ref.Field].AsInterface()
	tv, err := forms.ApplyAll(ts, raw)
	if err != nil {
		// The transform's error is not shown: it may quote the value,
		// which the grant may release only masked.
		out.reason = ReasonTransformFailed
		out.detail = "the department's value of " + name + " could not be transformed as the form template says"
		return out
	}
	if forms.IsEmpty(tv) {
		out.reason = ReasonNotFound
		out.detail = "the chosen " + c.ds.Name + " record has no value for " + ref.Field
		return out
	}
	out.cmp = forms.Text(tv)
	out.v = tv
	if m := c.dec.MaskFor(c.region, ref.Field); m != v1.MaskKind_MASK_KIND_UNSPECIFIED {
		out.v = policy.ApplyMask(m, forms.Text(raw))
		out.masked = true
	}
	return out
}

func toValue(v any) *structpb.Value {
	if n, ok := v.(float64); ok {
		return structpb.NewNumberValue(n)
	}
	return structpb.NewStringValue(forms.Text(v))
}

func (fr *formRun) field(fd *forms.Field) *v1.FilledField {
	out := &v1.FilledField{Name: fd.Name, Label: fd.Label, Required: fd.Required}
	var got value
	if len(fd.Parts) > 0 {
		got = fr.concat(fd)
	} else {
		got = fr.read(fd.From, fd.Transforms)
		if fd.CheckRef != nil {
			other := fr.read(*fd.CheckRef, fd.Transforms)
			switch {
			case got.ok() && other.ok() && got.cmp != other.cmp:
				out.UnfilledReason = ReasonSourcesDisagree
				out.UnfilledDetail = fmt.Sprintf("%s.%s and %s.%s differ; both values are listed",
					got.ds, got.ref.Field, other.ds, other.ref.Field)
				out.ConflictingValues = []*structpb.Value{toValue(got.v), toValue(other.v)}
				out.ConflictingSources = []*v1.Provenance{got.prov, other.prov}
				fr.audit.release(got.ds + "." + got.ref.Field)
				fr.audit.release(other.ds + "." + other.ref.Field)
				out.Disputed = fr.disputed(fd, got)
				return out
			case !got.ok() && other.ok():
				got = other
			}
		}
	}
	if !got.ok() {
		out.UnfilledReason, out.UnfilledDetail = got.reason, got.detail
		if got.reason == ReasonNoGrant || got.reason == ReasonFieldNotGranted {
			fr.audit.withhold(got.ds + "." + got.ref.Field)
		}
		out.Disputed = fr.disputed(fd, got)
		return out
	}
	out.Filled = true
	out.Value = toValue(got.v)
	out.Provenance = got.prov
	out.Masked = got.masked
	out.Disputed = fr.disputed(fd, got)
	fr.audit.release(got.ds + "." + got.ref.Field)
	return out
}

// concat joins the parts; a part that fails fails the field, an empty part
// is left out.
func (fr *formRun) concat(fd *forms.Field) value {
	var parts, released []string
	var first value
	masked := false
	for i, ref := range fd.Parts {
		v := fr.read(ref, fd.Transforms)
		if i == 0 {
			first = v
		}
		if v.reason == ReasonNotFound && fr.source(ref.Source).rec != nil {
			continue // the record has no value for this part
		}
		if !v.ok() {
			return v
		}
		if first.prov == nil {
			first = v
		}
		masked = masked || v.masked
		parts = append(parts, forms.Text(v.v))
		released = append(released, v.ds+"."+ref.Field)
	}
	if len(parts) == 0 {
		names := make([]string, len(fd.Parts))
		for i, ref := range fd.Parts {
			s, _ := fr.f.Source(ref.Source)
			names[i] = s.Dataset + "." + ref.Field
		}
		first.reason = ReasonNotFound
		first.detail = "the chosen records have no value for any of " + strings.Join(names, ", ")
		return first
	}
	// Only a field that is filled releases its parts.
	for _, name := range released {
		fr.audit.release(name)
	}
	s := strings.Join(parts, fd.Separator)
	first.v, first.cmp, first.masked, first.reason = s, s, masked, ""
	return first
}

// disputed reports whether an open correction names this field of this
// form, or the same department record and field from another form. The
// record is compared by the department's id, which corrections keep,
// whatever the provenance shows the caller.
func (fr *formRun) disputed(fd *forms.Field, v value) bool {
	for _, c := range fr.disputes {
		if c.Form == fr.f.ID && c.Field == fd.Name {
			return true
		}
		if v.prov != nil && c.RecordID != "" && c.Dataset == v.prov.GetDataset() && c.RecordID == v.id && c.SourceField == v.ref.Field {
			return true
		}
	}
	return false
}

func (fr *formRun) material(m *forms.Material) *v1.MaterialStatus {
	out := &v1.MaterialStatus{Name: m.Name}
	if m.SatisfiedBy == nil {
		out.Reason = ReasonNoSource
		out.Detail = "no department holds this material; the applicant hands it in"
		return out
	}
	c := fr.source(m.SatisfiedBy.Source)
	if c.rec == nil {
		out.Reason, out.Detail = c.reason, c.detail
		return out
	}
	fields := c.rec.GetFields().GetFields()
	allowed := c.dec.FieldsFor(c.region)
	for _, k := range slices.Sorted(maps.Keys(m.SatisfiedBy.Where)) {
		// Whether the condition holds tells the field's value: the grant
		// must give the field, unmasked.
		if !slices.Contains(allowed, k) || c.dec.MaskFor(c.region, k) != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			out.Reason = ReasonFieldNotGranted
			out.Detail = fmt.Sprintf("whether the %s record serves depends on %s, which %s",
				c.ds.Name, k, grantWording(allowed, c.dec.MaskFor(c.region, k), k))
			if slices.Contains(c.dec.Fields, k) && c.dec.Masks[k] == v1.MaskKind_MASK_KIND_UNSPECIFIED {
				out.Detail += " for the region of that record" // released unmasked elsewhere
			}
			fr.audit.withhold(c.ds.Name + "." + k)
			return out
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.SatisfiedBy.Where)) {
		if want := m.SatisfiedBy.Where[k]; !slices.Contains(want, forms.Text(fields[k].AsInterface())) {
			// The field is released unmasked (checked above); the
			// detail quotes only the template's condition.
			out.Reason = ReasonConditionNotMet
			out.Detail = fmt.Sprintf("the %s record's %s is not %s", c.ds.Name, k, strings.Join(want, " or "))
			out.Provenance = c.prov
			return out
		}
	}
	out.Satisfied = true
	out.Provenance = c.prov
	return out
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) logger() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "corr-" + hex.EncodeToString(b[:])
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
