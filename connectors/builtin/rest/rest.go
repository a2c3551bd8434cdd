// Package rest is the built-in connector type for department systems that
// speak REST/JSON. It is configured, not programmed: per dataset a path
// template for key lookups, an optional list endpoint for lookups and
// filters with pagination, and JSON pointers (RFC 6901) from the
// department's JSON to the fields of the dataset dictionary.
//
// Settings (YAML):
//
//	department: {id: market, name: 市场监督管理局}
//	base_url: https://scjg.example.gov.cn
//	auth: {bearer_token_env: MARKET_TOKEN}
//	timeout: 5s
//	max_response_bytes: 1048576
//	health_path: /healthz
//	datasets:
//	  market.business_licences:
//	    get: /api/v1/licences/{credit_code}
//	    record: /data
//	    id: /uscc
//	    fields: {credit_code: /uscc, name: /entName, registered_capital: /regCap}
//	    list:
//	      path: /api/v1/licences
//	      params: {name: entName}
//	      items: /data/items
//	      paging: {style: page, page_param: page, size_param: size, size: 50, total: /data/total}
//	watch:                    # optional: the change feed, see Watch
//	  path: /api/v1/changes
//	  wait_param: wait
//	  items: /changes
//	  cursor: /last_seq
//	  event: {keys: {credit_code: /credit_code}}
//
// With watch settings the connector advertises the "watch" capability and
// its Watch method long-polls the department's change feed.
//
// The connector never follows a redirect to another host, never splices
// request input into a URL unescaped, and refuses responses larger than
// max_response_bytes.
package rest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/builtin/internal/httpc"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Type is the connector type name in configuration.
const Type = "rest"

const accept = "application/json"

// Connector is a configured REST connector. It is safe for concurrent use.
type Connector struct {
	base   conn.Base
	cfg    *Config
	client *httpc.Client
	sets   map[string]*compiled
	watch  *watcher // nil without watch settings
}

var _ sdk.Connector = (*Connector)(nil)

type compiled struct {
	ds                  *datasets.Dataset
	cfg                 *Dataset
	record, id, updated conn.Pointer
	fields              map[string]conn.Pointer
	items, next, total  conn.Pointer
}

// Parse decodes YAML settings (unknown keys are errors), applies defaults
// and validates them.
func Parse(settings []byte) (*Config, error) { return conn.Parse[Config](settings) }

// New parses settings and builds the connector. It does not contact the
// department: a department that is down does not stop the connector from
// starting.
func New(_ context.Context, settings []byte) (*Connector, error) {
	cfg, err := Parse(settings)
	if err != nil {
		return nil, fmt.Errorf("rest connector: %w", err)
	}
	return NewFromConfig(cfg)
}

// NewFromConfig builds the connector from parsed settings.
func NewFromConfig(cfg *Config) (*Connector, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rest connector: %w", err)
	}
	client, err := httpc.New(cfg.Department.ID, cfg.Settings)
	if err != nil {
		return nil, fmt.Errorf("rest connector: %w", err)
	}
	c := &Connector{
		cfg:    cfg,
		client: client,
		sets:   map[string]*compiled{},
		base:   conn.Base{Dept: cfg.Department, Datasets: map[string]*datasets.Dataset{}, Freshness: map[string]time.Duration{}},
	}
	filters := false
	for name, d := range cfg.Datasets {
		ds, _ := conn.Dictionary().Dataset(name)
		cd := &compiled{
			ds:      ds,
			cfg:     d,
			record:  conn.MustPointer(d.Record),
			updated: conn.MustPointer(d.UpdatedAt),
			fields:  map[string]conn.Pointer{},
		}
		for _, f := range ds.Fields {
			ptr, ok := d.Fields[f.Name]
			if !ok {
				ptr = "/" + escapeToken(f.Name)
			}
			cd.fields[f.Name] = conn.MustPointer(ptr)
		}
		if d.ID != "" {
			cd.id = conn.MustPointer(d.ID)
		} else {
			cd.id = cd.fields[ds.Keys[0]]
		}
		if l := d.List; l != nil {
			cd.items = conn.MustPointer(l.Items)
			cd.next = conn.MustPointer(l.Paging.Next)
			cd.total = conn.MustPointer(l.Paging.Total)
			filters = true
		}
		c.sets[name] = cd
		c.base.Datasets[name] = ds
		if d.Freshness > 0 {
			c.base.Freshness[name] = d.Freshness
		}
	}
	if filters {
		c.base.Capabilities = []string{"filter"}
	}
	if cfg.Watch != nil {
		if c.watch, err = newWatcher(cfg, c.base.Datasets); err != nil {
			return nil, fmt.Errorf("rest connector: %w", err)
		}
		c.base.Capabilities = append(c.base.Capabilities, "watch")
	}
	return c, nil
}

func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Describe returns the department and the dictionary entries of the
// configured datasets.
func (c *Connector) Describe(ctx context.Context) (*v1.Descriptor, error) {
	if err := conn.CtxErr(ctx, c.cfg.Department.ID); err != nil {
		return nil, err
	}
	return c.base.Describe(), nil
}

// Health requests the health path (or the base URL) and expects a 2xx
// answer.
func (c *Connector) Health(ctx context.Context) error {
	return c.client.Health(ctx, c.cfg.HealthPath)
}

// Fetch reads records by key (the get template, or the list endpoint), by
// lookup or by filter (the list endpoint).
func (c *Connector) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	dept := c.cfg.Department.ID
	if err := conn.CtxErr(ctx, dept); err != nil {
		return nil, err
	}
	ds, err := c.base.Dataset(req.GetDataset())
	if err != nil {
		return nil, err
	}
	d := c.sets[ds.Name]
	sel, err := conn.Select(ds, req, func(f string) bool {
		_, ok := d.listParam(f)
		return ok
	})
	if err != nil {
		return nil, err
	}
	var recs []*v1.SourceRecord
	switch {
	case sel.Mode == conn.BySpatial:
		return nil, apierr.Invalid("bbox", "department %q cannot search %s by area", dept, ds.Name)
	case sel.Mode == conn.ByKey && d.cfg.Get != "":
		recs, err = c.get(ctx, d, sel)
	default:
		recs, err = c.list(ctx, d, sel)
	}
	if err != nil {
		return nil, err
	}
	return sel.Finish(recs, req)
}

func (d *compiled) listParam(field string) (string, bool) {
	if d.cfg.List == nil {
		return "", false
	}
	p, ok := d.cfg.List.Params[field]
	return p, ok
}

// expand fills the path template with escaped key values.
func expand(tmpl string, keys map[string]string) (string, error) {
	var bad error
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		v := keys[m[1:len(m)-1]]
		if v == "." || v == ".." {
			bad = apierr.Invalid("keys."+m[1:len(m)-1], "%q is not a valid key value", v)
		}
		return url.PathEscape(v)
	})
	return out, bad
}

func (c *Connector) get(ctx context.Context, d *compiled, sel *conn.Selection) ([]*v1.SourceRecord, error) {
	dept := c.cfg.Department.ID
	p, err := expand(d.cfg.Get, sel.Values)
	if err != nil {
		return nil, err
	}
	u, err := c.client.URL(p, nil)
	if err != nil {
		return nil, err
	}
	doc, err := c.client.GetJSON(ctx, u, accept, d.cfg.NotFoundStatus)
	if errors.Is(err, httpc.ErrNotFound) {
		return nil, conn.NotFound(d.ds.Name, sel.Values)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching %s by key: %w", d.ds.Name, err)
	}
	obj, ok := d.record.Eval(doc)
	if !ok || obj == nil {
		// A department that answers 200 with an empty envelope has no record.
		return nil, conn.NotFound(d.ds.Name, sel.Values)
	}
	rec, err := d.build(obj)
	if err != nil {
		return nil, conn.BadData(dept, err)
	}
	return []*v1.SourceRecord{rec}, nil
}

// build turns one department JSON object into a record.
func (d *compiled) build(obj any) (*v1.SourceRecord, error) {
	if _, ok := obj.(map[string]any); !ok {
		return nil, fmt.Errorf("%s: record is a %T, not an object", d.ds.Name, obj)
	}
	raw := make(map[string]any, len(d.fields))
	for name, ptr := range d.fields {
		if v, ok := ptr.Eval(obj); ok {
			raw[name] = v
		}
	}
	idv, _ := d.id.Eval(obj)
	id, err := conn.IDString(idv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.ds.Name, err)
	}
	var updated any
	if !d.updated.IsRoot() {
		updated, _ = d.updated.Eval(obj)
	}
	return conn.Record(d.ds, id, raw, updated)
}

func (c *Connector) list(ctx context.Context, d *compiled, sel *conn.Selection) ([]*v1.SourceRecord, error) {
	dept := c.cfg.Department.ID
	l := d.cfg.List
	q := url.Values{}
	for f, v := range sel.Values {
		p, ok := d.listParam(f)
		if !ok {
			return nil, apierr.Invalid("keys."+f, "department %q cannot look up %s by %s", dept, d.ds.Name, f)
		}
		q.Set(p, v)
	}
	pg := l.Paging
	page, offset := *pg.FirstPage, 0
	var recs []*v1.SourceRecord
	seen := 0
	u, err := c.client.URL(l.Path, nil)
	if err != nil {
		return nil, err
	}
	next := u
	for n := 0; ; n++ {
		if n >= c.cfg.MaxPages {
			return nil, conn.TooMany(dept, len(recs))
		}
		if n == 0 || d.next.IsRoot() {
			pq := url.Values{}
			for k, vs := range q {
				pq[k] = vs
			}
			switch pg.Style {
			case "page":
				pq.Set(pg.PageParam, strconv.Itoa(page))
				pq.Set(pg.SizeParam, strconv.Itoa(pg.Size))
			case "offset":
				pq.Set(pg.OffsetParam, strconv.Itoa(offset))
				pq.Set(pg.SizeParam, strconv.Itoa(pg.Size))
			}
			if next, err = c.client.URL(l.Path, pq); err != nil {
				return nil, err
			}
		}
		doc, err := c.client.GetJSON(ctx, next, accept, d.cfg.NotFoundStatus)
		if errors.Is(err, httpc.ErrNotFound) {
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", d.ds.Name, err)
		}
		itemsv, ok := d.items.Eval(doc)
		items, isArr := itemsv.([]any)
		if !ok || (itemsv != nil && !isArr) {
			return nil, conn.BadData(dept, fmt.Errorf("%s: no array at %q", d.ds.Name, l.Items))
		}
		for _, it := range items {
			rec, err := d.build(it)
			if err != nil {
				return nil, conn.BadData(dept, err)
			}
			recs = append(recs, rec)
			if len(recs) > c.cfg.MaxRecords {
				return nil, conn.TooMany(dept, c.cfg.MaxRecords)
			}
		}
		seen += len(items)
		if !d.next.IsRoot() {
			link, _ := d.next.Eval(doc)
			s, _ := link.(string)
			if s == "" {
				return recs, nil
			}
			if next, err = c.client.Resolve(next, s); err != nil {
				return nil, apierr.Unavailable(dept, fmt.Errorf("listing %s: %w", d.ds.Name, err))
			}
			continue
		}
		if pg.Style == "none" || len(items) == 0 {
			return recs, nil
		}
		if !d.total.IsRoot() {
			tv, ok := d.total.Eval(doc)
			total, err := conn.Number(tv)
			if !ok || err != nil {
				return nil, conn.BadData(dept, fmt.Errorf("%s: no total at %q", d.ds.Name, pg.Total))
			}
			if float64(seen) >= total {
				return recs, nil
			}
		} else if len(items) < pg.Size {
			return recs, nil
		}
		page++
		offset += len(items)
	}
}
