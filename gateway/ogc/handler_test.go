package ogc

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
)

func TestLandingAndConformance(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/ogc", "/ogc/"} {
		r := e.get(t, "", path)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != MediaJSON {
			t.Fatalf("GET %s: %d %s: %s", path, r.status, r.header.Get("Content-Type"), r.body)
		}
		var doc landing
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		for _, rel := range []string{"self", "conformance", "data", "service-desc"} {
			if !strings.HasPrefix(linkOf(doc.Links, rel), e.srv.URL+"/ogc") {
				t.Errorf("GET %s: link %s = %q", path, rel, linkOf(doc.Links, rel))
			}
		}
		if got := linkOf(doc.Links, "data"); got != e.srv.URL+"/ogc/collections" {
			t.Errorf("data link = %q", got)
		}
	}
	r := e.get(t, "", "/ogc/conformance")
	var c conformance
	if err := json.Unmarshal(r.body, &c); err != nil || r.status != http.StatusOK {
		t.Fatalf("conformance: %d %s", r.status, r.body)
	}
	for _, want := range []string{ConfCore, ConfGeoJSON} {
		if !slices.Contains(c.ConformsTo, want) {
			t.Errorf("conformsTo %v lacks %s", c.ConformsTo, want)
		}
	}
}

func TestCollections(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		token string
		want  []string
	}{
		{tokApproval, []string{"resources.parcels"}},
		{tokPlanning, []string{"resources.parcels"}},
		{tokStranger, nil},
	}
	for _, tc := range cases {
		t.Run(tc.token, func(t *testing.T) {
			r := e.get(t, tc.token, "/ogc/collections")
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var doc collections
			if err := json.Unmarshal(r.body, &doc); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range doc.Collections {
				ids = append(ids, c.ID)
				if linkOf(c.Links, "items") != e.srv.URL+"/ogc/collections/"+c.ID+"/items" {
					t.Errorf("items link of %s = %q", c.ID, linkOf(c.Links, "items"))
				}
				if c.ItemType != "feature" || !slices.Contains(c.CRS, CRS84) {
					t.Errorf("collection %+v", c)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("collections = %v, want %v", ids, tc.want)
			}
		})
	}
	r := e.get(t, tokApproval, "/ogc/collections/resources.parcels")
	var c Collection
	if err := json.Unmarshal(r.body, &c); err != nil || r.status != http.StatusOK || c.ID != "resources.parcels" {
		t.Fatalf("collection: %d %s", r.status, r.body)
	}
	if linkOf(c.Links, "self") != e.srv.URL+"/ogc/collections/resources.parcels" {
		t.Errorf("self link = %q", linkOf(c.Links, "self"))
	}
	// A purpose given as a parameter is carried on in links.
	r = e.get(t, tokApproval, "/ogc/collections?purpose=approval")
	if !strings.Contains(string(r.body), "items?purpose=approval") {
		t.Errorf("purpose not carried into links: %s", r.body)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	items := "/ogc/collections/resources.parcels/items"
	box := "bbox=" + boxParam(cityBox)
	cases := []struct {
		name   string
		token  string
		path   string
		status int
		code   string
	}{
		{"no token", "", items + "?" + box, 401, "UNAUTHENTICATED"},
		{"no token collections", "", "/ogc/collections", 401, "UNAUTHENTICATED"},
		{"bad token", "not-a-token", items + "?" + box, 401, "UNAUTHENTICATED"},
		{"no grant items", tokStranger, items + "?" + box, 403, ""},
		{"no grant collection", tokStranger, "/ogc/collections/resources.parcels", 403, ""},
		{"no grant feature", tokStranger, items + "/130102001001GB00001", 403, ""},
		{"purpose not granted", tokApproval, items + "?" + box + "&purpose=marketing", 403, ""},
		{"unknown collection", tokApproval, "/ogc/collections/resources.nope/items", 404, "NOT_FOUND"},
		{"not spatial", tokApproval, "/ogc/collections/market.business_licences", 404, "NOT_FOUND"},
		{"unknown path", tokApproval, "/ogc/collections/resources.parcels/queryables", 404, "NOT_FOUND"},
		{"unknown feature", tokApproval, items + "/130102999999GB99999", 404, "NOT_FOUND"},
		{"bbox three numbers", tokApproval, items + "?bbox=1,2,3", 400, "INVALID_ARGUMENT"},
		{"bbox not numbers", tokApproval, items + "?bbox=a,b,c,d", 400, "INVALID_ARGUMENT"},
		{"bbox reversed", tokApproval, items + "?bbox=114.5,38.1,114.4,38.0", 400, "INVALID_ARGUMENT"},
		{"bbox out of range", tokApproval, items + "?bbox=114,38,200,39", 400, "INVALID_ARGUMENT"},
		{"bbox NaN", tokApproval, items + "?bbox=NaN,38,114,39", 400, "INVALID_ARGUMENT"},
		{"limit zero", tokApproval, items + "?limit=0&" + box, 400, "INVALID_ARGUMENT"},
		{"limit negative", tokApproval, items + "?limit=-3&" + box, 400, "INVALID_ARGUMENT"},
		{"limit text", tokApproval, items + "?limit=ten&" + box, 400, "INVALID_ARGUMENT"},
		{"unknown parameter", tokApproval, items + "?" + box + "&colour=red", 400, "INVALID_ARGUMENT"},
		{"datetime unsupported", tokApproval, items + "?" + box + "&datetime=2024-01-01", 400, "INVALID_ARGUMENT"},
		{"not a lookup field", tokApproval, items + "?address=x", 400, "INVALID_ARGUMENT"},
		{"bbox and filter", tokApproval, items + "?" + box + "&holder_id=91130100MA0000000A", 400, "INVALID_ARGUMENT"},
		{"bad holder id", tokApproval, items + "?holder_id=12345", 400, "INVALID_IDENTIFIER"},
		{"repeated parameter", tokApproval, items + "?" + box + "&" + box, 400, "INVALID_ARGUMENT"},
		{"bad page token", tokApproval, items + "?" + box + "&page=%21%21", 400, "INVALID_ARGUMENT"},
		{"bad format", tokApproval, items + "?" + box + "&f=html", 400, "INVALID_ARGUMENT"},
		{"empty purpose", tokApproval, items + "?" + box + "&purpose=", 400, "INVALID_ARGUMENT"},
		// The whole collection is more than the demo connector collects
		// for one request (max_records): the caller must narrow it.
		{"whole collection too large", tokApproval, items, 400, "RESPONSE_TOO_LARGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(t, tc.token, tc.path)
			ex := wantException(t, r, tc.status)
			if tc.code != "" && ex.Code != tc.code {
				t.Errorf("code = %q, want %q (%s)", ex.Code, tc.code, ex.Description)
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("method not allowed", func(t *testing.T) {
		resp, err := e.srv.Client().Post(e.srv.URL+items, MediaJSON, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Fatalf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})

	t.Run("department down", func(t *testing.T) {
		e.resources.SetDown(true)
		defer e.resources.SetDown(false)
		// A box not asked for before, so nothing is cached.
		r := e.get(t, tokApproval, items+"?bbox=114.36,37.96,114.37,37.97")
		ex := wantException(t, r, http.StatusServiceUnavailable)
		if !strings.Contains(ex.Description, "resources") {
			t.Errorf("description %q does not name the department", ex.Description)
		}
	})
}

// TestWalkPages follows the next links of a bbox query to the end and
// compares the features with an independent count of the simulated data;
// each page's prev link must give the page before it.
func TestWalkPages(t *testing.T) {
	e := newEnv(t)
	want := expected(e.data, cityBox, "")
	if len(want) < 30 {
		t.Fatalf("test box holds only %d parcels; choose a larger one", len(want))
	}
	for _, limit := range []int{7, 10, 25} {
		t.Run("limit="+strconv.Itoa(limit), func(t *testing.T) {
			seen := map[string]bool{}
			var pages [][]string
			var selfs []string
			next := itemsURL(url.Values{"bbox": {boxParam(cityBox)}, "limit": {strconv.Itoa(limit)}})
			for n := 0; next != ""; n++ {
				if n > 2*len(want)/limit+5 {
					t.Fatalf("still a next link after %d pages", n)
				}
				r := e.get(t, tokApproval, next)
				if r.status != http.StatusOK || r.header.Get("Content-Type") != MediaGeoJSON {
					t.Fatalf("page %d: %d %s: %s", n, r.status, r.header.Get("Content-Type"), r.body)
				}
				if !strings.HasPrefix(r.header.Get(ReceiptHeader), "test-node/") {
					t.Errorf("page %d: receipt header %q", n, r.header.Get(ReceiptHeader))
				}
				fc, feats := validateFC(t, r.body, false)
				if len(feats) > limit {
					t.Fatalf("page %d: %d features, limit %d", n, len(feats), limit)
				}
				var ids []string
				for _, f := range feats {
					id := f.ID.(string)
					if seen[id] {
						t.Fatalf("page %d: feature %s seen before", n, id)
					}
					seen[id] = true
					ids = append(ids, id)
					if f.Properties["parcel_id"] != id {
						t.Errorf("feature %s has parcel_id %v", id, f.Properties["parcel_id"])
					}
				}
				pages = append(pages, ids)
				selfs = append(selfs, linkOf(fc.Links, "self"))
				if n == 0 && linkOf(fc.Links, "prev") != "" {
					t.Errorf("first page has a prev link")
				}
				if n > 0 {
					prev := linkOf(fc.Links, "prev")
					if prev != selfs[n-1] {
						t.Errorf("page %d: prev = %s, want previous self %s", n, prev, selfs[n-1])
					}
				}
				next = linkOf(fc.Links, "next")
				if next != "" && len(feats) < limit {
					t.Errorf("page %d: short page (%d < %d) with a next link", n, len(feats), limit)
				}
			}
			for id := range want {
				if !seen[id] {
					t.Errorf("parcel %s intersects the box but was never returned", id)
				}
			}
			for id := range seen {
				if !want[id] {
					t.Errorf("parcel %s returned but does not intersect the box", id)
				}
			}
			// Going back: each prev link gives exactly the earlier page.
			if len(pages) > 2 {
				r := e.get(t, tokApproval, selfs[2])
				fc, _ := validateFC(t, r.body, false)
				r = e.get(t, tokApproval, linkOf(fc.Links, "prev"))
				_, feats := validateFC(t, r.body, false)
				var ids []string
				for _, f := range feats {
					ids = append(ids, f.ID.(string))
				}
				if !slices.Equal(ids, pages[1]) {
					t.Errorf("prev of page 2 = %v, want page 1 %v", ids, pages[1])
				}
			}
		})
	}
}

func TestLimit(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		limit     string
		wantCount int
		wantLimit string // limit in the next link
	}{
		{"", DefaultLimit, ""},
		{"3", 3, "3"},
		{"1000", 100, "1000"}, // the pipeline's MaxPage clamps the page
		{"5000", 100, "1000"}, // clamped to MaxLimit, then MaxPage
	}
	for _, tc := range cases {
		t.Run("limit="+tc.limit, func(t *testing.T) {
			q := url.Values{"bbox": {"114.40,38.00,114.52,38.05"}}
			if tc.limit != "" {
				q.Set("limit", tc.limit)
			}
			r := e.get(t, tokApproval, itemsURL(q))
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			fc, feats := validateFC(t, r.body, false)
			if len(feats) != tc.wantCount {
				t.Errorf("features = %d, want %d", len(feats), tc.wantCount)
			}
			next := linkOf(fc.Links, "next")
			if next == "" {
				t.Fatal("no next link")
			}
			u, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.Query().Get("limit"); got != tc.wantLimit {
				t.Errorf("next link limit = %q, want %q", got, tc.wantLimit)
			}
		})
	}
}

func TestFilterByHolder(t *testing.T) {
	e := newEnv(t)
	// A holder with several parcels in the jurisdiction.
	var holder string
	for _, p := range e.data.Parcels {
		if len(expected(e.data, cityBox, p.HolderID)) >= 2 {
			holder = p.HolderID
			break
		}
	}
	if holder == "" {
		t.Fatal("no holder with two parcels")
	}
	want := expected(e.data, cityBox, holder)
	r := e.get(t, tokApproval, itemsURL(url.Values{"holder_id": {holder}, "limit": {"100"}}))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	_, feats := validateFC(t, r.body, false)
	if len(feats) != len(want) {
		t.Errorf("features = %d, want %d", len(feats), len(want))
	}
	for _, f := range feats {
		if f.Properties["holder_id"] != holder || !want[f.ID.(string)] {
			t.Errorf("feature %v of holder %v", f.ID, f.Properties["holder_id"])
		}
	}
	// A valid identifier that holds nothing: an empty collection.
	r = e.get(t, tokApproval, itemsURL(url.Values{"holder_id": {"91350100M000100Y43"}}))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if _, feats := validateFC(t, r.body, false); len(feats) != 0 {
		t.Errorf("features = %d, want 0", len(feats))
	}
}

func TestFeatureByID(t *testing.T) {
	e := newEnv(t)
	var p = e.data.Parcels[0]
	r := e.get(t, tokApproval, "/ogc/collections/resources.parcels/items/"+p.ParcelID)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != MediaGeoJSON {
		t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	f := validateFeature(t, "feature", r.body, false)
	if f.ID != p.ParcelID || f.Properties["holder_id"] != p.HolderID || f.Properties["address"] != p.Address {
		t.Errorf("feature = %+v, want parcel %+v", f, p)
	}
	if _, ok := f.Properties["geometry"]; ok {
		t.Error("geometry repeated as a property")
	}
	// Plain JSON on request.
	for _, hdr := range [][]string{{"Accept", MediaJSON}, {}} {
		path := "/ogc/collections/resources.parcels/items/" + p.ParcelID
		if len(hdr) == 0 {
			path += "?f=json"
		}
		r = e.get(t, tokApproval, path, hdr...)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != MediaJSON {
			t.Errorf("%s %v: %d %s", path, hdr, r.status, r.header.Get("Content-Type"))
		}
	}
}

func TestGrantShapesFeatures(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		token       string
		absent      []string
		present     []string
		nilGeometry bool
	}{
		{tokApproval, nil, []string{"holder_id", "holder_name", "address"}, false},
		{tokPlanning, []string{"holder_id", "holder_name"}, []string{"address", "land_use"}, false},
		{tokSurvey, []string{"holder_id", "holder_name", "address"}, []string{"land_use", "area_sqm"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.token, func(t *testing.T) {
			r := e.get(t, tc.token, itemsURL(url.Values{"bbox": {boxParam(cityBox)}, "limit": {"20"}}))
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			_, feats := validateFC(t, r.body, tc.nilGeometry)
			if len(feats) == 0 {
				t.Fatal("no features")
			}
			for _, f := range feats {
				for _, k := range tc.absent {
					if _, ok := f.Properties[k]; ok {
						t.Fatalf("feature %v has withheld property %s", f.ID, k)
					}
				}
				for _, k := range tc.present {
					if _, ok := f.Properties[k]; !ok {
						t.Fatalf("feature %v lacks granted property %s", f.ID, k)
					}
				}
				if isNull := string(f.Geometry) == "null"; isNull != tc.nilGeometry {
					t.Fatalf("feature %v geometry %s, want null=%v", f.ID, f.Geometry, tc.nilGeometry)
				}
			}
		})
	}
}

// TestAudited checks that façade requests are recorded like any query.
func TestAudited(t *testing.T) {
	e := newEnv(t)
	before := len(e.rec.exchanges())
	r := e.get(t, tokPlanning, itemsURL(url.Values{"bbox": {boxParam(cityBox)}}))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	e.get(t, tokStranger, itemsURL(url.Values{"bbox": {boxParam(cityBox)}}))
	got := e.rec.exchanges()[before:]
	if len(got) != 2 {
		t.Fatalf("recorded %d exchanges, want 2: %+v", len(got), got)
	}
	if got[0].Consumer != "planning-office" || got[0].Dataset != "resources.parcels" || got[0].Purpose != "approval" || got[0].RequestID == "" {
		t.Errorf("exchange = %+v", got[0])
	}
	if got[1].Consumer != "stranger" || got[1].Decision != "deny" {
		t.Errorf("denial recorded as %+v", got[1])
	}
}

func TestPageToken(t *testing.T) {
	long := make([]string, 0, 400)
	long = append(long, "")
	for i := range 400 {
		long = append(long, "tok-"+strconv.Itoa(i))
	}
	cut := truncate(long)
	if len(encodePage(cut)) > maxPageTokenLen || cut[len(cut)-1] != "tok-399" || cut[0] == "" {
		t.Fatalf("truncate kept %d entries ending %q", len(cut), cut[len(cut)-1])
	}
	got, err := decodePage(encodePage(cut))
	if err != nil || !slices.Equal(got, cut) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "!!", "bnVsbA", "W10"} { // "", invalid, null, []
		if _, err := decodePage(bad); err == nil {
			t.Errorf("decodePage(%q) accepted", bad)
		}
	}
}

// TestOGRInfo is the proof that GIS tools read parcels through the gateway:
// GDAL's OGC API – Features driver (ogrinfo) lists the collection with a
// bearer token and counts the features of a box, walking the next links;
// the fields it sees are those the caller's grant allows.
func TestOGRInfo(t *testing.T) {
	ogrinfo, err := exec.LookPath("ogrinfo")
	if err != nil {
		t.Skip("ogrinfo (Debian package gdal-bin) is not installed")
	}
	// GDAL reads the first page of the whole collection to learn its
	// schema: more parcels than the demo connector collects by default.
	e := newEnvWith(t, 5000)
	want := expected(e.data, cityBox, "")
	cases := []struct {
		token   string
		present []string
		absent  []string
	}{
		{tokApproval, []string{"parcel_id: String", "holder_id: String", "area_sqm: Real"}, nil},
		{tokPlanning, []string{"parcel_id: String", "area_sqm: Real"}, []string{"holder_id: String", "holder_name: String"}},
	}
	for _, tc := range cases {
		t.Run(tc.token, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			num := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
			cmd := exec.CommandContext(ctx, ogrinfo, "-ro", "-so",
				"-spat", num(cityBox.MinLon), num(cityBox.MinLat), num(cityBox.MaxLon), num(cityBox.MaxLat),
				"OAPIF:"+e.srv.URL+"/ogc", "resources.parcels")
			cmd.Env = append(os.Environ(), "GDAL_HTTP_HEADERS=Authorization: Bearer "+tc.token, "GDAL_HTTP_TIMEOUT=60")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ogrinfo: %v\n%s", err, out)
			}
			text := string(out)
			if strings.Contains(text, "ERROR") {
				t.Errorf("ogrinfo reported errors:\n%s", text)
			}
			m := regexp.MustCompile(`(?m)^Feature Count: (\d+)$`).FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("ogrinfo reported no feature count:\n%s", text)
			}
			if n, _ := strconv.Atoi(m[1]); n != len(want) {
				t.Fatalf("ogrinfo counted %d features, want %d:\n%s", n, len(want), text)
			}
			for _, s := range append([]string{"Geometry: Polygon"}, tc.present...) {
				if !strings.Contains(text, s) {
					t.Errorf("ogrinfo output lacks %q:\n%s", s, text)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(text, s) {
					t.Errorf("ogrinfo sees withheld field %q:\n%s", s, text)
				}
			}
			t.Logf("ogrinfo counted %d parcels through the façade", len(want))
		})
	}
}

// TestFeatureIDs: the feature id is the parcel code only for a caller that
// may see the code unmasked; others get a stable opaque reference, and with
// no reference key configured no id at all (never the masked code).
func TestFeatureIDs(t *testing.T) {
	refs, err := query.NewRecordRefs(refKey)
	if err != nil {
		t.Fatal(err)
	}
	items := itemsURL(url.Values{"bbox": {boxParam(cityBox)}, "limit": {"100"}})
	ids := func(t *testing.T, e *env, token string) []featureDoc {
		t.Helper()
		r := e.get(t, token, items)
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var fc struct {
			Features []featureDoc `json:"features"`
		}
		if err := json.Unmarshal(r.body, &fc); err != nil {
			t.Fatal(err)
		}
		if len(fc.Features) == 0 {
			t.Fatal("no features")
		}
		return fc.Features
	}
	e := newEnv(t)
	want := expected(e.data, cityBox, "")
	for _, f := range ids(t, e, tokApproval) {
		if !want[fmt.Sprint(f.ID)] {
			t.Errorf("approval bureau: feature id %v is not a parcel code of the box", f.ID)
		}
	}
	for _, token := range []string{tokMasked, tokNoKey} {
		t.Run(token, func(t *testing.T) {
			first := ids(t, e, token)
			second := ids(t, e, token)
			seen := map[string]bool{}
			var refsSeen []string
			for _, f := range first {
				id, _ := f.ID.(string)
				if !strings.HasPrefix(id, query.RefPrefix) || want[id] || seen[id] {
					t.Fatalf("feature id %q, want a unique opaque reference", id)
				}
				seen[id] = true
				refsSeen = append(refsSeen, id)
				if v, ok := f.Properties["parcel_id"]; ok && v != policy.Redacted {
					t.Errorf("parcel_id property %v, want it redacted", v)
				}
			}
			var again []string
			for _, f := range second {
				again = append(again, fmt.Sprint(f.ID))
			}
			if !slices.Equal(refsSeen, again) {
				t.Errorf("references changed between requests")
			}
			// Each reference is the one of a parcel of the box.
			byRef := map[string]bool{}
			for code := range want {
				byRef[refs.Ref("resources.parcels", code)] = true
			}
			for id := range seen {
				if !byRef[id] {
					t.Errorf("reference %s is not that of a parcel of the box", id)
				}
			}
		})
	}
	// The masked caller still looks a parcel up by the code it holds; the
	// answer names it by reference.
	code := slices.Sorted(maps.Keys(want))[0]
	r := e.get(t, tokMasked, "/ogc/collections/resources.parcels/items/"+code)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if f := validateFeature(t, "feature", r.body, false); f.ID != refs.Ref("resources.parcels", code) {
		t.Errorf("feature id %v, want the reference of %s", f.ID, code)
	}

	// No reference key: no id rather than the code or its mask.
	bare := newEnvRefs(t, 1000, nil)
	for _, token := range []string{tokMasked, tokNoKey} {
		for _, f := range ids(t, bare, token) {
			if f.ID != nil {
				t.Errorf("%s: feature id %v, want none", token, f.ID)
			}
		}
	}
}
