package ogcfeatures

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/builtin/internal/testutil"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

type parcel struct {
	id, holder string
	ring       [][2]float64
}

func square(x0, y0, x1, y1 float64) [][2]float64 {
	return [][2]float64{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}
}

// fakeOGC is a natural resources bureau publishing OGC API – Features. Like
// real servers, its bbox filter compares bounding boxes only.
type fakeOGC struct {
	parcels []parcel
	other   string
	hits    atomic.Int64
	conf    []string
}

func newFakeOGC() *fakeOGC {
	f := &fakeOGC{conf: []string{ConfCore, "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"}}
	f.parcels = []parcel{
		{"130102001001GB00001", "91130100MA0000000A", square(114.50, 38.00, 114.51, 38.01)},
		// An L: the upper-right quarter of its bounding box is not part of it.
		{"130102001001GB00002", "91130100MA0000000A", [][2]float64{{114.52, 38.00}, {114.54, 38.00}, {114.54, 38.01}, {114.53, 38.01}, {114.53, 38.02}, {114.52, 38.02}, {114.52, 38.00}}},
		{"130102001001GB00003", "130102199001011234", square(114.60, 38.10, 114.61, 38.11)},
	}
	for i := range 5 {
		x := 114.70 + float64(i)*0.01
		f.parcels = append(f.parcels, parcel{fmt.Sprintf("130104002003GB%05d", 10+i), "91130104MA0000000C", square(x, 38.0, x+0.005, 38.005)})
	}
	return f
}

func (p parcel) feature() map[string]any {
	coords := make([]any, len(p.ring))
	for i, c := range p.ring {
		coords[i] = []any{c[0], c[1]}
	}
	return map[string]any{
		"type": "Feature",
		"id":   p.id,
		"geometry": map[string]any{
			"type":        "Polygon",
			"coordinates": []any{coords},
		},
		"properties": map[string]any{
			"zddm":       p.id,
			"xzqdm":      p.id[:6],
			"zl":         "石家庄市长安区中山东路" + p.id[len(p.id)-2:] + "号",
			"tdyt":       "商业服务业用地",
			"zdmj":       "1234.5",
			"qllx":       "国有建设用地使用权",
			"qlr":        "石家庄某公司",
			"qlrzjh":     p.holder,
			"updated_at": "2024-06-01T00:00:00Z",
		},
	}
}

func (p parcel) bounds() (x0, y0, x1, y1 float64) {
	x0, y0, x1, y1 = 999, 999, -999, -999
	for _, c := range p.ring {
		x0, y0, x1, y1 = min(x0, c[0]), min(y0, c[1]), max(x1, c[0]), max(y1, c[1])
	}
	return
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/geo+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeOGC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	q := r.URL.Query()
	switch p := r.URL.Path; {
	case p == "/ogc/conformance":
		writeJSON(w, http.StatusOK, map[string]any{"conformsTo": f.conf})
	case p == "/ogc/collections/parcels/items":
		limit, _ := strconv.Atoi(q.Get("limit"))
		offset, _ := strconv.Atoi(q.Get("offset"))
		if limit <= 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"code": "InvalidParameterValue"})
			return
		}
		var match []parcel
		for _, pc := range f.parcels {
			if h := q.Get("qlrzjh"); h != "" && pc.holder != h {
				continue
			}
			if bb := q.Get("bbox"); bb != "" {
				var b [4]float64
				for i, s := range strings.Split(bb, ",") {
					b[i], _ = strconv.ParseFloat(s, 64)
				}
				x0, y0, x1, y1 := pc.bounds()
				if x1 < b[0] || x0 > b[2] || y1 < b[1] || y0 > b[3] {
					continue
				}
			}
			match = append(match, pc)
		}
		end := min(offset+limit, len(match))
		feats := []any{}
		for _, pc := range match[min(offset, len(match)):end] {
			feats = append(feats, pc.feature())
		}
		links := []any{map[string]any{"rel": "self", "href": r.URL.String(), "type": "application/geo+json"}}
		if end < len(match) {
			nq := r.URL.Query()
			nq.Set("offset", strconv.Itoa(end))
			href := "/ogc/collections/parcels/items?" + nq.Encode()
			if q.Get("qlrzjh") == "EVIL" || strings.HasPrefix(q.Get("qlrzjh"), "91130104") && f.other != "" && q.Get("steal") != "" {
				href = f.other + href
			}
			links = append(links,
				map[string]any{"rel": "next", "href": href + "&f=html", "type": "text/html"},
				map[string]any{"rel": "next", "href": href, "type": "application/geo+json"})
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"type": "FeatureCollection", "features": feats, "links": links,
			"numberMatched": len(match), "numberReturned": len(feats),
		})
	case strings.HasPrefix(p, "/ogc/collections/parcels/items/"):
		id := strings.TrimPrefix(p, "/ogc/collections/parcels/items/")
		for _, pc := range f.parcels {
			if pc.id == id {
				writeJSON(w, http.StatusOK, pc.feature())
				return
			}
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"code": "NotFound"})
	case strings.HasPrefix(p, "/ogc/collections/broken/"):
		writeJSON(w, http.StatusInternalServerError, map[string]any{"code": "ServerError"})
	default:
		http.NotFound(w, r)
	}
}

func settings(base string, extra string) string {
	return fmt.Sprintf(`
department: {id: resources}
base_url: %s/ogc
limit: 2
max_pages: 5
datasets:
  resources.parcels:
    collection: parcels
    id_field: parcel_id
    updated_at: updated_at
    properties:
      parcel_id: zddm
      region_code: xzqdm
      address: zl
      land_use: tdyt
      area_sqm: zdmj
      rights_type: qllx
      holder_name: qlr
      holder_id: qlrzjh
    filters: {holder_id: qlrzjh}
%s`, base, extra)
}

func start(t *testing.T) (*fakeOGC, *httptest.Server, *fakeOGC) {
	t.Helper()
	f := newFakeOGC()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	o := newFakeOGC()
	osrv := httptest.NewServer(o)
	t.Cleanup(osrv.Close)
	f.other = osrv.URL
	return f, srv, o
}

func mustNew(t *testing.T, s string) *Connector {
	t.Helper()
	c, err := New(t.Context(), []byte(s))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func fetch(t *testing.T, c *Connector, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if req.Dataset == "" {
		req.Dataset = "resources.parcels"
	}
	return c.Fetch(ctx, req)
}

func ids(resp *v1.FetchResponse) []string {
	var out []string
	for _, r := range resp.GetRecords() {
		out = append(out, r.Id)
	}
	slices.Sort(out)
	return out
}

func geometry(t *testing.T, js string) *structpb.Struct {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFetchByID(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, settings(srv.URL, ""))
	resp, err := fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"parcel_id": "130102001001GB00001"}})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	r := resp.Records[0]
	f := r.Fields.AsMap()
	if f["area_sqm"] != 1234.5 || f["holder_id"] != "91130100MA0000000A" || f["region_code"] != "130102" {
		t.Errorf("fields = %v", f)
	}
	g, _ := f["geometry"].(map[string]any)
	if g["type"] != "Polygon" {
		t.Errorf("geometry = %v, want a GeoJSON Polygon object", f["geometry"])
	}
	if r.UpdatedAt.AsTime().Year() != 2024 {
		t.Errorf("updated_at = %v", r.UpdatedAt)
	}
	_, err = fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"parcel_id": "130102001001GB99999"}})
	testutil.WantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	_, err = fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"address": "x"}})
	testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownField)
}

func TestAreaQueriesAreRefined(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, settings(srv.URL, ""))
	tests := []struct {
		name string
		req  *v1.FetchRequest
		want []string
	}{
		{"box in the notch of the L", &v1.FetchRequest{Bbox: &v1.BBox{MinLon: 114.532, MinLat: 38.012, MaxLon: 114.538, MaxLat: 38.018}}, nil},
		{"box over two parcels", &v1.FetchRequest{Bbox: &v1.BBox{MinLon: 114.505, MinLat: 38.005, MaxLon: 114.525, MaxLat: 38.015}},
			[]string{"130102001001GB00001", "130102001001GB00002"}},
		{"box over five parcels, three pages", &v1.FetchRequest{Bbox: &v1.BBox{MinLon: 114.69, MinLat: 37.99, MaxLon: 114.80, MaxLat: 38.01}},
			[]string{"130104002003GB00010", "130104002003GB00011", "130104002003GB00012", "130104002003GB00013", "130104002003GB00014"}},
		{"point inside", &v1.FetchRequest{Geometry: geometry(t, `{"type":"Point","coordinates":[114.605,38.105]}`)}, []string{"130102001001GB00003"}},
		{"point in the notch", &v1.FetchRequest{Geometry: geometry(t, `{"type":"Point","coordinates":[114.535,38.015]}`)}, nil},
		{"polygon crossing the L's arm", &v1.FetchRequest{Geometry: geometry(t, `{"type":"Polygon","coordinates":[[[114.525,38.015],[114.535,38.025],[114.545,38.015],[114.535,38.0155],[114.525,38.015]]]}`)},
			[]string{"130102001001GB00002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := fetch(t, c, tt.req)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if got := ids(resp); !slices.Equal(got, tt.want) {
				t.Errorf("ids = %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []*v1.FetchRequest{
		{Bbox: &v1.BBox{MinLon: 115, MinLat: 38, MaxLon: 114, MaxLat: 39}},
		{Bbox: &v1.BBox{MinLon: 114, MinLat: 38, MaxLon: 200, MaxLat: 39}},
		{Geometry: geometry(t, `{"type":"Circle","coordinates":[114,38]}`)},
		{Bbox: &v1.BBox{MinLon: 114, MinLat: 38, MaxLon: 115, MaxLat: 39}, Geometry: geometry(t, `{"type":"Point","coordinates":[114.5,38.5]}`)},
	} {
		_, err := fetch(t, c, bad)
		testutil.WantCode(t, err, codes.InvalidArgument, "")
	}
}

func TestLookupByProperty(t *testing.T) {
	_, srv, other := start(t)
	c := mustNew(t, settings(srv.URL, ""))
	resp, err := fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"holder_id": "91130104MA0000000C"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 5 {
		t.Errorf("got %d parcels, want 5 across three pages", len(resp.Records))
	}
	resp, err = fetch(t, c, &v1.FetchRequest{Filter: map[string]string{"holder_id": "91130100MA0000000A"}})
	if err != nil || len(resp.Records) != 2 {
		t.Fatalf("filter = %v, %v", resp, err)
	}
	_, err = fetch(t, c, &v1.FetchRequest{Filter: map[string]string{"land_use": "x"}})
	testutil.WantCode(t, err, codes.InvalidArgument, "")
	_, err = fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"holder_id": "NOBODY"}})
	testutil.WantCode(t, err, codes.NotFound, "")

	t.Run("page cap", func(t *testing.T) {
		c := mustNew(t, strings.Replace(settings(srv.URL, ""), "max_pages: 5", "max_pages: 2", 1))
		_, err := fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"holder_id": "91130104MA0000000C"}})
		testutil.WantCode(t, err, codes.ResourceExhausted, apierr.ReasonResponseTooLarge)
	})
	t.Run("next link to another host", func(t *testing.T) {
		srvf := srv.Config.Handler.(*fakeOGC)
		srvf.parcels = append(srvf.parcels, parcel{"E1", "EVIL", square(1, 1, 2, 2)}, parcel{"E2", "EVIL", square(1, 1, 2, 2)}, parcel{"E3", "EVIL", square(1, 1, 2, 2)})
		_, err := fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"holder_id": "EVIL"}})
		testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
		if other.hits.Load() != 0 {
			t.Error("followed a next link to another host")
		}
	})
}

func TestHealth(t *testing.T) {
	f, srv, _ := start(t)
	c := mustNew(t, settings(srv.URL, ""))
	if err := c.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
	f.conf = []string{"http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core"}
	testutil.WantCode(t, c.Health(t.Context()), codes.Unavailable, "")
	srv.Close()
	testutil.WantCode(t, c.Health(t.Context()), codes.Unavailable, "")
}

func TestDepartmentFailures(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, strings.Replace(settings(srv.URL, ""), "collection: parcels", "collection: broken", 1))
	_, err := fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"parcel_id": "x"}})
	testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)

	c = mustNew(t, settings(srv.URL, "max_response_bytes: 200\n"))
	_, err = fetch(t, c, &v1.FetchRequest{Keys: map[string]string{"parcel_id": "130102001001GB00001"}})
	testutil.WantCode(t, err, codes.ResourceExhausted, apierr.ReasonResponseTooLarge)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = mustNew(t, settings(srv.URL, "")).Fetch(ctx, &v1.FetchRequest{Dataset: "resources.parcels", Keys: map[string]string{"parcel_id": "x"}})
	testutil.WantCode(t, err, codes.Canceled, "")
}

func TestDescribe(t *testing.T) {
	_, srv, _ := start(t)
	d, err := mustNew(t, settings(srv.URL, "")).Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d.DepartmentName != "自然资源和规划局" || !slices.Contains(d.Capabilities, "spatial") || len(d.Datasets) != 1 || d.Datasets[0].Freshness.AsDuration() != 24*time.Hour {
		t.Errorf("descriptor = %v", d)
	}
}

func TestParseErrors(t *testing.T) {
	base := settings("http://127.0.0.1:1", "")
	tests := []struct{ from, to, want string }{
		{"id_field: parcel_id", "id_field: holder_id", `datasets["resources.parcels"].id_field: "holder_id" must be the single key field`},
		{"holder_id: qlrzjh}", "geometry: shape}", `datasets["resources.parcels"].filters.geometry`},
		{"      area_sqm: zdmj", "      area: zdmj", `datasets["resources.parcels"].properties: "area" is not a field`},
		{"collection: parcels", "collection: a/b", `datasets["resources.parcels"].collection`},
		{"limit: 2", "limt: 2", "field limt not found"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			in := strings.Replace(base, tt.from, tt.to, 1)
			if in == base {
				t.Fatalf("replacement %q did not apply", tt.from)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConformance(t *testing.T) {
	_, srv, _ := start(t)
	c := mustNew(t, settings(srv.URL, ""))
	opts := connectortest.Options{Dataset: "resources.parcels", Key: map[string]string{"parcel_id": "130102001001GB00003"}}
	t.Run("direct", func(t *testing.T) { connectortest.Run(t, c, opts) })
	t.Run("over gRPC", func(t *testing.T) { connectortest.Run(t, connectortest.InProcess(t, c), opts) })
}
