package conn

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/paulmach/orb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/builtin/internal/geom"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Mode says how a fetch request selects records.
type Mode int

// Selection modes.
const (
	// ByKey gives every key field of the dataset (and possibly lookups).
	ByKey Mode = iota + 1
	// ByLookup gives lookup fields, or some but not all key fields.
	ByLookup
	// ByFilter gives an equality filter on fields.
	ByFilter
	// BySpatial gives a bounding box or a geometry.
	BySpatial
)

// MaxValueLen is the longest key or filter value accepted.
const MaxValueLen = 256

// Selection is a validated fetch request.
type Selection struct {
	Dataset *datasets.Dataset
	Mode    Mode
	// Values holds the keys or the filter, field name to value.
	Values map[string]string
	// BBox is the requested box (BySpatial): the request's bbox, or the
	// bound of its geometry.
	BBox orb.Bound
	// Area is what records must intersect (BySpatial).
	Area orb.Geometry
}

// Select validates req against the dictionary entry ds. filterable reports
// whether the department supports an equality filter on a field; nil means
// no filtering at all.
func Select(ds *datasets.Dataset, req *v1.FetchRequest, filterable func(field string) bool) (*Selection, error) {
	n := 0
	for _, given := range []bool{len(req.GetKeys()) > 0, len(req.GetFilter()) > 0, req.GetBbox() != nil || req.GetGeometry() != nil} {
		if given {
			n++
		}
	}
	if n == 0 {
		return nil, apierr.Newf(codes.InvalidArgument, apierr.ReasonMissingKey,
			"give keys (%s), a filter or an area to select %s records", strings.Join(ds.Keys, ", "), ds.Name).With("dataset", ds.Name)
	}
	if n > 1 {
		return nil, apierr.Invalid("keys", "give only one of keys, filter or bbox/geometry")
	}
	sel := &Selection{Dataset: ds}
	switch {
	case len(req.GetKeys()) > 0:
		if err := checkValues("keys", req.GetKeys(), func(f string) error {
			if !ds.IsLookup(f) {
				return unknownField("keys", f, fmt.Sprintf("is not a key or lookup field of %s (keys: %s; lookups: %s)",
					ds.Name, strings.Join(ds.Keys, ", "), strings.Join(ds.Lookups, ", ")))
			}
			return nil
		}); err != nil {
			return nil, err
		}
		sel.Values = req.GetKeys()
		sel.Mode = ByLookup
		all := true
		for _, k := range ds.Keys {
			if _, ok := sel.Values[k]; !ok {
				all = false
			}
		}
		if all {
			sel.Mode = ByKey
		}
	case len(req.GetFilter()) > 0:
		if err := checkValues("filter", req.GetFilter(), func(f string) error {
			if !ds.HasField(f) {
				return unknownField("filter", f, fmt.Sprintf("is not a field of %s", ds.Name))
			}
			if filterable == nil || !filterable(f) {
				return apierr.Invalid("filter."+f, "the department system cannot filter %s by %s", ds.Name, f)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		sel.Values = req.GetFilter()
		sel.Mode = ByFilter
	default:
		if GeometryField(ds) == "" {
			return nil, apierr.Invalid("bbox", "dataset %s has no geometry", ds.Name)
		}
		if req.GetBbox() != nil && req.GetGeometry() != nil {
			return nil, apierr.Invalid("geometry", "give bbox or geometry, not both")
		}
		sel.Mode = BySpatial
		if b := req.GetBbox(); b != nil {
			bound, err := checkBBox(b)
			if err != nil {
				return nil, err
			}
			sel.BBox, sel.Area = bound, bound
		} else {
			g, err := parseStruct(req.GetGeometry())
			if err != nil {
				return nil, apierr.Invalid("geometry", "%v", err)
			}
			sel.Area, sel.BBox = g, g.Bound()
		}
	}
	return sel, nil
}

func unknownField(where, f, msg string) error {
	return apierr.Newf(codes.InvalidArgument, apierr.ReasonUnknownField, "%s.%s: %s", where, f, msg).With("field", f)
}

func checkValues(where string, m map[string]string, check func(string) error) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := check(k); err != nil {
			return err
		}
		v := m[k]
		if strings.TrimSpace(v) == "" {
			return apierr.Invalid(where+"."+k, "must not be empty")
		}
		if len(v) > MaxValueLen {
			return apierr.Invalid(where+"."+k, "longer than %d bytes", MaxValueLen)
		}
	}
	return nil
}

func checkBBox(b *v1.BBox) (orb.Bound, error) {
	for _, v := range []float64{b.MinLon, b.MinLat, b.MaxLon, b.MaxLat} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return orb.Bound{}, apierr.Invalid("bbox", "coordinates must be finite numbers")
		}
	}
	switch {
	case b.MinLon < -180 || b.MaxLon > 180 || b.MinLat < -90 || b.MaxLat > 90:
		return orb.Bound{}, apierr.Invalid("bbox", "coordinates must be WGS 84 longitude/latitude")
	case b.MinLon > b.MaxLon || b.MinLat > b.MaxLat:
		return orb.Bound{}, apierr.Invalid("bbox", "minimum must not exceed maximum")
	}
	return orb.Bound{Min: orb.Point{b.MinLon, b.MinLat}, Max: orb.Point{b.MaxLon, b.MaxLat}}, nil
}

func parseStruct(s *structpb.Struct) (orb.Geometry, error) {
	b, err := protojson.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding geometry: %w", err)
	}
	return geom.Parse(b)
}

// GeometryField returns the name of ds's geometry field, or "".
func GeometryField(ds *datasets.Dataset) string {
	for _, f := range ds.Fields {
		if f.Type == "geometry" {
			return f.Name
		}
	}
	return ""
}

// Match reports whether rec satisfies the selection: every value equals the
// record's field (compared as text), and for an area, the record's geometry
// intersects it. Connectors apply it to what departments return, so a
// department that ignores a query parameter cannot widen a result.
func (s *Selection) Match(rec *v1.SourceRecord) bool {
	fields := rec.GetFields().GetFields()
	for k, want := range s.Values {
		if Text(fields[k]) != want {
			return false
		}
	}
	if s.Mode == BySpatial {
		gv := fields[GeometryField(s.Dataset)].GetStructValue()
		if gv == nil {
			return false
		}
		g, err := parseStruct(gv)
		if err != nil {
			return false
		}
		return geom.Intersects(g, s.Area)
	}
	return true
}

// Text renders a scalar value as text for comparisons; other values give "".
func Text(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}

// Page returns one page of recs. The page token is opaque to callers; it
// carries the offset of the next record. A page size of zero returns every
// record from the token on.
func Page(recs []*v1.SourceRecord, pageSize int32, token string) (*v1.FetchResponse, error) {
	if pageSize < 0 {
		return nil, apierr.Invalid("page_size", "must not be negative")
	}
	off := 0
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || !strings.HasPrefix(string(b), "o:") {
			return nil, apierr.Invalid("page_token", "not a token this connector issued")
		}
		off, err = strconv.Atoi(string(b[2:]))
		if err != nil || off < 0 {
			return nil, apierr.Invalid("page_token", "not a token this connector issued")
		}
	}
	if off > len(recs) {
		off = len(recs)
	}
	end := len(recs)
	if pageSize > 0 && off+int(pageSize) < end {
		end = off + int(pageSize)
	}
	out := &v1.FetchResponse{Records: recs[off:end]}
	if end < len(recs) {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))
	}
	return out, nil
}

// Finish pages the matching records, or returns NOT_FOUND for a key or
// lookup selection that matched none. Filters and areas that match nothing
// return an empty page.
func (s *Selection) Finish(recs []*v1.SourceRecord, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	kept := recs[:0:0]
	for _, r := range recs {
		if s.Match(r) {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 && (s.Mode == ByKey || s.Mode == ByLookup) {
		return nil, NotFound(s.Dataset.Name, s.Values)
	}
	if s.Mode == ByKey && len(kept) > 1 {
		kept = kept[:1]
	}
	return Page(kept, req.GetPageSize(), req.GetPageToken())
}
