// Package query is the request path of one dataset query: validate, decide
// (policy, on every request), fetch (through the cache), shape (project,
// mask, filter by jurisdiction), record (audit, fail closed) and respond with
// provenance and a receipt.
package query

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/telemetry"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/ident"
)

// Decider decides what a principal may see. The policy engine implements it.
type Decider interface {
	Decide(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// FreeDecider is implemented by a Decider that can also decide without
// charging grant quotas. DecideFree decides like Decide but charges no
// quota, and so never fails for an exhausted or unreachable quota. It is
// for decisions that are not requests of their own: the periodic checks
// that a change subscription still holds its grants. Record ids are never
// decided this way: they are released under the request's own decision
// (see RecordRefs).
type FreeDecider interface {
	DecideFree(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// Fetcher returns unshaped department records, possibly from a cache.
type Fetcher interface {
	Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (Result, error)
}

// Result is what a Fetcher returns.
type Result struct {
	Records       []*v1.SourceRecord
	NextPageToken string
	Delivery      v1.Delivery
	// FetchedAt is when the records were fetched from the department.
	FetchedAt time.Time
	// Shared reports that Records are the fetcher's own read-only values,
	// handed out again, the same pointers, for every answer drawn from the
	// same copy (the cache's decoded entries): the pipeline then keeps and
	// reuses what it renders of them.
	Shared bool
}

// Exchange is what the pipeline reports to the whole-process record.
type Exchange struct {
	Time               time.Time
	RequestID          string
	Kind               string
	Consumer           string
	ConsumerDepartment string
	// Dataset is the dataset read; an exchange that reads several (an
	// auto-fill) lists them comma-separated, and Department likewise.
	Dataset    string
	Department string
	// Subjects are the identifiers of the data subjects involved (the
	// recorder stores them only as keyed hashes).
	Subjects       []string
	Purpose        string
	LegalBasis     []string
	GrantIDs       []string
	Decision       string
	DenyReason     string
	FieldsReturned []string
	FieldsWithheld []string
	Delivery       string
	ResponseDigest string
}

// Decisions recorded in an Exchange.
const (
	DecisionPermit  = "permit"
	DecisionPartial = "partial"
	DecisionDeny    = "deny"
)

// Recorder appends an exchange to the audit log and returns its receipt. It
// returns only once the record is durable; an error means the exchange must
// be refused.
type Recorder interface {
	RecordExchange(ctx context.Context, ex Exchange) (*v1.Receipt, error)
}

// Pipeline runs dataset queries. Its fields are set before the first Run and
// not changed afterwards.
type Pipeline struct {
	Dict    *datasets.Dictionary
	Policy  Decider
	Fetch   Fetcher
	Record  Recorder
	Now     func() time.Time
	MaxPage int32
	// Registerer, when set, receives tongban_query_duration_seconds (by
	// dataset, consumer and outcome), registered at the first Run; nil
	// records no metrics.
	Registerer prometheus.Registerer
	// Refs turns the department record id of each released record into
	// what the caller may be told (see RecordRefs): the id where the
	// caller may see the dataset's key fields of that record unmasked,
	// otherwise an opaque reference. Nil omits the ids that may not be
	// released.
	Refs *RecordRefs

	metricsOnce sync.Once
	latency     *telemetry.Series[queryLabels, prometheus.Observer]
	renderOnce  sync.Once
	render      *renderings
}

// renderings returns the pipeline's table of record renderings, made on
// first use.
func (p *Pipeline) renderings() *renderings {
	p.renderOnce.Do(func() { p.render = newRenderings() })
	return p.render
}

// Request is a validated query with its caller.
type Request struct {
	Principal policy.Principal
	RequestID string
	Query     *v1.QueryRequest
}

// Run executes one query.
func (p *Pipeline) Run(ctx context.Context, r Request) (*v1.QueryResponse, error) {
	a, err := p.RunAnswer(ctx, r)
	return a.Response, err
}

// Answer is the response to a query with what the pipeline already has of
// its JSON encoding.
type Answer struct {
	Response *v1.QueryResponse
	// FieldsJSON is nil or aligned with Response.Records: a non-nil
	// element is the JSON of that record's fields, keys sorted, as
	// pbjson.AppendStruct writes them. The answer shares these bytes with
	// others: read them, never change them.
	FieldsJSON [][]byte
}

// RunAnswer executes one query like Run and also returns the parts of the
// answer's JSON the pipeline kept from earlier answers.
func (p *Pipeline) RunAnswer(ctx context.Context, r Request) (Answer, error) {
	// One clock reading is the request's time and the start of its
	// duration, unless Now gives the request's time.
	start := time.Now()
	now := start
	if p.Now != nil {
		now = p.Now()
	}
	latency := p.metrics()
	if latency == nil {
		return p.run(ctx, r, now)
	}
	a, err := p.run(ctx, r, now)
	dataset := r.Query.GetDataset()
	if _, known := p.Dict.Dataset(dataset); !known {
		dataset = "unknown" // bounded cardinality: callers choose the name
	}
	consumer := r.Principal.SystemID
	if consumer == "" {
		consumer = "anonymous"
	}
	outcome := "ok"
	if err != nil {
		outcome = strings.ToLower(apierr.From(err).Reason)
	}
	latency.Get(queryLabels{dataset, consumer, outcome}).Observe(time.Since(start).Seconds())
	return a, err
}

// queryLabels are the labels of tongban_query_duration_seconds.
type queryLabels struct{ dataset, consumer, outcome string }

// metrics registers the pipeline's metrics on first use; nil without a
// Registerer. A histogram already registered (by another pipeline on the
// same registry) is shared.
func (p *Pipeline) metrics() *telemetry.Series[queryLabels, prometheus.Observer] {
	if p.Registerer == nil {
		return nil
	}
	p.metricsOnce.Do(func() {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tongban_query_duration_seconds",
			Help:    "Dataset queries through the pipeline (policy, cache, shaping, audit) by dataset, consumer system and outcome (ok or the error reason in lowercase).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"dataset", "consumer", "outcome"})
		if err := p.Registerer.Register(h); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
					h = existing
				}
			}
		}
		p.latency = &telemetry.Series[queryLabels, prometheus.Observer]{New: func(l queryLabels) prometheus.Observer {
			return h.WithLabelValues(l.dataset, l.consumer, l.outcome)
		}}
	})
	return p.latency
}

// decide asks the policy engine, in span "policy.decide".
func (p *Pipeline) decide(ctx context.Context, req policy.Request) (policy.Decision, error) {
	ctx, span := telemetry.Start(ctx, "policy.decide")
	defer span.End()
	dec, err := p.Policy.Decide(ctx, req)
	if span.IsRecording() {
		decision := DecisionPermit
		switch {
		case err != nil:
			decision = DecisionDeny
		case len(dec.Withheld) > 0:
			decision = DecisionPartial
		}
		span.SetAttributes(
			attribute.String(telemetry.AttrDataset, req.Dataset),
			attribute.String(telemetry.AttrPurpose, truncate(req.Purpose, 64)),
			attribute.String(telemetry.AttrConsumer, req.Principal.SystemID),
			attribute.String(telemetry.AttrDecision, decision),
		)
		if err != nil {
			span.SetAttributes(attribute.String(telemetry.AttrReason, apierr.ReasonOf(err)))
		}
	}
	return dec, err
}

// record appends the exchange to the audit log, in span "audit.append".
func (p *Pipeline) record(ctx context.Context, ex Exchange) (*v1.Receipt, error) {
	ctx, span := telemetry.Start(ctx, "audit.append")
	defer span.End()
	receipt, err := p.Record.RecordExchange(ctx, ex)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrDataset, ex.Dataset),
			attribute.String(telemetry.AttrDecision, ex.Decision),
		)
		if err != nil {
			span.SetStatus(otelcodes.Error, "audit append failed")
		}
	}
	return receipt, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// run is RunAnswer without the metrics; now is the request's time.
func (p *Pipeline) run(ctx context.Context, r Request, now time.Time) (Answer, error) {
	q := r.Query
	ds, err := p.validate(q)
	if err != nil {
		return Answer{}, err
	}
	ex := Exchange{
		Time:               now,
		RequestID:          r.RequestID,
		Kind:               "query",
		Consumer:           r.Principal.SystemID,
		ConsumerDepartment: r.Principal.Department,
		Dataset:            ds.Name,
		Department:         ds.Department,
		Purpose:            q.GetPurpose(),
		Subjects:           requestSubjects(ds, q),
	}
	// The fields a request selects by (keys and filter) are decided with
	// the fields it asks for: selecting by a field the caller may not see,
	// or may see only masked, would reveal its values. This one decision,
	// charged and cited, also tells whether the record ids (the values of
	// the dataset's key fields) may be released: only where it gives every
	// key field unmasked, that is when the key fields are asked for (a
	// request naming no fields asks for all) or selected by.
	sel := selectorFields(q)
	decideFields := q.GetFields()
	if len(decideFields) > 0 {
		decideFields = slices.Clone(decideFields)
		for _, f := range sel {
			if !slices.Contains(decideFields, f) {
				decideFields = append(decideFields, f)
			}
		}
	}
	preq := policy.Request{
		Principal: r.Principal,
		Dataset:   ds.Name,
		Fields:    decideFields,
		Purpose:   q.GetPurpose(),
		Time:      now,
		// Refused below when only selector fields are allowed: charge
		// nothing then.
		Wanted: q.GetFields(),
	}
	dec, err := p.decide(ctx, preq)
	if err == nil {
		err = checkSelectors(ds, &dec, q, sel)
	}
	if err != nil {
		ex.Decision = DecisionDeny
		ex.DenyReason = apierr.ReasonOf(err)
		ex.FieldsWithheld = q.GetFields()
		// A denial is recorded too; if that fails the denial still stands.
		_, _ = p.record(ctx, ex)
		return Answer{}, err
	}
	// Fields decided only because the request selects by them are not
	// returned unless asked for.
	returned := dec.Fields
	if len(q.GetFields()) > 0 {
		returned = slices.DeleteFunc(slices.Clone(dec.Fields), func(f string) bool { return !slices.Contains(q.GetFields(), f) })
	}
	if len(returned) == 0 {
		// Only the selector fields were allowed: as without them,
		// nothing asked for may be shown.
		reason := mostSpecific(dec.Withheld)
		err := apierr.Newf(codes.PermissionDenied, reason, "no active grant lets %s read %s fields [%s] for purpose %q",
			r.Principal, ds.Name, strings.Join(q.GetFields(), " "), q.GetPurpose()).With("dataset", ds.Name).With("purpose", q.GetPurpose())
		ex.Decision = DecisionDeny
		ex.DenyReason = reason
		ex.FieldsWithheld = q.GetFields()
		_, _ = p.record(ctx, ex)
		return Answer{}, err
	}
	sh := shaping{ds: ds, dec: dec, sel: sel, want: q.GetFields(), refs: p.Refs}
	for _, f := range sel {
		if filterOnly(ds, q, f) {
			sh.unmasked = append(sh.unmasked, f)
		}
	}

	res, err := p.Fetch.Fetch(ctx, ds, p.fetchRequest(ds, q))
	if err != nil {
		if len(q.GetKeys()) > 0 && apierr.CodeOf(err) == codes.NotFound && apierr.ReasonOf(err) == apierr.ReasonNotFound {
			// The department (or the cache's memory of its answer) knows
			// no such record: recorded like an empty answer.
			return Answer{}, p.notFound(ctx, ex, ds, q)
		}
		return Answer{}, err
	}

	if res.Shared {
		sh.memo = p.renderings()
	}
	resp := &v1.QueryResponse{
		GrantIds:      dec.GrantIDs,
		LegalBasis:    dec.LegalBasis,
		NextPageToken: res.NextPageToken,
		RequestId:     r.RequestID,
	}
	for _, w := range dec.Withheld {
		resp.Withheld = append(resp.Withheld, &v1.Withheld{Field: w.Field, Reason: w.Reason})
	}
	outside := 0
	var subjects []string
	var rendered []*rendering
	for _, src := range res.Records {
		rec, rd, ok := sh.shape(src, res, now)
		if !ok {
			outside++
			continue
		}
		if ds.SubjectFld != "" {
			if v := src.GetFields().GetFields()[ds.SubjectFld].GetStringValue(); v != "" {
				subjects = append(subjects, v)
			}
		}
		resp.Records = append(resp.Records, rec)
		if rd != nil && rendered == nil {
			rendered = make([]*rendering, len(resp.Records)-1, len(res.Records))
		}
		if rendered != nil {
			rendered = append(rendered, rd)
		}
	}
	// A key lookup names its records: if none may be shown, say why. A
	// filter or area query pages through a collection: a page whose records
	// all lie outside the jurisdiction is an empty page, and paging goes on.
	lookup := len(q.GetKeys()) > 0
	if lookup && len(resp.Records) == 0 && outside > 0 {
		ex.Decision = DecisionDeny
		ex.DenyReason = policy.ReasonOutsideJurisdiction
		_, _ = p.record(ctx, ex)
		return Answer{}, apierr.Newf(codes.PermissionDenied, apierr.ReasonOutsideJurisdiction,
			"the records of %s asked for lie outside the jurisdiction of %s's grants (%s)",
			ds.Name, r.Principal, strings.Join(dec.Jurisdiction, ", ")).With("dataset", ds.Name)
	}
	if lookup && len(resp.Records) == 0 {
		return Answer{}, p.notFound(ctx, ex, ds, q)
	}

	ex.Decision = DecisionPermit
	if len(dec.Withheld) > 0 || outside > 0 {
		ex.Decision = DecisionPartial
	}
	ex.LegalBasis = dec.LegalBasis
	ex.GrantIDs = dec.GrantIDs
	ex.FieldsReturned = returned
	for _, w := range dec.Withheld {
		ex.FieldsWithheld = append(ex.FieldsWithheld, w.Field)
	}
	ex.Delivery = deliveryName(res.Delivery)
	slices.Sort(subjects)
	ex.Subjects = slices.Compact(subjects)
	ex.ResponseDigest, err = digest(resp.Records, rendered)
	if err != nil {
		return Answer{}, fmt.Errorf("digesting response: %w", err)
	}
	receipt, err := p.record(ctx, ex)
	if err != nil {
		// Fail closed: an exchange that cannot be recorded is refused.
		return Answer{}, apierr.New(codes.Unavailable, apierr.ReasonAuditUnavailable,
			"the exchange could not be recorded in the audit log, so it was refused").WithCause(err)
	}
	resp.Receipt = receipt
	a := Answer{Response: resp}
	if rendered != nil {
		a.FieldsJSON = make([][]byte, len(rendered))
		for i, rd := range rendered {
			if rd != nil {
				a.FieldsJSON[i] = rd.fieldsJSON
			}
		}
	}
	return a, nil
}

// mostSpecific returns the most specific reason among withheld fields, as
// the policy engine picks the reason of a request it denies
// (policy.ReasonRank); FIELD_NOT_GRANTED when there are none.
func mostSpecific(withheld []policy.Withheld) string {
	reason, rank := policy.ReasonFieldNotGranted, -1
	for _, w := range withheld {
		if r := policy.ReasonRank(w.Reason); r > rank {
			reason, rank = w.Reason, r
		}
	}
	return reason
}

func (p *Pipeline) notFound(ctx context.Context, ex Exchange, ds *datasets.Dataset, q *v1.QueryRequest) error {
	ex.Decision = DecisionPermit
	ex.DenyReason = apierr.ReasonNotFound
	_, _ = p.record(ctx, ex)
	what := make([]string, 0, len(q.GetKeys()))
	for _, k := range slices.Sorted(maps.Keys(q.GetKeys())) {
		what = append(what, k+"="+q.GetKeys()[k])
	}
	return apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no record of %s matches %s", ds.Name, strings.Join(what, ", ")).
		With("dataset", ds.Name).With("department", ds.Department)
}

// validate checks the request against the dictionary; errors name the field.
func (p *Pipeline) validate(q *v1.QueryRequest) (*datasets.Dataset, error) {
	if q.GetDataset() == "" {
		return nil, apierr.Invalid("dataset", "is required")
	}
	ds, ok := p.Dict.Dataset(q.GetDataset())
	if !ok {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset,
			"dataset %q does not exist (see GET /v1/catalogue)", q.GetDataset()).With("dataset", q.GetDataset())
	}
	if strings.TrimSpace(q.GetPurpose()) == "" {
		return nil, apierr.Invalid("purpose", "is required: state the legal purpose of the request, e.g. \"approval\"")
	}
	for i, f := range q.GetFields() {
		if !ds.HasField(f) {
			e := apierr.Invalid(fmt.Sprintf("fields[%d]", i), "%q is not a field of %s", f, ds.Name)
			e.Reason = apierr.ReasonUnknownField
			return nil, e
		}
	}
	selectors := 0
	for _, k := range sortedKeys(q.GetKeys()) {
		v := q.GetKeys()[k]
		if !ds.IsLookup(k) {
			return nil, apierr.Invalid("keys."+k, "%s cannot be looked up by %q; use one of %s",
				ds.Name, k, strings.Join(append(slices.Clone(ds.Keys), ds.Lookups...), ", "))
		}
		if v == "" {
			return nil, apierr.Invalid("keys."+k, "must not be empty")
		}
		if err := validateIdent(ds, k, v); err != nil {
			return nil, apierr.InvalidIdentifier("keys."+k, err)
		}
		selectors++
	}
	for _, k := range sortedKeys(q.GetFilter()) {
		if !ds.HasField(k) {
			return nil, apierr.Invalid("filter."+k, "%q is not a field of %s", k, ds.Name)
		}
		if err := validateIdent(ds, k, q.GetFilter()[k]); err != nil {
			return nil, apierr.InvalidIdentifier("filter."+k, err)
		}
		selectors++
	}
	if b := q.GetBbox(); b != nil {
		if ds.Kind != "spatial" {
			return nil, apierr.Invalid("bbox", "%s is not a spatial dataset", ds.Name)
		}
		if err := validateBBox(b); err != nil {
			return nil, apierr.Invalid("bbox", "%v", err)
		}
		selectors++
	}
	if selectors == 0 {
		return nil, apierr.Invalid("keys", "name the records: give keys (%s), a filter or a bbox",
			strings.Join(append(slices.Clone(ds.Keys), ds.Lookups...), ", "))
	}
	if q.GetPageSize() < 0 {
		return nil, apierr.Invalid("page_size", "must not be negative")
	}
	return ds, nil
}

func validateIdent(ds *datasets.Dataset, field, v string) error {
	f, _ := ds.Field(field)
	switch f.Ident {
	case "credit_code":
		return ident.ValidateCreditCode(v)
	case "resident_id":
		return ident.ValidateResidentID(v)
	case "party":
		cerr := ident.ValidateCreditCode(v)
		if cerr == nil {
			return nil
		}
		rerr := ident.ValidateResidentID(v)
		if rerr == nil {
			return nil
		}
		return fmt.Errorf("neither a valid unified social credit code (%v) nor a valid resident ID (%v)", cerr, rerr)
	}
	return nil
}

func validateBBox(b *v1.BBox) error {
	for _, c := range []float64{b.MinLon, b.MinLat, b.MaxLon, b.MaxLat} {
		if math.IsNaN(c) || math.IsInf(c, 0) {
			return fmt.Errorf("coordinates must be finite numbers")
		}
	}
	switch {
	case b.MinLon < -180 || b.MaxLon > 180 || b.MinLat < -90 || b.MaxLat > 90:
		return fmt.Errorf("coordinates must be WGS 84 longitude/latitude")
	case b.MinLon >= b.MaxLon || b.MinLat >= b.MaxLat:
		return fmt.Errorf("min must be less than max")
	}
	return nil
}

func (p *Pipeline) fetchRequest(ds *datasets.Dataset, q *v1.QueryRequest) *v1.FetchRequest {
	size := q.GetPageSize()
	if p.MaxPage > 0 && (size == 0 || size > p.MaxPage) {
		size = p.MaxPage
	}
	return &v1.FetchRequest{
		Dataset:   ds.Name,
		Keys:      q.GetKeys(),
		Filter:    q.GetFilter(),
		Bbox:      q.GetBbox(),
		PageSize:  size,
		PageToken: q.GetPageToken(),
	}
}

// sortedKeys returns the keys of m in sorted order; for the usual map of
// at most one key, without sorting.
func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// selectorFields returns the fields a query selects records by: its keys
// and filter fields, sorted, each once.
func selectorFields(q *v1.QueryRequest) []string {
	out := make([]string, 0, len(q.GetKeys())+len(q.GetFilter()))
	for k := range q.GetKeys() {
		out = append(out, k)
	}
	for k := range q.GetFilter() {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// filterOnly reports whether field is selected by the request's filter and
// is not one of the dataset's keys or lookups. Looking a record up by a key
// the caller already holds is what a grant of the dataset is for, even when
// the key is shown masked; filtering on any other masked field would reveal
// its unmasked values.
func filterOnly(ds *datasets.Dataset, q *v1.QueryRequest, field string) bool {
	_, inFilter := q.GetFilter()[field]
	return inFilter && !ds.IsLookup(field)
}

// checkSelectors refuses a query that selects records by a field the
// decision does not allow, or filters on a field it allows only masked.
func checkSelectors(ds *datasets.Dataset, dec *policy.Decision, q *v1.QueryRequest, sel []string) error {
	for _, f := range sel {
		if !slices.Contains(dec.Fields, f) {
			reason, ok := dec.Withholds(f)
			if !ok {
				reason = policy.ReasonFieldNotGranted
			}
			return apierr.Newf(codes.PermissionDenied, policy.ReasonFieldNotGranted,
				"records of %s cannot be selected by %s: the caller's grants do not give that field (%s)", ds.Name, f, reason).
				With("dataset", ds.Name).With("field", f)
		}
		if filterOnly(ds, q, f) && dec.Masks[f] != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return apierr.Newf(codes.PermissionDenied, policy.ReasonFieldNotGranted,
				"records of %s cannot be filtered by %s: the caller's grants give that field only masked", ds.Name, f).
				With("dataset", ds.Name).With("field", f)
		}
	}
	return nil
}

// shaping is how the records of one query are shaped.
type shaping struct {
	ds *datasets.Dataset
	// dec is held by value: held by pointer, it would be moved to the
	// heap with every query, as escape analysis follows the rendering's
	// dataset pointer out of the shaping.
	dec policy.Decision
	// sel are the fields the query selects by: a record is returned only
	// where the decision gives every one of them for its region.
	sel []string
	// unmasked are the fields of sel that must be given unmasked too.
	unmasked []string
	// want, when not empty, limits the fields returned.
	want []string
	// refs turns hidden record ids into references (nil: omit them).
	refs *RecordRefs
	// memo, when set, keeps and reuses the renderings of the records: set
	// only when the records are shared (Result.Shared).
	memo *renderings
}

// shape projects and masks one source record under the decision. It returns
// false when the record lies outside the decision's jurisdiction, or when
// the decision does not give, for the record's region, a field the query
// selected it by (unmasked, for the fields in unmasked). The provenance
// carries the record's id only where the decision gives the dataset's key
// fields unmasked for the record's region; otherwise it carries the id's
// opaque reference (see RecordRefs). The decision covers only the fields
// asked for and selected by, so a key field neither asked for nor selected
// by never releases the id.
//
// With a memo, the record's fields and masked list are those of a kept
// rendering, shared read-only with other answers, and r is that
// rendering; otherwise r is nil.
func (sh *shaping) shape(src *v1.SourceRecord, res Result, now time.Time) (rec *v1.Record, r *rendering, ok bool) {
	ds, dec := sh.ds, &sh.dec
	in := src.GetFields().GetFields()
	region := ""
	if ds.RegionField != "" {
		region = in[ds.RegionField].GetStringValue()
	}
	fields := dec.FieldsFor(region)
	if fields == nil {
		return nil, nil, false
	}
	for _, f := range sh.sel {
		if !slices.Contains(fields, f) {
			return nil, nil, false
		}
	}
	for _, f := range sh.unmasked {
		if dec.MaskFor(region, f) != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return nil, nil, false
		}
	}
	hideID := src.GetId() != "" && !idVisible(dec, ds, region, fields)
	if len(sh.want) > 0 {
		fields = slices.DeleteFunc(slices.Clone(fields), func(f string) bool { return !slices.Contains(sh.want, f) })
	}
	// The record and its provenance messages in one allocation.
	parts := new(recordParts)
	rec, prov := &parts.rec, &parts.prov
	rec.Provenance = prov
	prov.Department, prov.Dataset, prov.Delivery = ds.Department, ds.Name, res.Delivery
	parts.fetchedAt.Seconds, parts.fetchedAt.Nanos = res.FetchedAt.Unix(), int32(res.FetchedAt.Nanosecond())
	prov.FetchedAt = &parts.fetchedAt
	if res.Delivery != v1.Delivery_DELIVERY_LIVE && !res.FetchedAt.IsZero() {
		age := now.Sub(res.FetchedAt)
		parts.age.Seconds, parts.age.Nanos = int64(age/time.Second), int32(age%time.Second)
		prov.Age = &parts.age
	}
	var marr [32]v1.MaskKind
	masks := dec.AppendMasks(marr[:0], region, fields)
	if sh.memo == nil {
		rec.Fields, rec.MaskedFields = project(in, fields, masks)
		prov.RecordId = sh.recordID(src, hideID)
		return rec, nil, true
	}
	var arr [512]byte
	sig := shapeSig(arr[:0], fields, masks, hideID)
	if r = sh.memo.get(src, ds, sig); r == nil {
		r = &rendering{src: src, ds: ds, sig: string(sig), recordID: sh.recordID(src, hideID)}
		r.fields, r.masked = project(in, fields, masks)
		r.render()
		sh.memo.put(r)
	}
	prov.RecordId = r.recordID
	rec.Fields, rec.MaskedFields = r.fields, r.masked
	return rec, r, true
}

// recordParts are the messages of a shaped record, allocated together:
// the record, its provenance, and the provenance's time and age.
type recordParts struct {
	rec       v1.Record
	prov      v1.Provenance
	fetchedAt timestamppb.Timestamp
	age       durationpb.Duration
}

// recordID is the record id as released: the id, or its reference when
// hidden.
func (sh *shaping) recordID(src *v1.SourceRecord, hideID bool) string {
	if hideID {
		return sh.refs.Ref(sh.ds.Name, src.GetId())
	}
	return src.GetId()
}

// project returns the fields of in that are in fields, each masked with
// its mask in masks (aligned with fields), and the names of the masked
// ones.
func project(in map[string]*structpb.Value, fields []string, masks []v1.MaskKind) (*structpb.Struct, []string) {
	out := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(fields))}
	var masked []string
	for i, f := range fields {
		v, ok := in[f]
		if !ok {
			continue
		}
		if m := masks[i]; m != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			if s, isStr := v.GetKind().(*structpb.Value_StringValue); isStr {
				v = structpb.NewStringValue(policy.ApplyMask(m, s.StringValue))
			} else {
				v = structpb.NewStringValue(policy.ApplyMask(m, ""))
			}
			masked = append(masked, f)
		}
		out.Fields[f] = v
	}
	return out, masked
}

func requestSubjects(ds *datasets.Dataset, q *v1.QueryRequest) []string {
	var out []string
	for k, v := range q.GetKeys() {
		if f, ok := ds.Field(k); ok && f.Ident != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// digest is the SHA-256 of the released records in a canonical form: for
// each record its provenance (department, dataset, record id or reference
// as released, delivery),
// masked fields, and fields in sorted order, every string length-prefixed
// and every value tagged with its JSON type. Two responses that release the
// same data have the same digest, whatever their JSON key order.
//
// rendered, when not nil, is aligned with records: a record with a
// rendering takes the canonical form of its masked fields and fields from
// it, and the digest of a one-record answer is kept with its rendering.
func digest(records []*v1.Record, rendered []*rendering) (string, error) {
	if len(records) == 1 && len(rendered) == 1 && rendered[0] != nil && rendered[0].canon != nil {
		return rendered[0].soleDigest(records[0])
	}
	return digestOf(records, rendered)
}

// digestOf computes digest(records, rendered).
func digestOf(records []*v1.Record, rendered []*rendering) (string, error) {
	bp := digestBufs.Get().(*[]byte)
	defer digestBufs.Put(bp)
	buf := (*bp)[:0]
	var err error
	for i, r := range records {
		p := r.GetProvenance()
		buf = append(buf, 'R')
		buf = appendStr(buf, p.GetDepartment())
		buf = appendStr(buf, p.GetDataset())
		buf = appendStr(buf, p.GetRecordId())
		buf = appendStr(buf, p.GetDelivery().String())
		if rendered != nil && rendered[i] != nil && rendered[i].canon != nil {
			buf = append(buf, rendered[i].canon...)
			continue
		}
		for _, m := range r.GetMaskedFields() {
			buf = appendStr(buf, m)
		}
		if buf, err = appendCanonStruct(buf, r.GetFields()); err != nil {
			return "", err
		}
	}
	sum := sha256.Sum256(buf)
	if cap(buf) <= 1<<20 {
		*bp = buf
	}
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:]), nil
}

// digestBufs holds the buffers digest builds the canonical form in.
var digestBufs = sync.Pool{New: func() any { return new([]byte) }}

// appendStr appends s, length-prefixed.
func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendCanonStruct appends the canonical form of st: its fields in sorted
// key order, each key length-prefixed and each value tagged.
func appendCanonStruct(b []byte, st *structpb.Struct) ([]byte, error) {
	var arr [32]string
	keys := arr[:0]
	for k := range st.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(append(b, 'S'), uint64(len(keys)))
	var err error
	for _, k := range keys {
		b = appendStr(b, k)
		if b, err = appendCanonValue(b, st.GetFields()[k]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func appendCanonValue(b []byte, v *structpb.Value) ([]byte, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return appendStr(append(b, 's'), k.StringValue), nil
	case *structpb.Value_NumberValue:
		return binary.BigEndian.AppendUint64(append(b, 'n'), math.Float64bits(k.NumberValue)), nil
	case *structpb.Value_BoolValue:
		if k.BoolValue {
			return append(b, 'b', 1), nil
		}
		return append(b, 'b', 0), nil
	case *structpb.Value_NullValue, nil:
		return append(b, 'z'), nil
	case *structpb.Value_StructValue:
		return appendCanonStruct(b, k.StructValue)
	case *structpb.Value_ListValue:
		b = binary.AppendUvarint(append(b, 'l'), uint64(len(k.ListValue.GetValues())))
		var err error
		for _, e := range k.ListValue.GetValues() {
			if b, err = appendCanonValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	default:
		return nil, fmt.Errorf("digesting a value of kind %T", k)
	}
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
