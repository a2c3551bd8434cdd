package simulate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// OGC API – Features limits of the items endpoint.
const (
	DefaultLimit = 10
	MaxLimit     = 1000
)

// Conformance classes the natural resources bureau declares.
var conformance = []string{
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
}

const (
	crs84       = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
	geoJSON     = "application/geo+json"
	plainJSON   = "application/json"
	openAPIMIME = "application/vnd.oai.openapi+json;version=3.0"
)

// Link is an OGC API link.
type Link struct {
	Href  string `json:"href"`
	Rel   string `json:"rel"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

// Feature is a GeoJSON feature as served by the natural resources bureau.
type Feature struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Geometry   *Polygon       `json:"geometry"`
	Properties map[string]any `json:"properties"`
	Links      []Link         `json:"links,omitempty"`
}

// FeatureCollection is a page of an items response.
type FeatureCollection struct {
	Type           string    `json:"type"`
	NumberMatched  int       `json:"numberMatched"`
	NumberReturned int       `json:"numberReturned"`
	TimeStamp      string    `json:"timeStamp"`
	Links          []Link    `json:"links"`
	Features       []Feature `json:"features"`
}

// collection is one feature collection.
type collection struct {
	id, title, description string
	features               []Feature
	envelopes              []BBox
	byID                   map[string]int
	queryables             []string
	// temporal is the date property datetime filters on, if any.
	temporal string
	extent   BBox
	interval [2]string
}

// Resources is the simulated natural resources bureau (自然资源和规划局),
// an OGC API – Features (Part 1: Core, GeoJSON, OpenAPI 3.0) server with
// two collections, "parcels" and "land_use_certificates":
//
//	GET /                                   landing page
//	GET /api                                OpenAPI 3.0 definition
//	GET /conformance
//	GET /collections
//	GET /collections/{id}
//	GET /collections/{id}/items?bbox=&limit=&offset=&datetime=&<property>=
//	GET /collections/{id}/items/{featureId}
//
// Feature ids are parcel_id and certificate_no. Certificates carry the
// geometry of their parcel; datetime filters certificates on issued_on.
type Resources struct {
	*Control
	handler     http.Handler
	collections []*collection
}

// NewResources returns the natural resources bureau serving d.
func NewResources(d *Data, f Faults) *Resources {
	res := &Resources{Control: newControl(d.Seed+3, f)}
	parcels := &collection{
		id: "parcels", title: "宗地 (land parcels)",
		description: "Cadastral parcels of the Shijiazhuang natural resources and planning bureau (resources.parcels).",
		queryables:  []string{"parcel_id", "region_code", "address", "land_use", "rights_type", "holder_name", "holder_id"},
	}
	for _, p := range d.Parcels {
		g := p.Geometry
		parcels.add(Feature{Type: "Feature", ID: p.ParcelID, Geometry: &g, Properties: properties(p, "geometry")})
	}
	certs := &collection{
		id: "land_use_certificates", title: "不动产权证书（土地） (land-use certificates)",
		description: "Land-use right certificates (resources.land_use_certificates); the geometry is that of the parcel.",
		queryables:  []string{"certificate_no", "parcel_id", "holder_name", "holder_id", "land_use", "rights_type", "region_code", "issued_on"},
		temporal:    "issued_on",
	}
	for _, c := range d.Certificates {
		var g *Polygon
		if p, ok := d.Parcel(c.ParcelID); ok {
			pg := p.Geometry
			g = &pg
		}
		certs.add(Feature{Type: "Feature", ID: c.CertificateNo, Geometry: g, Properties: properties(c)})
	}
	res.collections = []*collection{parcels, certs}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", res.landing)
	mux.HandleFunc("GET /api", res.openAPI)
	mux.HandleFunc("GET /conformance", res.conformance)
	mux.HandleFunc("GET /collections", res.listCollections)
	mux.HandleFunc("GET /collections/{cid}", res.getCollection)
	mux.HandleFunc("GET /collections/{cid}/items", res.items)
	mux.HandleFunc("GET /collections/{cid}/items/{fid}", res.item)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ogcError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no resource at %s %s", r.Method, r.URL.Path))
	})
	res.handler = res.wrap("natural resources bureau", mux)
	return res
}

// ServeHTTP serves the OGC API.
func (res *Resources) ServeHTTP(w http.ResponseWriter, r *http.Request) { res.handler.ServeHTTP(w, r) }

// properties turns a record into GeoJSON properties, leaving out fields.
func properties(v any, drop ...string) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("simulate: encoding %T: %v", v, err))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("simulate: decoding %T: %v", v, err))
	}
	for _, k := range drop {
		delete(m, k)
	}
	return m
}

func (c *collection) add(f Feature) {
	if c.byID == nil {
		c.byID = map[string]int{}
		c.extent = BBox{MinLon: 180, MinLat: 90, MaxLon: -180, MaxLat: -90}
	}
	env := BBox{MinLon: 1, MinLat: 1, MaxLon: -1, MaxLat: -1} // empty: intersects nothing
	if f.Geometry != nil {
		env = f.Geometry.Bounds()
		c.extent = BBox{min(c.extent.MinLon, env.MinLon), min(c.extent.MinLat, env.MinLat), max(c.extent.MaxLon, env.MaxLon), max(c.extent.MaxLat, env.MaxLat)}
	}
	if c.temporal != "" {
		if d, _ := f.Properties[c.temporal].(string); d != "" {
			if c.interval[0] == "" || d < c.interval[0] {
				c.interval[0] = d
			}
			if d > c.interval[1] {
				c.interval[1] = d
			}
		}
	}
	c.byID[f.ID] = len(c.features)
	c.features = append(c.features, f)
	c.envelopes = append(c.envelopes, env)
}

func ogcError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, plainJSON, map[string]string{"code": code, "description": desc})
}

// base returns the URL of the server as the client addressed it.
func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// checkF accepts the f parameter for JSON encodings only.
func checkF(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	allowed = append(allowed, "f")
	for k := range q {
		if !slices.Contains(allowed, k) {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("unknown query parameter %q; allowed: %s", k, strings.Join(allowed, ", ")))
			return false
		}
	}
	if f := q.Get("f"); f != "" && f != "json" && f != "geojson" {
		ogcError(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("f %q is not supported; use json", f))
		return false
	}
	return true
}

func (res *Resources) landing(w http.ResponseWriter, r *http.Request) {
	if !checkF(w, r.URL.Query()) {
		return
	}
	b := base(r)
	writeJSON(w, http.StatusOK, plainJSON, map[string]any{
		"title":       "石家庄市自然资源和规划局 OGC API – Features",
		"description": "Land parcels and land-use certificates of the (simulated) Shijiazhuang natural resources and planning bureau.",
		"links": []Link{
			{b + "/", "self", plainJSON, "this document"},
			{b + "/api", "service-desc", openAPIMIME, "the API definition"},
			{b + "/conformance", "conformance", plainJSON, "conformance classes implemented by this server"},
			{b + "/collections", "data", plainJSON, "the feature collections"},
		},
	})
}

func (res *Resources) conformance(w http.ResponseWriter, r *http.Request) {
	if !checkF(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, plainJSON, map[string]any{"conformsTo": conformance})
}

func (res *Resources) describe(b string, c *collection) map[string]any {
	extent := map[string]any{
		"spatial": map[string]any{
			"bbox": [][4]float64{{c.extent.MinLon, c.extent.MinLat, c.extent.MaxLon, c.extent.MaxLat}},
			"crs":  crs84,
		},
	}
	if c.temporal != "" {
		extent["temporal"] = map[string]any{
			"interval": [][2]string{{c.interval[0] + "T00:00:00Z", c.interval[1] + "T00:00:00Z"}},
			"trs":      "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
		}
	}
	return map[string]any{
		"id": c.id, "title": c.title, "description": c.description,
		"itemType": "feature",
		"crs":      []string{crs84},
		"extent":   extent,
		"links": []Link{
			{b + "/collections/" + c.id, "self", plainJSON, c.title},
			{b + "/collections/" + c.id + "/items", "items", geoJSON, c.title + " (GeoJSON)"},
		},
	}
}

func (res *Resources) listCollections(w http.ResponseWriter, r *http.Request) {
	if !checkF(w, r.URL.Query()) {
		return
	}
	b := base(r)
	cs := make([]map[string]any, len(res.collections))
	for i, c := range res.collections {
		cs[i] = res.describe(b, c)
	}
	writeJSON(w, http.StatusOK, plainJSON, map[string]any{
		"links":       []Link{{b + "/collections", "self", plainJSON, "the feature collections"}},
		"collections": cs,
	})
}

func (res *Resources) collection(w http.ResponseWriter, r *http.Request) (*collection, bool) {
	id := r.PathValue("cid")
	for _, c := range res.collections {
		if c.id == id {
			return c, true
		}
	}
	ogcError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no collection %q", id))
	return nil, false
}

func (res *Resources) getCollection(w http.ResponseWriter, r *http.Request) {
	c, ok := res.collection(w, r)
	if !ok || !checkF(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, plainJSON, res.describe(base(r), c))
}

func (res *Resources) item(w http.ResponseWriter, r *http.Request) {
	c, ok := res.collection(w, r)
	if !ok || !checkF(w, r.URL.Query()) {
		return
	}
	fid := r.PathValue("fid")
	i, ok := c.byID[fid]
	if !ok {
		ogcError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no feature %q in collection %q", fid, c.id))
		return
	}
	f := c.features[i]
	b := base(r)
	f.Links = []Link{
		{b + "/collections/" + c.id + "/items/" + url.PathEscape(fid), "self", geoJSON, "this feature"},
		{b + "/collections/" + c.id, "collection", plainJSON, c.title},
	}
	writeJSON(w, http.StatusOK, geoJSON, f)
}

// parseBBox parses bbox=minLon,minLat,maxLon,maxLat (or the six-number 3D
// form). A box with minLon > maxLon crosses the antimeridian and is split.
func parseBBox(s string) ([]BBox, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 && len(parts) != 6 {
		return nil, fmt.Errorf("bbox %q must have 4 or 6 numbers", s)
	}
	v := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("bbox %q: %q is not a number", s, p)
		}
		v[i] = f
	}
	if len(v) == 6 {
		v = []float64{v[0], v[1], v[3], v[4]}
	}
	b := BBox{v[0], v[1], v[2], v[3]}
	if b.MinLat > b.MaxLat {
		return nil, fmt.Errorf("bbox %q: minimum latitude is above maximum latitude", s)
	}
	if b.MinLat < -90 || b.MaxLat > 90 || b.MinLon < -180 || b.MaxLon > 180 || b.MinLon > 180 || b.MaxLon < -180 {
		return nil, fmt.Errorf("bbox %q is outside the WGS 84 range", s)
	}
	if b.MinLon > b.MaxLon {
		return []BBox{{b.MinLon, b.MinLat, 180, b.MaxLat}, {-180, b.MinLat, b.MaxLon, b.MaxLat}}, nil
	}
	return []BBox{b}, nil
}

// parseDatetime parses an instant or an interval into inclusive day bounds
// ("" for open).
func parseDatetime(s string) (from, to string, err error) {
	day := func(p string) (string, error) {
		if p == ".." || p == "" {
			return "", nil
		}
		if t, err := time.Parse(time.RFC3339, p); err == nil {
			return t.UTC().Format(time.DateOnly), nil
		}
		if t, err := time.Parse(time.DateOnly, p); err == nil {
			return t.Format(time.DateOnly), nil
		}
		return "", fmt.Errorf("datetime %q: %q is not an RFC 3339 date or date-time", s, p)
	}
	a, b, interval := strings.Cut(s, "/")
	if from, err = day(a); err != nil {
		return "", "", err
	}
	if !interval {
		if from == "" {
			return "", "", fmt.Errorf("datetime %q is empty", s)
		}
		return from, from, nil
	}
	if to, err = day(b); err != nil {
		return "", "", err
	}
	if from == "" && to == "" {
		return "", "", fmt.Errorf("datetime %q: both ends are open", s)
	}
	if from != "" && to != "" && from > to {
		return "", "", fmt.Errorf("datetime %q: start is after end", s)
	}
	return from, to, nil
}

func propString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (res *Resources) items(w http.ResponseWriter, r *http.Request) {
	c, ok := res.collection(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if !checkF(w, q, append([]string{"bbox", "limit", "offset", "datetime"}, c.queryables...)...) {
		return
	}
	for k, vs := range q {
		if len(vs) > 1 {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("query parameter %q is given %d times", k, len(vs)))
			return
		}
	}
	limit := DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("limit %q is not a positive integer", s))
			return
		}
		limit = min(n, MaxLimit) // OGC API – Features: larger values are not an error
	}
	offset := 0
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("offset %q is not a non-negative integer", s))
			return
		}
		offset = n
	}
	var boxes []BBox
	if s := q.Get("bbox"); s != "" {
		var err error
		if boxes, err = parseBBox(s); err != nil {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
			return
		}
	}
	var from, to string
	if s := q.Get("datetime"); s != "" && c.temporal != "" {
		var err error
		if from, to, err = parseDatetime(s); err != nil {
			ogcError(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
			return
		}
	}
	type eq struct{ k, v string }
	var eqs []eq
	for _, k := range c.queryables {
		if v := q.Get(k); v != "" {
			eqs = append(eqs, eq{k, v})
		}
	}
	var matched []int
	for i, f := range c.features {
		if boxes != nil && !slices.ContainsFunc(boxes, func(b BBox) bool {
			return f.Geometry != nil && b.Intersects(c.envelopes[i]) && f.Geometry.IntersectsBBox(b)
		}) {
			continue
		}
		if from != "" || to != "" {
			d := propString(f.Properties[c.temporal])
			if d == "" || (from != "" && d < from) || (to != "" && d > to) {
				continue
			}
		}
		if slices.ContainsFunc(eqs, func(e eq) bool { return propString(f.Properties[e.k]) != e.v }) {
			continue
		}
		matched = append(matched, i)
	}
	page := []Feature{}
	if offset < len(matched) {
		for _, i := range matched[offset:min(offset+limit, len(matched))] {
			page = append(page, c.features[i])
		}
	}
	self := base(r) + "/collections/" + c.id + "/items"
	link := func(rel string, off int) Link {
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("limit", strconv.Itoa(limit))
		v.Set("offset", strconv.Itoa(off))
		return Link{self + "?" + v.Encode(), rel, geoJSON, rel + " page"}
	}
	links := []Link{link("self", offset)}
	if offset+len(page) < len(matched) {
		links = append(links, link("next", offset+limit))
	}
	if offset > 0 {
		links = append(links, link("prev", max(offset-limit, 0)))
	}
	links = append(links, Link{base(r) + "/collections/" + c.id, "collection", plainJSON, c.title})
	writeJSON(w, http.StatusOK, geoJSON, FeatureCollection{
		Type: "FeatureCollection", NumberMatched: len(matched), NumberReturned: len(page),
		TimeStamp: time.Now().UTC().Format(time.RFC3339), Links: links, Features: page,
	})
}
