package postgres

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/schemas/datasets"
)

// Defaults of Config.
const (
	DefaultMaxConns     = 4
	DefaultQueryTimeout = 10 * time.Second
	DefaultMaxRecords   = 1000
)

// Config is the settings of a postgres connector.
type Config struct {
	// Department names the department the connector serves.
	Department conn.Department `yaml:"department"`
	// DSN is the connection string (URL or key=value form).
	DSN string `yaml:"dsn"`
	// DSNEnv names an environment variable holding the connection string,
	// so that the password need not be written in configuration.
	DSNEnv string `yaml:"dsn_env"`
	// MaxConns caps the pool (default 4).
	MaxConns int32 `yaml:"max_conns"`
	// MinConns is kept open (default 0).
	MinConns int32 `yaml:"min_conns"`
	// MaxConnLifetime closes connections older than this (default pgx's 1h).
	MaxConnLifetime time.Duration `yaml:"max_conn_lifetime"`
	// QueryTimeout bounds each query (default 10s); a shorter deadline of the
	// caller wins.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// MaxRecords caps the rows read for one request (default 1000).
	MaxRecords int `yaml:"max_records"`
	// Datasets maps a dataset name of the dictionary to its queries.
	Datasets map[string]*Dataset `yaml:"datasets"`
}

// Query is parameterised SQL and the fields that feed its parameters, in
// order: params[0] is $1.
type Query struct {
	// SQL is one SELECT statement with positional parameters $1..$n.
	SQL string `yaml:"sql"`
	// Params names the field whose request value feeds each parameter.
	Params []string `yaml:"params"`
}

// Dataset says how one dataset is queried.
type Dataset struct {
	// ByKey selects a record by all key fields of the dataset.
	ByKey *Query `yaml:"by_key"`
	// ByLookup selects records by one field (a lookup field, or any field a
	// filter may name): field → query.
	ByLookup map[string]*Query `yaml:"by_lookup"`
	// Columns maps result columns to fields; a column named like a field
	// needs no entry.
	Columns map[string]string `yaml:"columns"`
	// IDColumn is the column holding the record's identifier (default: the
	// column of the single key field).
	IDColumn string `yaml:"id_column"`
	// UpdatedAtColumn is the column holding the record's last change time.
	UpdatedAtColumn string `yaml:"updated_at_column"`
	// Freshness overrides the dictionary's freshness of the dataset.
	Freshness time.Duration `yaml:"freshness"`
}

// SetDefaults fills the settings left empty with their defaults.
func (c *Config) SetDefaults() {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	for name, d := range c.Datasets {
		if d == nil || d.IDColumn != "" {
			continue
		}
		if ds, ok := conn.Dictionary().Dataset(name); ok && len(ds.Keys) == 1 {
			d.IDColumn = d.columnOf(ds.Keys[0])
		}
	}
}

// columnOf returns the column mapped to field, or the field name itself.
func (d *Dataset) columnOf(field string) string {
	for col, f := range d.Columns {
		if f == field {
			return col
		}
	}
	return field
}

// Validate checks the settings against the dataset dictionary; it counts
// each query's $n parameters against its params. Errors name the key path.
func (c *Config) Validate() error {
	if err := c.Department.Validate(); err != nil {
		return err
	}
	if (c.DSN == "") == (c.DSNEnv == "") {
		return errors.New("dsn, dsn_env: give exactly one")
	}
	if c.MaxConns < 1 || c.MinConns < 0 || c.MinConns > c.MaxConns {
		return errors.New("max_conns, min_conns: need 0 <= min_conns <= max_conns and max_conns >= 1")
	}
	if c.MaxConnLifetime < 0 || c.QueryTimeout < 0 || c.MaxRecords < 0 {
		return errors.New("max_conn_lifetime, query_timeout, max_records: must not be negative")
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
	if d.ByKey == nil && len(d.ByLookup) == 0 {
		return fmt.Errorf("%s: give by_key, by_lookup or both", path)
	}
	if d.ByKey != nil {
		if err := checkQuery(ds, path+".by_key", d.ByKey); err != nil {
			return err
		}
		got, want := slices.Clone(d.ByKey.Params), slices.Clone(ds.Keys)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(slices.Compact(got), want) {
			return fmt.Errorf("%s.by_key.params: %v must name the key fields %v", path, d.ByKey.Params, ds.Keys)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(d.ByLookup)) {
		lp := fmt.Sprintf("%s.by_lookup.%s", path, f)
		if err := conn.CheckField(ds, path+".by_lookup", f); err != nil {
			return err
		}
		q := d.ByLookup[f]
		if q == nil {
			return fmt.Errorf("%s: query is empty", lp)
		}
		if err := checkQuery(ds, lp, q); err != nil {
			return err
		}
		if !slices.Contains(q.Params, f) {
			return fmt.Errorf("%s.params: %v must include %s", lp, q.Params, f)
		}
	}
	for _, col := range slices.Sorted(maps.Keys(d.Columns)) {
		if err := conn.CheckField(ds, fmt.Sprintf("%s.columns.%s", path, col), d.Columns[col]); err != nil {
			return err
		}
	}
	if d.IDColumn == "" {
		return fmt.Errorf("%s.id_column: must be set, %s has %d key fields", path, name, len(ds.Keys))
	}
	if d.Freshness < 0 {
		return fmt.Errorf("%s.freshness: must not be negative", path)
	}
	return nil
}

func checkQuery(ds *datasets.Dataset, path string, q *Query) error {
	if strings.TrimSpace(q.SQL) == "" {
		return fmt.Errorf("%s.sql: must be set", path)
	}
	for i, p := range q.Params {
		if err := conn.CheckField(ds, fmt.Sprintf("%s.params[%d]", path, i), p); err != nil {
			return err
		}
	}
	n, err := CountParams(q.SQL)
	if err != nil {
		return fmt.Errorf("%s.sql: %w", path, err)
	}
	if n != len(q.Params) {
		return fmt.Errorf("%s.sql: uses %d parameters ($1..$%d) but params lists %d fields", path, n, n, len(q.Params))
	}
	return nil
}

// CountParams returns n for SQL using the positional parameters $1..$n,
// skipping string literals, quoted identifiers, dollar-quoted strings and
// comments. A gap ($1 and $3 without $2) is an error.
func CountParams(sql string) (int, error) {
	seen := map[int]bool{}
	maxN := 0
	for i := 0; i < len(sql); i++ {
		switch ch := sql[i]; {
		case ch == '\'' || ch == '"':
			j := i + 1
			for ; j < len(sql); j++ {
				if sql[j] == ch {
					if j+1 < len(sql) && sql[j+1] == ch { // doubled quote
						j++
						continue
					}
					break
				}
			}
			if j >= len(sql) {
				return 0, fmt.Errorf("unterminated %c quote", ch)
			}
			i = j
		case ch == '-' && strings.HasPrefix(sql[i:], "--"):
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				i = len(sql)
			} else {
				i += j
			}
		case ch == '/' && strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return 0, errors.New("unterminated comment")
			}
			i += j + 3
		case ch == '$':
			j := i + 1
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			if j > i+1 {
				n := 0
				for _, d := range sql[i+1 : j] {
					n = n*10 + int(d-'0')
					if n > 1000 {
						return 0, errors.New("parameter number too large")
					}
				}
				if n == 0 {
					return 0, errors.New("$0 is not a parameter")
				}
				seen[n] = true
				maxN = max(maxN, n)
				i = j - 1
				continue
			}
			// Dollar-quoted string: $tag$ ... $tag$.
			k := j
			for k < len(sql) && (sql[k] == '_' || sql[k] >= 'a' && sql[k] <= 'z' || sql[k] >= 'A' && sql[k] <= 'Z' || sql[k] >= '0' && sql[k] <= '9') {
				k++
			}
			if k < len(sql) && sql[k] == '$' {
				tag := sql[i : k+1]
				end := strings.Index(sql[k+1:], tag)
				if end < 0 {
					return 0, fmt.Errorf("unterminated %s string", tag)
				}
				i = k + 1 + end + len(tag) - 1
			}
		}
	}
	for n := 1; n <= maxN; n++ {
		if !seen[n] {
			return 0, fmt.Errorf("parameter $%d is not used", n)
		}
	}
	return maxN, nil
}
