// Package postgres is the built-in connector type for department systems
// whose records live in a PostgreSQL database. Every query is written in the
// settings as parameterised SQL; request values only ever travel as bind
// parameters, never as SQL text.
//
// Settings (YAML):
//
//	department: {id: market}
//	dsn_env: MARKET_PG_DSN
//	max_conns: 4
//	max_conn_lifetime: 30m
//	datasets:
//	  market.business_licences:
//	    by_key:
//	      sql: SELECT uscc, ent_name, reg_cap, est_date FROM licences WHERE uscc = $1
//	      params: [credit_code]
//	    columns: {uscc: credit_code, ent_name: name, reg_cap: registered_capital, est_date: established_on}
//	    id_column: uscc
//
// Each query's $n count is checked against its params when the settings are
// loaded, and again with the server's own statement description the first
// time the query runs.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Type is the connector type name in configuration.
const Type = "postgres"

// Connector is a configured PostgreSQL connector. It is safe for concurrent
// use. Close releases its connections.
type Connector struct {
	base conn.Base
	cfg  *Config
	pool *pgxpool.Pool

	mu      sync.Mutex
	checked map[string]bool // SQL text → statement description verified
}

var _ sdk.Connector = (*Connector)(nil)

// Parse decodes YAML settings (unknown keys are errors), applies defaults
// and validates them.
func Parse(settings []byte) (*Config, error) { return conn.Parse[Config](settings) }

// New parses settings and builds the connector. The pool connects lazily: a
// database that is down does not stop the connector from starting.
func New(ctx context.Context, settings []byte) (*Connector, error) {
	cfg, err := Parse(settings)
	if err != nil {
		return nil, fmt.Errorf("postgres connector: %w", err)
	}
	return NewFromConfig(ctx, cfg)
}

// NewFromConfig builds the connector from parsed settings.
func NewFromConfig(ctx context.Context, cfg *Config) (*Connector, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres connector: %w", err)
	}
	dsn := cfg.DSN
	if cfg.DSNEnv != "" {
		if dsn = os.Getenv(cfg.DSNEnv); dsn == "" {
			return nil, fmt.Errorf("postgres connector: dsn_env: environment variable %s is empty or unset", cfg.DSNEnv)
		}
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error may quote the DSN, password included: keep it out.
		return nil, errors.New("postgres connector: dsn: not a valid PostgreSQL connection string")
	}
	pc.MaxConns, pc.MinConns = cfg.MaxConns, cfg.MinConns
	if cfg.MaxConnLifetime > 0 {
		pc.MaxConnLifetime = cfg.MaxConnLifetime
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres connector: creating pool: %w", err)
	}
	c := &Connector{cfg: cfg, pool: pool, checked: map[string]bool{}, base: conn.Base{
		Dept: cfg.Department, Datasets: map[string]*datasets.Dataset{}, Freshness: map[string]time.Duration{},
	}}
	filter := false
	for name, d := range cfg.Datasets {
		ds, _ := conn.Dictionary().Dataset(name)
		c.base.Datasets[name] = ds
		if d.Freshness > 0 {
			c.base.Freshness[name] = d.Freshness
		}
		filter = filter || len(d.ByLookup) > 0
	}
	if filter {
		c.base.Capabilities = []string{"filter"}
	}
	return c, nil
}

// Close closes the pool.
func (c *Connector) Close() { c.pool.Close() }

// Describe returns the department and the dictionary entries of the
// configured datasets.
func (c *Connector) Describe(ctx context.Context) (*v1.Descriptor, error) {
	if err := conn.CtxErr(ctx, c.cfg.Department.ID); err != nil {
		return nil, err
	}
	return c.base.Describe(), nil
}

// Health pings the database.
func (c *Connector) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	if err := c.pool.Ping(ctx); err != nil {
		return conn.Unavailable(ctx, c.cfg.Department.ID, fmt.Errorf("pinging database: %w", err))
	}
	return nil
}

// Fetch runs the by_key query for a key lookup, or a by_lookup query for a
// lookup or filter.
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
	sel, err := conn.Select(ds, req, func(f string) bool { _, ok := d.ByLookup[f]; return ok })
	if err != nil {
		return nil, err
	}
	if sel.Mode == conn.BySpatial {
		return nil, apierr.Invalid("bbox", "department %q cannot search %s by area", dept, ds.Name)
	}
	q := d.route(sel.Values, sel.Mode == conn.ByKey)
	if q == nil {
		fields := make([]string, 0, len(sel.Values))
		for f := range sel.Values {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		return nil, apierr.Invalid("keys."+fields[0], "department %q cannot look up %s by %v", dept, ds.Name, fields)
	}
	recs, err := c.query(ctx, ds, d, q, sel.Values)
	if err != nil {
		return nil, err
	}
	return sel.Finish(recs, req)
}

// route picks the query for the given values: by_key when all keys are
// given, else the first by_lookup query (in field order) whose parameters
// are all given.
func (d *Dataset) route(values map[string]string, byKey bool) *Query {
	if byKey && d.ByKey != nil {
		return d.ByKey
	}
	fields := make([]string, 0, len(values))
	for f := range values {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		q, ok := d.ByLookup[f]
		if !ok {
			continue
		}
		if !slices.ContainsFunc(q.Params, func(p string) bool { _, ok := values[p]; return !ok }) {
			return q
		}
	}
	return nil
}

func (c *Connector) query(ctx context.Context, ds *datasets.Dataset, d *Dataset, q *Query, values map[string]string) ([]*v1.SourceRecord, error) {
	dept := c.cfg.Department.ID
	ctx, cancel := context.WithTimeout(ctx, c.cfg.QueryTimeout)
	defer cancel()
	if err := c.verify(ctx, d, q); err != nil {
		return nil, err
	}
	args := make([]any, len(q.Params))
	for i, p := range q.Params {
		args[i] = values[p]
	}
	rows, err := c.pool.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, c.dbErr(ctx, fmt.Errorf("querying %s: %w", ds.Name, err))
	}
	defer rows.Close()
	cols := rows.FieldDescriptions()
	var recs []*v1.SourceRecord
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, c.dbErr(ctx, fmt.Errorf("reading %s row: %w", ds.Name, err))
		}
		raw := map[string]any{}
		var id, updated any
		for i, fd := range cols {
			v := normalize(vals[i])
			switch fd.Name {
			case d.IDColumn:
				id = v
			case d.UpdatedAtColumn:
				updated = v
			}
			field, ok := d.Columns[fd.Name]
			if !ok && ds.HasField(fd.Name) {
				field = fd.Name
			}
			if field != "" {
				raw[field] = v
			}
		}
		ids, err := conn.IDString(id)
		if err != nil {
			return nil, conn.BadData(dept, fmt.Errorf("%s: id column %s: %w", ds.Name, d.IDColumn, err))
		}
		rec, err := conn.Record(ds, ids, raw, updated)
		if err != nil {
			return nil, conn.BadData(dept, err)
		}
		recs = append(recs, rec)
		if len(recs) > c.cfg.MaxRecords {
			return nil, conn.TooMany(dept, c.cfg.MaxRecords)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, c.dbErr(ctx, fmt.Errorf("reading %s rows: %w", ds.Name, err))
	}
	return recs, nil
}

// verify prepares q once and compares the server's description with the
// settings: the parameter count and the id column.
func (c *Connector) verify(ctx context.Context, d *Dataset, q *Query) error {
	c.mu.Lock()
	ok := c.checked[q.SQL]
	c.mu.Unlock()
	if ok {
		return nil
	}
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return c.dbErr(ctx, fmt.Errorf("acquiring connection: %w", err))
	}
	defer pc.Release()
	sd, err := pc.Conn().Prepare(ctx, "", q.SQL)
	if err != nil {
		return c.dbErr(ctx, fmt.Errorf("preparing query: %w", err))
	}
	dept := c.cfg.Department.ID
	if len(sd.ParamOIDs) != len(q.Params) {
		return conn.Misconfigured(dept, fmt.Errorf("query %q takes %d parameters, params lists %d", q.SQL, len(sd.ParamOIDs), len(q.Params)))
	}
	if !slices.ContainsFunc(sd.Fields, func(f pgconn.FieldDescription) bool { return f.Name == d.IDColumn }) {
		return conn.Misconfigured(dept, fmt.Errorf("query %q returns no id column %q", q.SQL, d.IDColumn))
	}
	c.mu.Lock()
	c.checked[q.SQL] = true
	c.mu.Unlock()
	return nil
}

// dbErr classifies a database error: bad input values are INVALID_ARGUMENT,
// SQL the server rejects is a misconfiguration, everything else (connection
// failures, shutdowns, timeouts) is UNAVAILABLE naming the department.
func (c *Connector) dbErr(ctx context.Context, err error) error {
	dept := c.cfg.Department.ID
	if ctx.Err() != nil {
		return conn.Unavailable(ctx, dept, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "22": // data exception, e.g. a key that is not a valid integer
			return apierr.Newf(codes.InvalidArgument, apierr.ReasonInvalidArgument,
				"department %q cannot read the request's values", dept).With("department", dept).WithCause(err)
		case "42", "0A": // syntax error, undefined table or column, unsupported
			return conn.Misconfigured(dept, err)
		}
	}
	return apierr.Unavailable(dept, err)
}

// normalize turns pgx values the dictionary conversion does not know into
// plain Go values.
func normalize(v any) any {
	switch x := v.(type) {
	case pgtype.Numeric:
		if !x.Valid {
			return nil
		}
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			return nil
		}
		return f.Float64
	case [16]byte: // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	}
	return v
}
