package simulate

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newResources(t *testing.T) (*Resources, string) {
	t.Helper()
	res := NewResources(testData, Faults{})
	srv := httptest.NewServer(res)
	t.Cleanup(srv.Close)
	return res, srv.URL
}

func linkOf(links []Link, rel string) (Link, bool) {
	i := slices.IndexFunc(links, func(l Link) bool { return l.Rel == rel })
	if i < 0 {
		return Link{}, false
	}
	return links[i], true
}

func TestResourcesLandingAndCollections(t *testing.T) {
	_, base := newResources(t)
	var landing struct {
		Title string `json:"title"`
		Links []Link `json:"links"`
	}
	if code, h := getJSON(t, base+"/", &landing); code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("landing: %d", code)
	}
	for _, rel := range []string{"self", "service-desc", "conformance", "data"} {
		l, ok := linkOf(landing.Links, rel)
		if !ok || !strings.HasPrefix(l.Href, base) {
			t.Fatalf("landing page lacks a %s link: %+v", rel, landing.Links)
		}
		if code, _ := getJSON(t, l.Href, nil); code != 200 {
			t.Fatalf("%s link %s: %d", rel, l.Href, code)
		}
	}
	var conf struct {
		ConformsTo []string `json:"conformsTo"`
	}
	getJSON(t, base+"/conformance", &conf)
	for _, c := range []string{"core", "geojson"} {
		if !slices.Contains(conf.ConformsTo, "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"+c) {
			t.Errorf("conformance lacks %s: %v", c, conf.ConformsTo)
		}
	}
	var cols struct {
		Collections []struct {
			ID     string `json:"id"`
			Links  []Link `json:"links"`
			Extent struct {
				Spatial struct {
					BBox [][4]float64 `json:"bbox"`
				} `json:"spatial"`
			} `json:"extent"`
		} `json:"collections"`
	}
	getJSON(t, base+"/collections", &cols)
	var ids []string
	for _, c := range cols.Collections {
		ids = append(ids, c.ID)
		items, ok := linkOf(c.Links, "items")
		if !ok || items.Type != "application/geo+json" || items.Href != base+"/collections/"+c.ID+"/items" {
			t.Errorf("collection %s: items link %+v", c.ID, items)
		}
		if b := c.Extent.Spatial.BBox; len(b) != 1 || b[0][0] < 114 || b[0][2] > 119 {
			t.Errorf("collection %s: extent %v", c.ID, b)
		}
	}
	if !slices.Equal(ids, []string{"parcels", "land_use_certificates"}) {
		t.Fatalf("collections %v", ids)
	}
	var one map[string]any
	if code, _ := getJSON(t, base+"/collections/land_use_certificates", &one); code != 200 || one["id"] != "land_use_certificates" || one["extent"].(map[string]any)["temporal"] == nil {
		t.Fatalf("collection: %d %v", code, one)
	}
	var api map[string]any
	getJSON(t, base+"/api", &api)
	if paths, _ := api["paths"].(map[string]any); api["openapi"] != "3.0.3" || paths["/collections/parcels/items"] == nil {
		t.Fatalf("OpenAPI document: %v", api)
	}
}

// walk follows next links from u and returns every feature; it checks the
// paging links and counts on the way.
func walk(t *testing.T, u string) []Feature {
	t.Helper()
	var all []Feature
	matched := -1
	for range 500 {
		var fc FeatureCollection
		code, h := getJSON(t, u, &fc)
		if code != 200 || h.Get("Content-Type") != "application/geo+json" || fc.Type != "FeatureCollection" {
			t.Fatalf("GET %s: %d %s", u, code, h.Get("Content-Type"))
		}
		if matched >= 0 && fc.NumberMatched != matched {
			t.Fatalf("numberMatched changed from %d to %d", matched, fc.NumberMatched)
		}
		matched = fc.NumberMatched
		if fc.NumberReturned != len(fc.Features) {
			t.Fatalf("numberReturned %d, %d features", fc.NumberReturned, len(fc.Features))
		}
		self, ok := linkOf(fc.Links, "self")
		if !ok || self.Type != "application/geo+json" {
			t.Fatalf("no self link: %+v", fc.Links)
		}
		su, _ := url.Parse(self.Href)
		uu, _ := url.Parse(u)
		for k, v := range uu.Query() {
			if su.Query().Get(k) != v[0] {
				t.Fatalf("self link %s lost parameter %s=%s", self.Href, k, v[0])
			}
		}
		off, _ := strconv.Atoi(su.Query().Get("offset"))
		_, hasPrev := linkOf(fc.Links, "prev")
		if hasPrev != (off > 0) {
			t.Fatalf("offset %d: prev link present = %v", off, hasPrev)
		}
		all = append(all, fc.Features...)
		next, ok := linkOf(fc.Links, "next")
		if !ok {
			if len(all) != matched {
				t.Fatalf("walked %d features, numberMatched %d", len(all), matched)
			}
			return all
		}
		u = next.Href
	}
	t.Fatal("too many pages")
	return nil
}

func TestResourcesItemsPaging(t *testing.T) {
	_, base := newResources(t)
	all := walk(t, base+"/collections/parcels/items?limit=1000")
	if len(all) != len(testData.Parcels) {
		t.Fatalf("%d parcels, want %d", len(all), len(testData.Parcels))
	}
	seen := map[string]bool{}
	for i, f := range all {
		if seen[f.ID] || f.ID != testData.Parcels[i].ParcelID || f.Properties["parcel_id"] != f.ID || f.Properties["geometry"] != nil {
			t.Fatalf("feature %d: %s %v", i, f.ID, f.Properties)
		}
		seen[f.ID] = true
	}
	// Small pages with a filter: prev links and the default limit.
	e := testData.SampleEnterprise()
	want := testData.CertificatesOf(e.CreditCode)
	got := walk(t, base+"/collections/land_use_certificates/items?limit=1&holder_id="+e.CreditCode)
	if len(got) != len(want) {
		t.Fatalf("certificates of %s: %d, want %d", e.CreditCode, len(got), len(want))
	}
	for i, f := range got {
		if f.ID != want[i].CertificateNo || f.Geometry == nil {
			t.Fatalf("certificate %d: %s", i, f.ID)
		}
	}
	var fc FeatureCollection
	getJSON(t, base+"/collections/parcels/items", &fc)
	if fc.NumberReturned != DefaultLimit || fc.NumberMatched != len(testData.Parcels) {
		t.Fatalf("default page: %d of %d", fc.NumberReturned, fc.NumberMatched)
	}
	getJSON(t, base+"/collections/parcels/items?limit=5000", &fc)
	if fc.NumberReturned != MaxLimit {
		t.Fatalf("limit 5000 returned %d, want the maximum %d", fc.NumberReturned, MaxLimit)
	}
	getJSON(t, base+"/collections/parcels/items?offset=100000", &fc)
	if fc.NumberReturned != 0 || fc.Features == nil {
		t.Fatalf("offset past the end: %+v", fc)
	}
	prev, _ := linkOf(fc.Links, "prev")
	if !strings.Contains(prev.Href, "offset=99990") {
		t.Fatalf("prev link %s", prev.Href)
	}
	// Datetime on certificates.
	var y2020 FeatureCollection
	getJSON(t, base+"/collections/land_use_certificates/items?limit=1000&datetime=2020-01-01/2020-12-31T23:59:59Z", &y2020)
	n := 0
	for _, c := range testData.Certificates {
		if strings.HasPrefix(c.IssuedOn, "2020-") {
			n++
		}
	}
	if y2020.NumberMatched != n || n == 0 {
		t.Fatalf("certificates issued in 2020: %d, want %d", y2020.NumberMatched, n)
	}
}

func TestResourcesBBox(t *testing.T) {
	_, base := newResources(t)
	for _, b := range []BBox{
		{114.50, 38.00, 114.52, 38.02},
		{114.3501, 37.9501, 114.36, 37.96},
		{114.6, 38.1, 114.7, 38.2},
		{118.0, 39.5, 118.3, 39.7}, // Tangshan
		{100, 20, 101, 21},         // nothing
	} {
		q := fmt.Sprintf("bbox=%v,%v,%v,%v&limit=1000", b.MinLon, b.MinLat, b.MaxLon, b.MaxLat)
		got := walk(t, base+"/collections/parcels/items?"+q)
		ids := map[string]bool{}
		for _, f := range got {
			ids[f.ID] = true
			if !f.Geometry.IntersectsBBox(b) {
				t.Errorf("bbox %v: %s does not intersect", b, f.ID)
			}
		}
		for _, p := range testData.Parcels {
			env := p.Geometry.Bounds()
			inside := b.Contains(env.MinLon, env.MinLat) && b.Contains(env.MaxLon, env.MaxLat)
			if inside && !ids[p.ParcelID] {
				t.Errorf("bbox %v: parcel %s lies inside but was not returned", b, p.ParcelID)
			}
			if !b.Intersects(env) && ids[p.ParcelID] {
				t.Errorf("bbox %v: parcel %s lies outside but was returned", b, p.ParcelID)
			}
		}
		if b.MinLon == 100 && len(got) != 0 || b.MinLon != 100 && len(got) == 0 {
			t.Errorf("bbox %v: %d parcels", b, len(got))
		}
	}
	// A 3D box and a filter combined.
	p := testData.Parcels[42]
	env := p.Geometry.Bounds()
	var fc FeatureCollection
	getJSON(t, fmt.Sprintf("%s/collections/parcels/items?bbox=%v,%v,0,%v,%v,100&holder_id=%s", base, env.MinLon, env.MinLat, env.MaxLon, env.MaxLat, p.HolderID), &fc)
	if len(fc.Features) != 1 || fc.Features[0].ID != p.ParcelID {
		t.Fatalf("3D bbox and holder filter: %+v", fc.Features)
	}
}

func TestPolygonIntersectsBBox(t *testing.T) {
	// A diamond centred on (1,1) with corners at distance 1.
	diamond := Polygon{Type: "Polygon", Coordinates: [][][2]float64{{{1, 0}, {2, 1}, {1, 2}, {0, 1}, {1, 0}}}}
	for _, tc := range []struct {
		b    BBox
		want bool
	}{
		{BBox{0.9, 0.9, 1.1, 1.1}, true},    // box inside polygon
		{BBox{-1, -1, 3, 3}, true},          // polygon inside box
		{BBox{0, 0, 0.4, 0.4}, false},       // envelope overlaps, shapes do not
		{BBox{0.4, 0.4, 0.6, 0.6}, true},    // edge crosses box, no vertex inside
		{BBox{1.5, -1, 1.6, 3}, true},       // box crosses without corners inside
		{BBox{2.0, 1.0, 3.0, 2.0}, true},    // touches at a vertex
		{BBox{5, 5, 6, 6}, false},           // far away
		{BBox{1.55, 1.55, 1.9, 1.9}, false}, // in the envelope's corner
	} {
		if got := diamond.IntersectsBBox(tc.b); got != tc.want {
			t.Errorf("IntersectsBBox(%v) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

func TestResourcesItemAndErrors(t *testing.T) {
	_, base := newResources(t)
	c := testData.Certificates[3]
	var f Feature
	code, h := getJSON(t, base+"/collections/land_use_certificates/items/"+url.PathEscape(c.CertificateNo), &f)
	if code != 200 || h.Get("Content-Type") != "application/geo+json" || f.ID != c.CertificateNo || f.Properties["holder_id"] != c.HolderID || f.Geometry == nil {
		t.Fatalf("certificate %s: %d %+v", c.CertificateNo, code, f)
	}
	if self, ok := linkOf(f.Links, "self"); !ok || self.Href != base+"/collections/land_use_certificates/items/"+url.PathEscape(c.CertificateNo) {
		t.Fatalf("self link %+v", f.Links)
	}
	p := testData.Parcels[9]
	getJSON(t, base+"/collections/parcels/items/"+p.ParcelID, &f)
	if f.ID != p.ParcelID || f.Properties["area_sqm"] != p.AreaSqm || f.Geometry.Coordinates[0][2] != p.Geometry.Coordinates[0][2] {
		t.Fatalf("parcel %s: %+v", p.ParcelID, f)
	}
	for _, tc := range []struct {
		path   string
		status int
		code   string
	}{
		{"/collections/roads", 404, "NotFound"},
		{"/collections/roads/items", 404, "NotFound"},
		{"/collections/parcels/items/130102000000GB99999", 404, "NotFound"},
		{"/nowhere", 404, "NotFound"},
		{"/collections/parcels/items?bbox=1,2,3", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?bbox=1,5,3,2", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?bbox=a,b,c,d", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?limit=0", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?offset=-1", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?colour=red", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?certificate_no=1", 400, "InvalidParameterValue"},
		{"/collections/parcels/items?f=html", 400, "InvalidParameterValue"},
		{"/collections/land_use_certificates/items?datetime=2021-13-01", 400, "InvalidParameterValue"},
		{"/collections/land_use_certificates/items?datetime=../..", 400, "InvalidParameterValue"},
		{"/collections/land_use_certificates/items?datetime=2022-01-01/2021-01-01", 400, "InvalidParameterValue"},
	} {
		var e struct{ Code, Description string }
		if code, _ := getJSON(t, base+tc.path, &e); code != tc.status || e.Code != tc.code || e.Description == "" {
			t.Errorf("GET %s = %d %+v, want %d %s", tc.path, code, e, tc.status, tc.code)
		}
	}
}

func TestResourcesReadableByOGRInfo(t *testing.T) {
	bin, err := exec.LookPath("ogrinfo")
	if err != nil {
		t.Skip("ogrinfo (GDAL) is not installed")
	}
	res, base := newResources(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ogrinfo %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("-ro", "-so", "OAPIF:"+base, "parcels")
	if !strings.Contains(out, fmt.Sprintf("Feature Count: %d", len(testData.Parcels))) || !strings.Contains(out, "Geometry: Polygon") || !strings.Contains(out, "holder_id: String") {
		t.Fatalf("ogrinfo summary:\n%s", out)
	}
	e := testData.SampleEnterprise()
	out = run("-ro", "-q", "OAPIF:"+base, "land_use_certificates", "-where", "holder_id='"+e.CreditCode+"'")
	if n := strings.Count(out, "OGRFeature(land_use_certificates)"); n != len(testData.CertificatesOf(e.CreditCode)) {
		t.Fatalf("ogrinfo read %d certificates of %s, want %d:\n%s", n, e.CreditCode, len(testData.CertificatesOf(e.CreditCode)), out)
	}
	for _, c := range testData.CertificatesOf(e.CreditCode) {
		if !strings.Contains(out, c.CertificateNo) {
			t.Errorf("ogrinfo output lacks %s", c.CertificateNo)
		}
	}
	if res.Requests() == 0 {
		t.Fatal("ogrinfo made no request")
	}
}
