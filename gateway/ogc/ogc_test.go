package ogc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/cache"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Tokens of the test callers.
const (
	tokApproval = "demo-approval-bureau" // demo grant on every parcel field
	tokPlanning = "planning-token"       // grant without the holder fields
	tokSurvey   = "survey-token"         // grant without the geometry
	tokStranger = "stranger-token"       // authenticated, no grant
	tokMasked   = "masked-key-token"     // grant with the parcel code redacted
	tokNoKey    = "no-key-token"         // grant without the parcel code
)

// refKey keys the opaque record references of the test pipeline.
var refKey = []byte("0123456789abcdef0123456789abcdef")

// cityBox is a part of central Shijiazhuang (jurisdiction 1301) holding
// several dozen simulated parcels.
var cityBox = simulate.BBox{MinLon: 114.40, MinLat: 38.00, MaxLon: 114.45, MaxLat: 38.04}

func boxParam(b simulate.BBox) string {
	return fmt.Sprintf("%g,%g,%g,%g", b.MinLon, b.MinLat, b.MaxLon, b.MaxLat)
}

type snapshotDecider struct{ s *policy.Snapshot }

func (d snapshotDecider) Decide(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.s.Decide(r)
}

type recorder struct {
	mu  sync.Mutex
	got []query.Exchange
}

func (r *recorder) RecordExchange(_ context.Context, ex query.Exchange) (*v1.Receipt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ex)
	return &v1.Receipt{Node: "test-node", LeafIndex: uint64(len(r.got) - 1)}, nil
}

func (r *recorder) exchanges() []query.Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]query.Exchange(nil), r.got...)
}

type env struct {
	data      *simulate.Data
	resources *simulate.Resources
	rec       *recorder
	srv       *httptest.Server
}

var (
	dataOnce sync.Once
	simData  *simulate.Data
)

func testData() *simulate.Data {
	dataOnce.Do(func() { simData = simulate.Generate(simulate.DefaultSeed) })
	return simData
}

// grants returns the demo grants plus the planning and survey grants,
// derived from the demo parcel grant.
func grants(now time.Time) []*v1.Grant {
	gs := policy.DemoGrants(now)
	var parcels *v1.Grant
	for _, g := range gs {
		if g.GetId() == "demo-approval-parcels" {
			parcels = g
		}
	}
	planning := proto.Clone(parcels).(*v1.Grant)
	planning.Id = "test-planning-parcels"
	planning.Consumer = &v1.Consumer{SystemId: "planning-office", Department: "planning"}
	planning.Fields = []string{"parcel_id", "region_code", "address", "land_use", "area_sqm", "rights_type", "geometry"}
	survey := proto.Clone(parcels).(*v1.Grant)
	survey.Id = "test-survey-parcels"
	survey.Consumer = &v1.Consumer{SystemId: "survey-office", Department: "survey"}
	survey.Fields = []string{"parcel_id", "region_code", "land_use", "area_sqm"}
	masked := proto.Clone(parcels).(*v1.Grant)
	masked.Id = "test-masked-key-parcels"
	masked.Consumer = &v1.Consumer{SystemId: "masked-key-office", Department: "masked"}
	masked.Masks = []*v1.FieldMask{{Field: "parcel_id", Mask: v1.MaskKind_MASK_KIND_REDACT}}
	noKey := proto.Clone(parcels).(*v1.Grant)
	noKey.Id = "test-no-key-parcels"
	noKey.Consumer = &v1.Consumer{SystemId: "no-key-office", Department: "nokey"}
	noKey.Fields = []string{"region_code", "land_use", "area_sqm", "geometry"}
	return append(gs, planning, survey, masked, noKey)
}

// newEnv serves the simulated natural resources bureau, reads it through
// the built-in ogcfeatures connector with its demo settings (in process),
// behind the gateway cache, and serves the façade over a real pipeline.
// Its connector collects at most 1000 records per request, so that a read of
// the whole collection is refused as too large.
func newEnv(t *testing.T) *env { return newEnvWith(t, 1000) }

// newEnvWith is newEnv with the connector's max_records setting set to
// maxRecords (the demo's 5000 serves whole collections to GIS clients).
func newEnvWith(t *testing.T, maxRecords int) *env {
	t.Helper()
	refs, err := query.NewRecordRefs(refKey)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvRefs(t, maxRecords, refs)
}

// newEnvRefs is newEnvWith with the pipeline's record references given (nil:
// no reference key configured).
func newEnvRefs(t *testing.T, maxRecords int, refs *query.RecordRefs) *env {
	t.Helper()
	ctx := context.Background()
	data := testData()
	res := simulate.NewResources(data, simulate.Faults{})
	dept := httptest.NewServer(res)
	t.Cleanup(dept.Close)
	typ, settings, err := builtin.DemoSettings("resources", map[string]string{"RESOURCES_URL": dept.URL})
	if err != nil {
		t.Fatal(err)
	}
	settings = regexp.MustCompile(`max_records: \d+`).ReplaceAll(settings, []byte(fmt.Sprintf("max_records: %d", maxRecords)))
	conn, err := builtin.New(ctx, typ, settings)
	if err != nil {
		t.Fatal(err)
	}
	dict := datasets.Default()
	rec := &recorder{}
	decider := snapshotDecider{policy.Prepare(dict, grants(time.Now()), 1)}
	authn := auth.New([]auth.Entry{
		{TokenSHA256: auth.Digest(tokApproval), Identity: auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100"}},
		{TokenSHA256: auth.Digest(tokPlanning), Identity: auth.Identity{SystemID: "planning-office", Department: "planning", Region: "130100"}},
		{TokenSHA256: auth.Digest(tokSurvey), Identity: auth.Identity{SystemID: "survey-office", Department: "survey", Region: "130100"}},
		{TokenSHA256: auth.Digest(tokStranger), Identity: auth.Identity{SystemID: "stranger", Department: "elsewhere"}},
		{TokenSHA256: auth.Digest(tokMasked), Identity: auth.Identity{SystemID: "masked-key-office", Department: "masked", Region: "130100"}},
		{TokenSHA256: auth.Digest(tokNoKey), Identity: auth.Identity{SystemID: "no-key-office", Department: "nokey", Region: "130100"}},
	})
	h := &Handler{
		Auth: authn,
		Pipeline: &query.Pipeline{
			Dict:    dict,
			Policy:  decider,
			Fetch:   cache.New(conn, cache.Options{MaxBytes: 64 << 20, MaxStale: time.Hour, NegativeTTL: time.Second}),
			Record:  rec,
			MaxPage: 100,
			Refs:    refs,
		},
		Dict:           dict,
		Policy:         decider,
		DefaultPurpose: "approval",
	}
	mux := http.NewServeMux()
	mux.Handle("/ogc/", h)
	mux.Handle("/ogc", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{data: data, resources: res, rec: rec, srv: srv}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) get(t *testing.T, token, target string, hdr ...string) response {
	t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = e.srv.URL + target
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// expected returns the ids of the simulated parcels that intersect b and lie
// in the approval bureau's jurisdiction (region codes 1301…), counted
// independently of the connector, the pipeline and the façade.
func expected(d *simulate.Data, b simulate.BBox, holder string) map[string]bool {
	out := map[string]bool{}
	for _, p := range d.Parcels {
		if !strings.HasPrefix(p.RegionCode, "1301") {
			continue
		}
		if holder != "" && p.HolderID != holder {
			continue
		}
		if holder == "" && !p.Geometry.IntersectsBBox(b) {
			continue
		}
		out[p.ParcelID] = true
	}
	return out
}

// fcDoc is a decoded FeatureCollection, kept loose so that validation sees
// what was really sent.
type fcDoc struct {
	Type           string            `json:"type"`
	NumberReturned *int              `json:"numberReturned"`
	NumberMatched  *int              `json:"numberMatched"`
	Links          []Link            `json:"links"`
	Features       []json.RawMessage `json:"features"`
}

type featureDoc struct {
	Type       string          `json:"type"`
	ID         any             `json:"id"`
	Geometry   json.RawMessage `json:"geometry"`
	Properties map[string]any  `json:"properties"`
}

// validateFC checks that body is a GeoJSON FeatureCollection whose
// features are Features with closed Polygon rings in WGS 84 (or null
// geometry when allowNull), and returns its features.
func validateFC(t *testing.T, body []byte, allowNull bool) (fcDoc, []featureDoc) {
	t.Helper()
	var fc fcDoc
	if err := json.Unmarshal(body, &fc); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	if fc.Type != "FeatureCollection" {
		t.Fatalf("type = %q, want FeatureCollection", fc.Type)
	}
	if fc.Features == nil {
		t.Fatal("features missing (must be an array, possibly empty)")
	}
	if fc.NumberReturned == nil || *fc.NumberReturned != len(fc.Features) {
		t.Fatalf("numberReturned = %v, features = %d", fc.NumberReturned, len(fc.Features))
	}
	if fc.NumberMatched != nil {
		t.Errorf("numberMatched = %d sent although no department reports totals", *fc.NumberMatched)
	}
	if linkOf(fc.Links, "self") == "" {
		t.Error("no self link")
	}
	var out []featureDoc
	for i, raw := range fc.Features {
		out = append(out, validateFeature(t, fmt.Sprintf("features[%d]", i), raw, allowNull))
	}
	return fc, out
}

func validateFeature(t *testing.T, where string, raw []byte, allowNull bool) featureDoc {
	t.Helper()
	var f featureDoc
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if f.Type != "Feature" {
		t.Fatalf("%s: type = %q", where, f.Type)
	}
	if id, ok := f.ID.(string); !ok || id == "" {
		t.Fatalf("%s: id = %v, want a non-empty string", where, f.ID)
	}
	if f.Properties == nil {
		t.Fatalf("%s: properties missing", where)
	}
	if string(f.Geometry) == "null" || len(f.Geometry) == 0 {
		if !allowNull {
			t.Fatalf("%s: geometry is null", where)
		}
		return f
	}
	var g struct {
		Type        string        `json:"type"`
		Coordinates [][][]float64 `json:"coordinates"`
	}
	if err := json.Unmarshal(f.Geometry, &g); err != nil {
		t.Fatalf("%s: geometry: %v", where, err)
	}
	if g.Type != "Polygon" || len(g.Coordinates) == 0 {
		t.Fatalf("%s: geometry = %s, want a Polygon", where, f.Geometry)
	}
	for r, ring := range g.Coordinates {
		if len(ring) < 4 {
			t.Fatalf("%s: ring %d has %d positions, want at least 4", where, r, len(ring))
		}
		first, last := ring[0], ring[len(ring)-1]
		if len(first) < 2 || len(last) < 2 || first[0] != last[0] || first[1] != last[1] {
			t.Fatalf("%s: ring %d is not closed: %v … %v", where, r, first, last)
		}
		for _, p := range ring {
			if len(p) < 2 || p[0] < -180 || p[0] > 180 || p[1] < -90 || p[1] > 90 {
				t.Fatalf("%s: position %v is not WGS 84 lon/lat", where, p)
			}
		}
	}
	return f
}

func linkOf(links []Link, rel string) string {
	for _, l := range links {
		if l.Rel == rel {
			return l.Href
		}
	}
	return ""
}

type exceptionDoc struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

func wantException(t *testing.T, r response, status int) exceptionDoc {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != MediaJSON {
		t.Errorf("content type = %q, want %s", ct, MediaJSON)
	}
	var e exceptionDoc
	if err := json.Unmarshal(r.body, &e); err != nil || e.Code == "" || e.Description == "" {
		t.Fatalf("body %s is not an exception with code and description (%v)", r.body, err)
	}
	return e
}

func itemsURL(q url.Values) string {
	return "/ogc/collections/resources.parcels/items?" + q.Encode()
}
