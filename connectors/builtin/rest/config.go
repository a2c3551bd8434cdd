package rest

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/builtin/internal/httpc"
	"github.com/tongban/tongban/schemas/datasets"
)

// Defaults of Config.
const (
	DefaultMaxPages   = 10
	DefaultMaxRecords = 1000
	DefaultPageSize   = 50
)

// Config is the settings of a rest connector.
type Config struct {
	// Department names the department the connector serves.
	Department conn.Department `yaml:"department"`
	// Settings holds base_url, auth, timeout and max_response_bytes.
	httpc.Settings `yaml:",inline"`
	// HealthPath is requested by Health, expecting a 2xx answer; empty means
	// the base URL itself.
	HealthPath string `yaml:"health_path"`
	// MaxPages caps the pages followed for one list request (default 10).
	MaxPages int `yaml:"max_pages"`
	// MaxRecords caps the records collected for one request (default 1000).
	MaxRecords int `yaml:"max_records"`
	// Datasets maps a dataset name of the dictionary to how it is fetched.
	Datasets map[string]*Dataset `yaml:"datasets"`
	// Watch, when set, is the department's change feed; the connector then
	// advertises the "watch" capability (see watch.go).
	Watch *Watch `yaml:"watch"`
}

// Dataset says how one dataset is fetched.
type Dataset struct {
	// Get is the path template of a key lookup, e.g.
	// "/api/v1/licences/{credit_code}"; placeholders are key fields, filled
	// in with url.PathEscape.
	Get string `yaml:"get"`
	// Record is a JSON pointer to the record object in a Get response;
	// empty means the whole body.
	Record string `yaml:"record"`
	// List is the list endpoint used for lookups and filters.
	List *List `yaml:"list"`
	// ID is a JSON pointer to the record's identifier; default the pointer
	// of the single key field.
	ID string `yaml:"id"`
	// Fields maps record fields to JSON pointers into a record object.
	// Fields not listed are read from "/<field name>".
	Fields map[string]string `yaml:"fields"`
	// UpdatedAt is a JSON pointer to the record's last change time.
	UpdatedAt string `yaml:"updated_at"`
	// NotFoundStatus lists the HTTP statuses meaning "no such record"
	// (default [404]).
	NotFoundStatus []int `yaml:"not_found_status"`
	// Freshness overrides the dictionary's freshness of the dataset.
	Freshness time.Duration `yaml:"freshness"`
}

// List is a list endpoint with query parameters and pagination.
type List struct {
	// Path is the endpoint path, e.g. "/api/v1/permits".
	Path string `yaml:"path"`
	// Params maps fields to query parameters, e.g. {applicant_id: applicant_id}.
	// Only these fields can be looked up or filtered on.
	Params map[string]string `yaml:"params"`
	// Items is a JSON pointer to the array of records; empty means the body
	// is the array.
	Items string `yaml:"items"`
	// Paging says how to ask for further pages.
	Paging Paging `yaml:"paging"`
}

// Paging describes a list endpoint's pagination.
type Paging struct {
	// Style is "none" (default), "page" (page number and size) or "offset"
	// (offset and limit).
	Style string `yaml:"style"`
	// PageParam is the page number parameter (style page, default "page").
	PageParam string `yaml:"page_param"`
	// FirstPage is the number of the first page (default 1).
	FirstPage *int `yaml:"first_page"`
	// SizeParam is the page size parameter (style page, default
	// "page_size"; style offset, default "limit").
	SizeParam string `yaml:"size_param"`
	// OffsetParam is the offset parameter (style offset, default "offset").
	OffsetParam string `yaml:"offset_param"`
	// Size is the page size asked for (default 50).
	Size int `yaml:"size"`
	// Next is a JSON pointer to the URL of the next page; when set it is
	// followed (same host only) instead of counting pages.
	Next string `yaml:"next"`
	// Total is a JSON pointer to the total number of matching records; when
	// absent, paging stops at the first short page.
	Total string `yaml:"total"`
}

var placeholder = regexp.MustCompile(`\{([^{}]*)\}`)

// SetDefaults fills the settings left empty with their defaults.
func (c *Config) SetDefaults() {
	if c.MaxPages == 0 {
		c.MaxPages = DefaultMaxPages
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.Watch != nil {
		c.Watch.defaults()
	}
	for _, d := range c.Datasets {
		if d == nil {
			continue
		}
		if len(d.NotFoundStatus) == 0 {
			d.NotFoundStatus = []int{http.StatusNotFound}
		}
		if l := d.List; l != nil {
			p := &l.Paging
			if p.Style == "" {
				p.Style = "none"
			}
			if p.Size == 0 {
				p.Size = DefaultPageSize
			}
			if p.FirstPage == nil {
				one := 1
				p.FirstPage = &one
			}
			switch p.Style {
			case "page":
				p.PageParam = cmp(p.PageParam, "page")
				p.SizeParam = cmp(p.SizeParam, "page_size")
			case "offset":
				p.OffsetParam = cmp(p.OffsetParam, "offset")
				p.SizeParam = cmp(p.SizeParam, "limit")
			}
		}
	}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Validate checks the settings against the dataset dictionary. Errors name
// the key path, e.g. datasets["market.business_licences"].fields.name.
func (c *Config) Validate() error {
	if err := c.Department.Validate(); err != nil {
		return err
	}
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	if c.HealthPath != "" && !strings.HasPrefix(c.HealthPath, "/") {
		return fmt.Errorf("health_path: %q must start with \"/\"", c.HealthPath)
	}
	if c.MaxPages < 0 || c.MaxRecords < 0 {
		return errors.New("max_pages, max_records: must not be negative")
	}
	if len(c.Datasets) == 0 {
		return errors.New("datasets: at least one dataset must be configured")
	}
	names := make([]string, 0, len(c.Datasets))
	for n := range c.Datasets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := c.validateDataset(name, c.Datasets[name]); err != nil {
			return err
		}
	}
	if c.Watch != nil {
		if err := c.Watch.validate(names); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateDataset(name string, d *Dataset) error {
	path := conn.DatasetPath(name)
	ds, err := conn.LookupDataset(c.Department.ID, name)
	if err != nil {
		return err
	}
	if d == nil {
		return fmt.Errorf("%s: settings are empty", path)
	}
	if d.Get == "" && d.List == nil {
		return fmt.Errorf("%s: give get, list or both", path)
	}
	if d.Get != "" {
		if err := checkTemplate(ds, path+".get", d.Get); err != nil {
			return err
		}
	}
	for _, p := range []struct{ key, ptr string }{{"record", d.Record}, {"id", d.ID}, {"updated_at", d.UpdatedAt}} {
		if _, err := conn.ParsePointer(p.ptr); err != nil {
			return fmt.Errorf("%s.%s: %w", path, p.key, err)
		}
	}
	if d.ID == "" && len(ds.Keys) != 1 {
		return fmt.Errorf("%s.id: must be set, %s has %d key fields", path, name, len(ds.Keys))
	}
	for _, f := range slices.Sorted(maps.Keys(d.Fields)) {
		if err := conn.CheckField(ds, path+".fields", f); err != nil {
			return err
		}
		ptr := d.Fields[f]
		if _, err := conn.ParsePointer(ptr); err != nil || ptr == "" {
			if err == nil {
				err = errors.New("JSON pointer must not be empty")
			}
			return fmt.Errorf("%s.fields.%s: %w", path, f, err)
		}
	}
	for _, s := range d.NotFoundStatus {
		if s < 400 || s > 499 {
			return fmt.Errorf("%s.not_found_status: %d is not a 4xx status", path, s)
		}
	}
	if d.Freshness < 0 {
		return fmt.Errorf("%s.freshness: must not be negative", path)
	}
	if l := d.List; l != nil {
		lp := path + ".list"
		if !strings.HasPrefix(l.Path, "/") {
			return fmt.Errorf("%s.path: %q must start with \"/\"", lp, l.Path)
		}
		if strings.ContainsAny(l.Path, "{}") {
			return fmt.Errorf("%s.path: %q must not hold placeholders", lp, l.Path)
		}
		if len(l.Params) == 0 {
			return fmt.Errorf("%s.params: map at least one field to a query parameter", lp)
		}
		for _, f := range slices.Sorted(maps.Keys(l.Params)) {
			if err := conn.CheckField(ds, lp+".params", f); err != nil {
				return err
			}
			if l.Params[f] == "" {
				return fmt.Errorf("%s.params.%s: query parameter name is empty", lp, f)
			}
		}
		if _, err := conn.ParsePointer(l.Items); err != nil {
			return fmt.Errorf("%s.items: %w", lp, err)
		}
		p := l.Paging
		pp := lp + ".paging"
		if !slices.Contains([]string{"none", "page", "offset"}, p.Style) {
			return fmt.Errorf("%s.style: %q is not one of none, page, offset", pp, p.Style)
		}
		if p.Size < 0 {
			return fmt.Errorf("%s.size: must not be negative", pp)
		}
		for _, q := range []struct{ key, ptr string }{{"next", p.Next}, {"total", p.Total}} {
			if _, err := conn.ParsePointer(q.ptr); err != nil {
				return fmt.Errorf("%s.%s: %w", pp, q.key, err)
			}
		}
		if p.Style == "none" && p.Total != "" {
			return fmt.Errorf("%s.total: needs style page or offset", pp)
		}
	}
	return nil
}

func checkTemplate(ds *datasets.Dataset, path, tmpl string) error {
	if !strings.HasPrefix(tmpl, "/") {
		return fmt.Errorf("%s: %q must start with \"/\"", path, tmpl)
	}
	if strings.Contains(tmpl, "?") {
		return fmt.Errorf("%s: %q must not hold a query", path, tmpl)
	}
	rest := placeholder.ReplaceAllString(tmpl, "")
	if strings.ContainsAny(rest, "{}") {
		return fmt.Errorf("%s: %q has an unbalanced brace", path, tmpl)
	}
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		if !slices.Contains(ds.Keys, m[1]) {
			return fmt.Errorf("%s: placeholder {%s} is not a key field of %s (keys: %s)", path, m[1], ds.Name, strings.Join(ds.Keys, ", "))
		}
	}
	return nil
}
