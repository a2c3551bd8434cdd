// Package ogcfeatures is the built-in connector type for department systems
// that publish OGC API – Features (Part 1: Core): features by id, by bounding
// box (following rel=next links, same host only) and by property filter,
// geometry kept as GeoJSON. Results of area queries are refined with
// github.com/paulmach/orb: a feature is returned only when its geometry
// really intersects the box or the query geometry, not merely its bounding
// box.
//
// Settings (YAML):
//
//	department: {id: resources}
//	base_url: https://zrzy.example.gov.cn/ogc
//	limit: 100
//	max_pages: 10
//	datasets:
//	  resources.parcels:
//	    collection: parcels
//	    id_field: parcel_id
//	    properties: {holder_name: qlr, holder_id: qlrzjh}
//	    filters: {holder_id: qlrzjh}
package ogcfeatures

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/builtin/internal/httpc"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Type is the connector type name in configuration.
const Type = "ogcfeatures"

// ConfCore is the conformance class of OGC API – Features Part 1 Core.
const ConfCore = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"

const accept = "application/geo+json, application/json;q=0.9"

// Connector is a configured OGC API – Features connector. It is safe for
// concurrent use.
type Connector struct {
	base   conn.Base
	cfg    *Config
	client *httpc.Client
}

var _ sdk.Connector = (*Connector)(nil)

// Parse decodes YAML settings (unknown keys are errors), applies defaults
// and validates them.
func Parse(settings []byte) (*Config, error) { return conn.Parse[Config](settings) }

// New parses settings and builds the connector without contacting the
// department.
func New(_ context.Context, settings []byte) (*Connector, error) {
	cfg, err := Parse(settings)
	if err != nil {
		return nil, fmt.Errorf("ogcfeatures connector: %w", err)
	}
	return NewFromConfig(cfg)
}

// NewFromConfig builds the connector from parsed settings.
func NewFromConfig(cfg *Config) (*Connector, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ogcfeatures connector: %w", err)
	}
	client, err := httpc.New(cfg.Department.ID, cfg.Settings)
	if err != nil {
		return nil, fmt.Errorf("ogcfeatures connector: %w", err)
	}
	c := &Connector{cfg: cfg, client: client, base: conn.Base{
		Dept: cfg.Department, Datasets: map[string]*datasets.Dataset{}, Freshness: map[string]time.Duration{},
	}}
	spatial, filter := false, false
	for name, d := range cfg.Datasets {
		ds, _ := conn.Dictionary().Dataset(name)
		c.base.Datasets[name] = ds
		if d.Freshness > 0 {
			c.base.Freshness[name] = d.Freshness
		}
		spatial = spatial || conn.GeometryField(ds) != ""
		filter = filter || len(d.Filters) > 0
	}
	if filter {
		c.base.Capabilities = append(c.base.Capabilities, "filter")
	}
	if spatial {
		c.base.Capabilities = append(c.base.Capabilities, "spatial")
	}
	return c, nil
}

// Describe returns the department and the dictionary entries of the
// configured datasets.
func (c *Connector) Describe(ctx context.Context) (*v1.Descriptor, error) {
	if err := conn.CtxErr(ctx, c.cfg.Department.ID); err != nil {
		return nil, err
	}
	return c.base.Describe(), nil
}

// Health reads /conformance and checks that the server declares the Core
// conformance class.
func (c *Connector) Health(ctx context.Context) error {
	dept := c.cfg.Department.ID
	u, err := c.client.URL("/conformance", nil)
	if err != nil {
		return err
	}
	doc, err := c.client.GetJSON(ctx, u, "application/json", nil)
	if err != nil {
		return err
	}
	m, _ := doc.(map[string]any)
	classes, _ := m["conformsTo"].([]any)
	if !slices.Contains(classes, any(ConfCore)) {
		return apierr.Unavailable(dept, fmt.Errorf("GET /conformance does not declare %s", ConfCore))
	}
	return nil
}

// Fetch reads features by id, by property filter or by area.
func (c *Connector) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	dept := c.cfg.Department.ID
	if err := conn.CtxErr(ctx, dept); err != nil {
		return nil, err
	}
	ds, err := c.base.Dataset(req.GetDataset())
	if err != nil {
		return nil, err
	}
	d := c.cfg.Datasets[ds.Name]
	sel, err := conn.Select(ds, req, func(f string) bool { _, ok := d.Filters[f]; return ok })
	if err != nil {
		return nil, err
	}
	var recs []*v1.SourceRecord
	items := "/collections/" + url.PathEscape(d.Collection) + "/items"
	switch {
	case sel.Mode == conn.ByKey && d.IDField != "":
		id := sel.Values[d.IDField]
		if id == "." || id == ".." {
			return nil, apierr.Invalid("keys."+d.IDField, "%q is not a valid key value", id)
		}
		recs, err = c.one(ctx, ds, d, items+"/"+url.PathEscape(id), sel)
	case sel.Mode == conn.BySpatial:
		b := sel.BBox
		q := url.Values{"bbox": {fmt.Sprintf("%s,%s,%s,%s", num(b.Min[0]), num(b.Min[1]), num(b.Max[0]), num(b.Max[1]))}}
		recs, err = c.list(ctx, ds, d, items, q)
	default:
		q := url.Values{}
		for f, v := range sel.Values {
			p, ok := d.Filters[f]
			if !ok {
				return nil, apierr.Invalid("keys."+f, "department %q cannot look up %s by %s", dept, ds.Name, f)
			}
			q.Set(p, v)
		}
		recs, err = c.list(ctx, ds, d, items, q)
	}
	if err != nil {
		return nil, err
	}
	return sel.Finish(recs, req)
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (c *Connector) one(ctx context.Context, ds *datasets.Dataset, d *Dataset, path string, sel *conn.Selection) ([]*v1.SourceRecord, error) {
	u, err := c.client.URL(path, nil)
	if err != nil {
		return nil, err
	}
	doc, err := c.client.GetJSON(ctx, u, accept, []int{404})
	if errors.Is(err, httpc.ErrNotFound) {
		return nil, conn.NotFound(ds.Name, sel.Values)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching %s feature: %w", ds.Name, err)
	}
	rec, err := feature(ds, d, doc)
	if err != nil {
		return nil, conn.BadData(c.cfg.Department.ID, err)
	}
	return []*v1.SourceRecord{rec}, nil
}

func (c *Connector) list(ctx context.Context, ds *datasets.Dataset, d *Dataset, path string, q url.Values) ([]*v1.SourceRecord, error) {
	dept := c.cfg.Department.ID
	q.Set("limit", strconv.Itoa(c.cfg.Limit))
	u, err := c.client.URL(path, q)
	if err != nil {
		return nil, err
	}
	var recs []*v1.SourceRecord
	for n := 0; ; n++ {
		if n >= c.cfg.MaxPages {
			return nil, conn.TooMany(dept, len(recs))
		}
		doc, err := c.client.GetJSON(ctx, u, accept, nil)
		if err != nil {
			return nil, fmt.Errorf("listing %s features: %w", ds.Name, err)
		}
		m, ok := doc.(map[string]any)
		feats, isArr := m["features"].([]any)
		if !ok || m["type"] != "FeatureCollection" || !isArr && m["features"] != nil {
			return nil, conn.BadData(dept, fmt.Errorf("%s: items response is not a FeatureCollection", ds.Name))
		}
		for _, f := range feats {
			rec, err := feature(ds, d, f)
			if err != nil {
				return nil, conn.BadData(dept, err)
			}
			recs = append(recs, rec)
			if len(recs) > c.cfg.MaxRecords {
				return nil, conn.TooMany(dept, c.cfg.MaxRecords)
			}
		}
		next := nextLink(m)
		if next == "" || len(feats) == 0 {
			return recs, nil
		}
		if u, err = c.client.Resolve(u, next); err != nil {
			return nil, apierr.Unavailable(dept, fmt.Errorf("listing %s features: %w", ds.Name, err))
		}
	}
}

// nextLink returns the href of the rel=next link, preferring GeoJSON.
func nextLink(m map[string]any) string {
	links, _ := m["links"].([]any)
	found := ""
	for _, l := range links {
		lm, _ := l.(map[string]any)
		if lm["rel"] != "next" {
			continue
		}
		href, _ := lm["href"].(string)
		if href == "" {
			continue
		}
		if t, _ := lm["type"].(string); t == "application/geo+json" {
			return href
		}
		if found == "" {
			found = href
		}
	}
	return found
}

// feature turns one GeoJSON feature into a record.
func feature(ds *datasets.Dataset, d *Dataset, doc any) (*v1.SourceRecord, error) {
	m, ok := doc.(map[string]any)
	if !ok || m["type"] != "Feature" {
		return nil, fmt.Errorf("%s: not a GeoJSON Feature", ds.Name)
	}
	props, _ := m["properties"].(map[string]any)
	raw := map[string]any{}
	geo := conn.GeometryField(ds)
	for _, f := range ds.Fields {
		if f.Name == geo {
			if g := m["geometry"]; g != nil {
				raw[f.Name] = g
			}
			continue
		}
		p := f.Name
		if name, ok := d.Properties[f.Name]; ok {
			p = name
		}
		if v, ok := props[p]; ok {
			raw[f.Name] = v
		}
	}
	if d.IDField != "" {
		if _, ok := raw[d.IDField]; !ok && m["id"] != nil {
			raw[d.IDField] = m["id"]
		}
	}
	idv := m["id"]
	if idv == nil && len(ds.Keys) == 1 {
		idv = raw[ds.Keys[0]]
	}
	id, err := conn.IDString(idv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ds.Name, err)
	}
	var updated any
	if d.UpdatedAt != "" {
		updated = props[d.UpdatedAt]
	}
	return conn.Record(ds, id, raw, updated)
}
