package ogcfeatures

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/builtin/internal/httpc"
)

// Defaults of Config.
const (
	DefaultLimit      = 100
	DefaultMaxPages   = 10
	DefaultMaxRecords = 1000
)

// Config is the settings of an ogcfeatures connector.
type Config struct {
	// Department names the department the connector serves.
	Department conn.Department `yaml:"department"`
	// Settings holds base_url (the OGC API landing page), auth, timeout and
	// max_response_bytes.
	httpc.Settings `yaml:",inline"`
	// Limit is the page size asked for with limit= (default 100).
	Limit int `yaml:"limit"`
	// MaxPages caps the rel=next links followed for one request (default 10).
	MaxPages int `yaml:"max_pages"`
	// MaxRecords caps the features collected for one request (default 1000).
	MaxRecords int `yaml:"max_records"`
	// Datasets maps a dataset name of the dictionary to its collection.
	Datasets map[string]*Dataset `yaml:"datasets"`
}

// Dataset maps one dataset to a feature collection.
type Dataset struct {
	// Collection is the collection id, as in /collections/{collection}/items.
	Collection string `yaml:"collection"`
	// IDField is the key field whose value is the feature id, so that a key
	// lookup is GET /collections/{c}/items/{id}. Empty means key lookups go
	// through Filters.
	IDField string `yaml:"id_field"`
	// Properties maps fields to feature property names; fields not listed
	// use the property of the same name. The dataset's geometry field is
	// the feature geometry.
	Properties map[string]string `yaml:"properties"`
	// Filters maps fields to the query parameters the server accepts as
	// property filters (its queryables), e.g. {holder_id: holder_id}.
	Filters map[string]string `yaml:"filters"`
	// UpdatedAt is the property holding the feature's last change time.
	UpdatedAt string `yaml:"updated_at"`
	// Freshness overrides the dictionary's freshness of the dataset.
	Freshness time.Duration `yaml:"freshness"`
}

// SetDefaults fills the settings left empty with their defaults.
func (c *Config) SetDefaults() {
	if c.Limit == 0 {
		c.Limit = DefaultLimit
	}
	if c.MaxPages == 0 {
		c.MaxPages = DefaultMaxPages
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
}

// Validate checks the settings against the dataset dictionary. Errors name
// the key path.
func (c *Config) Validate() error {
	if err := c.Department.Validate(); err != nil {
		return err
	}
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	if c.Limit < 0 || c.MaxPages < 0 || c.MaxRecords < 0 {
		return errors.New("limit, max_pages, max_records: must not be negative")
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
		path := conn.DatasetPath(name)
		ds, err := conn.LookupDataset(c.Department.ID, name)
		if err != nil {
			return err
		}
		d := c.Datasets[name]
		if d == nil {
			return fmt.Errorf("%s: settings are empty", path)
		}
		if d.Collection == "" || strings.ContainsAny(d.Collection, "/?#") {
			return fmt.Errorf("%s.collection: %q must be a collection id", path, d.Collection)
		}
		if d.IDField != "" {
			if len(ds.Keys) != 1 || ds.Keys[0] != d.IDField {
				return fmt.Errorf("%s.id_field: %q must be the single key field of %s (keys: %s)", path, d.IDField, name, strings.Join(ds.Keys, ", "))
			}
		}
		geo := conn.GeometryField(ds)
		for _, f := range sorted(d.Properties) {
			if err := conn.CheckField(ds, path+".properties", f); err != nil {
				return err
			}
			if f == geo {
				return fmt.Errorf("%s.properties.%s: the geometry field is the feature geometry, not a property", path, f)
			}
			if d.Properties[f] == "" {
				return fmt.Errorf("%s.properties.%s: property name is empty", path, f)
			}
		}
		for _, f := range sorted(d.Filters) {
			if err := conn.CheckField(ds, path+".filters", f); err != nil {
				return err
			}
			if f == geo {
				return fmt.Errorf("%s.filters.%s: filter the geometry with bbox or geometry", path, f)
			}
			if q := d.Filters[f]; q == "" || q == "bbox" || q == "limit" || q == "offset" {
				return fmt.Errorf("%s.filters.%s: %q is not a usable query parameter", path, f, q)
			}
		}
		if d.Freshness < 0 {
			return fmt.Errorf("%s.freshness: must not be negative", path)
		}
	}
	return nil
}

func sorted(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
