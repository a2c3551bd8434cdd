package ogc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Feature is a GeoJSON feature.
type Feature struct {
	Type       string         `json:"type"`
	ID         string         `json:"id,omitempty"`
	Geometry   any            `json:"geometry"`
	Properties map[string]any `json:"properties"`
	Links      []Link         `json:"links,omitempty"`
}

// FeatureCollection is one page of an items response. NumberMatched is never
// sent: the departments do not report totals.
type FeatureCollection struct {
	Type           string    `json:"type"`
	TimeStamp      string    `json:"timeStamp"`
	NumberReturned int       `json:"numberReturned"`
	Links          []Link    `json:"links"`
	Features       []Feature `json:"features"`
}

// world is the area of an items request without bbox.
var world = &v1.BBox{MinLon: -180, MinLat: -90, MaxLon: 180, MaxLat: 90}

func (h *Handler) serveItems(w http.ResponseWriter, req *request, id string) {
	if err := h.authenticate(req); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	ds, err := h.collection(id)
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	q, err := h.params(req, func(name string) bool {
		return name == "bbox" || name == "limit" || name == "page" || ds.IsLookup(name)
	})
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	limit, err := parseLimit(q)
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	var bbox *v1.BBox
	if q.Has("bbox") {
		if bbox, err = parseBBox(q.Get("bbox")); err != nil {
			h.writeError(w, req, err, 0)
			return
		}
	}
	keys := map[string]string{}
	for name := range q {
		if ds.IsLookup(name) {
			keys[name] = q.Get(name)
		}
	}
	if len(keys) > 0 && bbox != nil {
		h.writeError(w, req, apierr.Invalid("bbox", "cannot be combined with the property filters (%s); give one or the other",
			strings.Join(sortedNames(keys), ", ")), 0)
		return
	}
	if len(keys) == 0 && bbox == nil {
		bbox = world
	}
	history := []string{""}
	if q.Has("page") {
		if history, err = decodePage(q.Get("page")); err != nil {
			h.writeError(w, req, err, 0)
			return
		}
	}

	resp, err := h.Pipeline.Run(req.ctx, query.Request{
		Principal: req.principal,
		RequestID: req.id,
		Query: &v1.QueryRequest{
			Dataset:   ds.Name,
			Keys:      keys,
			Bbox:      bbox,
			PageSize:  int32(limit),
			PageToken: history[len(history)-1],
			Purpose:   req.purpose,
		},
	})
	if err != nil && !isNotFound(err) {
		h.writeError(w, req, err, 0)
		return
	}
	// A page that matched nothing is an empty collection, not an error.
	if resp == nil {
		resp = &v1.QueryResponse{}
	}

	typ := responseType(req)
	itemsPath := "/collections/" + url.PathEscape(ds.Name) + "/items"
	base := url.Values{}
	for k, v := range q {
		if k != "page" && k != "f" && k != "purpose" {
			base[k] = v
		}
	}
	if q.Has("limit") {
		base.Set("limit", strconv.Itoa(limit))
	}
	withPage := func(h []string) url.Values {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		if !(len(h) == 1 && h[0] == "") {
			v.Set("page", encodePage(h))
		}
		return v
	}
	cur := withPage(history)
	fc := FeatureCollection{
		Type:      "FeatureCollection",
		TimeStamp: h.now().UTC().Format(time.RFC3339),
		Links: []Link{
			req.self(itemsPath, cur, "self", typ, req.format),
			req.self(itemsPath, cur, "alternate", otherType(typ), formatOf(otherType(typ))),
			{Href: req.link("/collections/"+url.PathEscape(ds.Name), nil), Rel: "collection", Type: MediaJSON},
		},
		Features: make([]Feature, 0, len(resp.GetRecords())),
	}
	if resp.GetNextPageToken() != "" {
		next := append(append([]string{}, history...), resp.GetNextPageToken())
		fc.Links = append(fc.Links, req.self(itemsPath, withPage(truncate(next)), "next", typ, req.format))
	}
	if len(history) > 1 {
		fc.Links = append(fc.Links, req.self(itemsPath, withPage(history[:len(history)-1]), "prev", typ, req.format))
	}
	for _, rec := range resp.GetRecords() {
		fc.Features = append(fc.Features, feature(ds, rec))
	}
	fc.NumberReturned = len(fc.Features)
	setReceipt(w, resp.GetReceipt())
	h.writeJSON(w, req, http.StatusOK, typ, fc)
}

func (h *Handler) serveFeature(w http.ResponseWriter, req *request, id, fid string) {
	if err := h.authenticate(req); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	ds, err := h.collection(id)
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if _, err := h.params(req, nil); err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if len(ds.Keys) != 1 {
		h.writeError(w, req, notFound("collection %s has no single-field feature id", ds.Name), 0)
		return
	}
	resp, err := h.Pipeline.Run(req.ctx, query.Request{
		Principal: req.principal,
		RequestID: req.id,
		Query: &v1.QueryRequest{
			Dataset: ds.Name,
			Keys:    map[string]string{ds.Keys[0]: fid},
			Purpose: req.purpose,
		},
	})
	if isNotFound(err) {
		h.writeError(w, req, notFound("feature %q does not exist in collection %s", fid, ds.Name), 0)
		return
	}
	if err != nil {
		h.writeError(w, req, err, 0)
		return
	}
	if len(resp.GetRecords()) == 0 {
		h.writeError(w, req, notFound("feature %q does not exist in collection %s", fid, ds.Name), 0)
		return
	}
	typ := responseType(req)
	path := "/collections/" + url.PathEscape(ds.Name) + "/items/" + url.PathEscape(fid)
	f := feature(ds, resp.GetRecords()[0])
	f.Links = []Link{
		req.self(path, nil, "self", typ, req.format),
		req.self(path, nil, "alternate", otherType(typ), formatOf(otherType(typ))),
		{Href: req.link("/collections/"+url.PathEscape(ds.Name), nil), Rel: "collection", Type: MediaJSON},
	}
	setReceipt(w, resp.GetReceipt())
	h.writeJSON(w, req, http.StatusOK, typ, f)
}

// feature turns a shaped record into a GeoJSON feature: the dataset's
// geometry field (when the caller may see it) is the geometry, the other
// fields are properties, and the record id the pipeline released is the
// feature id: the department's key where the caller may see it unmasked,
// else an opaque reference (stable, but not a key GET .../items/{id}
// accepts). A record released without an id takes its key field's value,
// unless that is masked; failing both, the feature has no id.
func feature(ds *datasets.Dataset, rec *v1.Record) Feature {
	geo := geometryField(ds)
	f := Feature{Type: "Feature", ID: rec.GetProvenance().GetRecordId(), Properties: map[string]any{}}
	for name, v := range rec.GetFields().GetFields() {
		if name == geo {
			f.Geometry = geometry(v)
			continue
		}
		f.Properties[name] = v.AsInterface()
	}
	if f.ID == "" && len(ds.Keys) == 1 && !slices.Contains(rec.GetMaskedFields(), ds.Keys[0]) {
		if v, ok := rec.GetFields().GetFields()[ds.Keys[0]]; ok {
			f.ID = fmt.Sprint(v.AsInterface())
		}
	}
	return f
}

// geometry returns v as a GeoJSON geometry object, or nil when it is not
// one (for example when a mask replaced it with text).
func geometry(v *structpb.Value) any {
	s := v.GetStructValue()
	if s == nil {
		return nil
	}
	if t := s.GetFields()["type"].GetStringValue(); t == "" {
		return nil
	}
	return s.AsMap()
}

func geometryField(ds *datasets.Dataset) string {
	for _, f := range ds.Fields {
		if f.Type == "geometry" {
			return f.Name
		}
	}
	return ""
}

func setReceipt(w http.ResponseWriter, r *v1.Receipt) {
	if r == nil {
		return
	}
	w.Header().Set(ReceiptHeader, r.GetNode()+"/"+strconv.FormatUint(r.GetLeafIndex(), 10))
}

// responseType picks the media type of a features response: f= decides;
// otherwise GeoJSON unless the Accept header asks for plain JSON only.
func responseType(req *request) string {
	switch req.format {
	case "json":
		return MediaJSON
	case "geojson":
		return MediaGeoJSON
	}
	accept := req.r.Header.Get("Accept")
	if strings.Contains(accept, MediaJSON) && !strings.Contains(accept, MediaGeoJSON) && !strings.Contains(accept, "*/*") {
		return MediaJSON
	}
	return MediaGeoJSON
}

func otherType(t string) string {
	if t == MediaJSON {
		return MediaGeoJSON
	}
	return MediaJSON
}

func formatOf(t string) string {
	if t == MediaJSON {
		return "json"
	}
	return "geojson"
}

func parseLimit(q url.Values) (int, error) {
	if !q.Has("limit") {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n < 1 {
		return 0, apierr.Invalid("limit", "%q is not a positive integer", q.Get("limit"))
	}
	return min(n, MaxLimit), nil
}

// parseBBox reads minLon,minLat,maxLon,maxLat (or the six-number 3D form,
// whose heights are ignored) in WGS 84.
func parseBBox(s string) (*v1.BBox, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 && len(parts) != 6 {
		return nil, apierr.Invalid("bbox", "%q must be minLon,minLat,maxLon,maxLat", s)
	}
	n := make([]float64, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, apierr.Invalid("bbox", "%q is not a number", p)
		}
		n[i] = v
	}
	if len(n) == 6 {
		n = []float64{n[0], n[1], n[3], n[4]}
	}
	b := &v1.BBox{MinLon: n[0], MinLat: n[1], MaxLon: n[2], MaxLat: n[3]}
	switch {
	case b.MinLon < -180 || b.MaxLon > 180 || b.MinLat < -90 || b.MaxLat > 90:
		return nil, apierr.Invalid("bbox", "coordinates must be WGS 84 longitude/latitude (CRS84)")
	case b.MinLon > b.MaxLon:
		return nil, apierr.Invalid("bbox", "boxes crossing the antimeridian are not supported (minLon > maxLon)")
	case b.MinLat >= b.MaxLat || b.MinLon == b.MaxLon:
		return nil, apierr.Invalid("bbox", "minimum must be less than maximum")
	}
	return b, nil
}

// A page token carries the department page tokens of the pages walked so
// far, so that a prev link can be offered: element 0 is "" when the history
// reaches back to the first page, the last element is the current page's.
// Long histories are cut from the front; prev links then stop there.
const maxPageTokenLen = 2048

func encodePage(history []string) string {
	b, _ := json.Marshal(history) // a []string always encodes
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePage(s string) ([]string, error) {
	bad := apierr.Invalid("page", "not a page token this server issued; follow the next and prev links")
	if len(s) > 2*maxPageTokenLen {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var h []string
	if err := json.Unmarshal(b, &h); err != nil || len(h) == 0 {
		return nil, bad
	}
	return h, nil
}

// truncate drops the oldest entries of history until its token fits.
func truncate(history []string) []string {
	for len(history) > 1 && len(encodePage(history)) > maxPageTokenLen {
		history = history[1:]
	}
	return history
}

func sortedNames(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
