package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
)

// Scenario names.
const (
	scenarioHit      = "cache-hit"
	scenarioBare     = "bare"
	scenarioMiss     = "cache-miss"
	scenarioAutofill = "autofill"
	scenarioPolicy   = "policy"
	scenarioAudit    = "audit"
)

// allScenarios is every scenario in the order a concurrency level runs
// them: the cache-hit path and the bare server back to back.
var allScenarios = []string{scenarioHit, scenarioBare, scenarioMiss, scenarioAutofill, scenarioPolicy, scenarioAudit}

// scenarioHelp describes each scenario for --help and the docs.
var scenarioHelp = map[string]string{
	scenarioHit:      "POST /v1/datasets/market.business_licences:query for warmed credit codes (auth, policy, quota, cache hit, shaping with a mask, audit append with fsync group commit)",
	scenarioBare:     "a bare net/http server process answering the same requests with the bytes of one cache-hit answer",
	scenarioMiss:     "POST /v1/datasets/approval.permits:query by permit_id never asked before: every request goes through the rest connector plugin to the simulated approval bureau",
	scenarioAutofill: "POST /v1/forms/food_business_licence:autofill for warmed applicants (three datasets from three departments, from the cache)",
	scenarioPolicy:   "policy.Snapshot.Decide on the demo grants, in process (a repeated request: answered from the snapshot's kept decisions)",
	scenarioAudit:    "audit.Log.AppendEntry of an exchange-sized entry, in process, fsync group commit",
}

// workload holds the identifiers the HTTP scenarios use, from the demo
// data (simulate.DefaultSeed), all in region 1301, the jurisdiction of the
// approval bureau's grants.
type workload struct {
	hitCodes   []string
	missKeys   []string
	applicants []string
}

// newWorkload picks hit keys, miss keys and auto-fill applicants.
func newWorkload(hitKeys, applicants int) workload {
	data := simulate.Generate(simulate.DefaultSeed)
	var w workload
	for _, l := range data.Licences {
		if strings.HasPrefix(l.RegionCode, "1301") && len(w.hitCodes) < hitKeys {
			w.hitCodes = append(w.hitCodes, l.CreditCode)
		}
	}
	for _, p := range data.Permits {
		if strings.HasPrefix(p.RegionCode, "1301") {
			w.missKeys = append(w.missKeys, p.PermitID)
		}
	}
	for _, e := range data.SampleEnterprises(len(data.Enterprises)) {
		if strings.HasPrefix(e.RegionCode, "1301") && len(w.applicants) < applicants {
			w.applicants = append(w.applicants, e.CreditCode)
		}
	}
	return w
}

func queryBody(key, value string) []byte {
	return fmt.Appendf(nil, `{"keys":{%q:%q},"purpose":"approval"}`, key, value)
}

// expect returns a check that the answer contains want.
func expect(want string) func([]byte) error {
	w := []byte(want)
	return func(b []byte) error {
		if !bytes.Contains(b, w) {
			return fmt.Errorf("answer lacks %s", want)
		}
		return nil
	}
}

// hitOp is the cache-hit query against base (the gateway, or the bare
// server answering the same path).
func hitOp(client *http.Client, base string, codes []string) op {
	bodies := make([][]byte, len(codes))
	for i, c := range codes {
		bodies[i] = queryBody("credit_code", c)
	}
	t := &httpTarget{client: client, url: base + "/v1/datasets/market.business_licences:query", token: "demo-approval-bureau"}
	return t.postCheck(func(seq uint64) []byte { return bodies[seq%uint64(len(bodies))] }, expect(`"delivery":"DELIVERY_CACHE"`))
}

// missOp queries keys[seq] (each once) through the connector.
func missOp(client *http.Client, base string, keys []string) op {
	t := &httpTarget{client: client, url: base + "/v1/datasets/approval.permits:query", token: "demo-approval-bureau"}
	return t.postCheck(func(seq uint64) []byte { return queryBody("permit_id", keys[seq]) }, expect(`"delivery":"DELIVERY_LIVE"`))
}

var summaryRE = regexp.MustCompile(`"summary":\{[^}]*\}`)

// autofillOp auto-fills the food business licence form for the applicants,
// and checks that each answer's summary (fields and materials filled)
// equals the one seen at warm-up, so a quota refusal or an unavailable
// department, which auto-fill reports as an empty field, counts as an
// error.
func autofillOp(client *http.Client, base string, applicants []string, summaries map[string]string) op {
	t := &httpTarget{client: client, url: base + "/v1/forms/food_business_licence:autofill", token: "demo-approval-bureau"}
	bodies := make([][]byte, len(applicants))
	checks := make([][]byte, len(applicants))
	for i, a := range applicants {
		bodies[i] = fmt.Appendf(nil, `{"applicant_id":%q}`, a)
		checks[i] = []byte(summaries[a])
	}
	return func(ctx context.Context, seq uint64) error {
		i := seq % uint64(len(applicants))
		buf := bufPool.Get().(*bytes.Buffer)
		defer bufPool.Put(buf)
		b, err := t.post(ctx, bodies[i], buf)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, checks[i]) {
			return fmt.Errorf("summary differs from the warm-up's %s in %s", checks[i], truncate(string(b), 500))
		}
		return nil
	}
}

// warmAutofill auto-fills the form once per applicant and returns each
// answer's summary. An answer with a field left empty for want of quota,
// grant or department is an error.
func warmAutofill(ctx context.Context, client *http.Client, base string, applicants []string) (map[string]string, error) {
	t := &httpTarget{client: client, url: base + "/v1/forms/food_business_licence:autofill", token: "demo-approval-bureau"}
	out := map[string]string{}
	var buf bytes.Buffer
	for _, a := range applicants {
		b, err := t.post(ctx, fmt.Appendf(nil, `{"applicant_id":%q}`, a), &buf)
		if err != nil {
			return nil, fmt.Errorf("auto-filling for %s: %w", a, err)
		}
		for _, bad := range []string{"QUOTA_EXCEEDED", "DEPARTMENT_UNAVAILABLE", "NO_GRANT", "OUTSIDE_JURISDICTION"} {
			if bytes.Contains(b, []byte(bad)) {
				return nil, fmt.Errorf("auto-fill for %s left a field empty: %s", a, bad)
			}
		}
		s := summaryRE.Find(b)
		if s == nil {
			return nil, fmt.Errorf("auto-fill answer for %s has no summary: %s", a, truncate(string(b), 300))
		}
		out[a] = string(s)
	}
	return out, nil
}

// warmHits queries each code until the answer comes from the cache under
// the re-issued grant, and returns one cache-hit answer body.
func warmHits(ctx context.Context, client *http.Client, base string, codes []string, grantID string) ([]byte, error) {
	t := &httpTarget{client: client, url: base + "/v1/datasets/market.business_licences:query", token: "demo-approval-bureau"}
	var buf bytes.Buffer
	var last []byte
	for _, c := range codes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, err := t.post(ctx, queryBody("credit_code", c), &buf)
			if err != nil {
				return nil, fmt.Errorf("warming %s: %w", c, err)
			}
			if bytes.Contains(b, []byte(`"delivery":"DELIVERY_CACHE"`)) && bytes.Contains(b, []byte(`"`+grantID+`"`)) {
				last = bytes.Clone(b)
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("warming %s: no cache hit under grant %s after 10s: %s", c, grantID, truncate(string(b), 300))
			}
			if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	if last == nil {
		return nil, errors.New("no hit keys")
	}
	return last, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// policyOp decides the approval bureau's licence query on a snapshot of
// the demo grants, as the query pipeline does on every request.
func policyOp(now time.Time) (op, error) {
	snap := policy.Prepare(datasets.Default(), policy.DemoGrants(now), 1)
	req := policy.Request{
		Principal: policy.Principal{SystemID: "approval-bureau", Department: "approval", Region: "130100"},
		Dataset:   "market.business_licences",
		Purpose:   "approval",
		Time:      now,
	}
	dec, err := snap.Decide(req)
	if err != nil {
		return nil, fmt.Errorf("deciding on the demo grants: %w", err)
	}
	want := len(dec.Fields)
	if want == 0 {
		return nil, errors.New("the demo grants release no field")
	}
	return func(context.Context, uint64) error {
		d, err := snap.Decide(req)
		if err != nil {
			return err
		}
		if len(d.Fields) != want {
			return fmt.Errorf("decision released %d fields, want %d", len(d.Fields), want)
		}
		return nil
	}, nil
}

// auditLog opens an audit log in dir with the gateway's default
// checkpoint settings.
func auditLog(ctx context.Context, dir string) (*audit.Log, error) {
	origin := "tongban/load"
	skey, _, err := audit.GenerateKey(origin)
	if err != nil {
		return nil, fmt.Errorf("generating an audit key: %w", err)
	}
	def := config.Default().Audit
	l, err := audit.Open(ctx, audit.Config{
		Dir:                dir,
		Origin:             origin,
		SigningKey:         skey,
		CheckpointEvery:    uint64(def.CheckpointEvery),
		CheckpointInterval: def.CheckpointInterval,
	}, audit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	return l, nil
}

// auditOp appends an entry shaped like the one a cache-hit licence query
// records.
func auditOp(l *audit.Log, codes []string) op {
	key := []byte("tongban-load subject key 0123456")
	subjects := make([]string, len(codes))
	for i, c := range codes {
		subjects[i] = audit.SubjectHash(key, c)
	}
	fields := []string{"address", "business_scope", "credit_code", "enterprise_type", "established_on", "issued_on",
		"legal_representative", "legal_representative_id", "name", "operating_until", "region_code",
		"registered_capital", "registration_authority", "status"}
	return func(ctx context.Context, seq uint64) error {
		_, err := l.AppendEntry(ctx, audit.Entry{
			Time:               time.Now(),
			RequestID:          fmt.Sprintf("%016x", seq),
			Node:               "load-node",
			Kind:               audit.KindExchange,
			Consumer:           "approval-bureau",
			ConsumerDepartment: "approval",
			Datasets:           []string{"market.business_licences"},
			Subjects:           []string{subjects[seq%uint64(len(subjects))]},
			Purpose:            "approval",
			LegalBasis:         []string{"《中华人民共和国行政许可法》第三十三条；《优化营商环境条例》（国务院令第722号）"},
			GrantIDs:           []string{"g-0123456789abcdef"},
			Decision:           audit.DecisionPermit,
			FieldsReturned:     fields,
			Department:         "market",
			Delivery:           audit.DeliveryCache,
			ResponseDigest:     "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
		})
		return err
	}
}
