package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin/internal/testutil"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

const schema = `
CREATE TABLE licences (
	uscc      text PRIMARY KEY,
	ent_name  text NOT NULL,
	ent_type  text,
	reg_cap   numeric(14,2),
	est_date  date,
	region    text,
	status    text,
	changed   timestamptz
);
INSERT INTO licences VALUES
 ('91130100MA0000001X', '石家庄市甲商贸有限公司', '有限责任公司', 500.50, '2015-03-12', '130102', '存续', '2024-05-01 08:00:00+08'),
 ('91130100MA0000002X', '石家庄市乙科技有限公司', '有限责任公司', 1000, '2018-07-01', '130104', '注销', NULL);
CREATE TABLE certificates (
	cert_no   text PRIMARY KEY,
	parcel    text,
	holder    text,
	holder_id text,
	area      text,
	issued    date
);
INSERT INTO certificates VALUES
 ('冀(2020)石家庄市不动产权第0000001号', '130102001001GB00001', '甲公司', '91130100MA0000001X', '1234.5', '2020-01-02'),
 ('冀(2021)石家庄市不动产权第0000002号', '130102001001GB00002', '甲公司', '91130100MA0000001X', '88', '2021-02-03'),
 ('冀(2022)石家庄市不动产权第0000003号', '130102001001GB00003', '张三', '130102199001011234', '77.25', '2022-03-04');
CREATE TABLE parcels (id text PRIMARY KEY, holder_id text, shape jsonb);
INSERT INTO parcels VALUES ('130102001001GB00001', '91130100MA0000001X',
 '{"type":"Polygon","coordinates":[[[114.5,38.0],[114.51,38.0],[114.51,38.01],[114.5,38.0]]]}');
`

func setup(t *testing.T) string {
	t.Helper()
	dsn := testenv.Postgres(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, stmt := range []string{"DROP TABLE IF EXISTS licences, certificates, parcels", schema} {
		if _, err := pool.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("creating tables: %v", err)
		}
	}
	return dsn
}

func marketSettings(dsn string) string {
	return fmt.Sprintf(`
department: {id: market}
dsn: %q
max_conns: 2
max_conn_lifetime: 5m
datasets:
  market.business_licences:
    by_key:
      sql: |
        SELECT uscc, ent_name, ent_type, reg_cap, est_date, region, status, changed
          FROM licences WHERE uscc = $1 -- the key, never spliced: '$2'
      params: [credit_code]
    by_lookup:
      status:
        sql: SELECT uscc, ent_name, status FROM licences WHERE status = $1 ORDER BY uscc
        params: [status]
    columns: {uscc: credit_code, ent_name: name, ent_type: enterprise_type, reg_cap: registered_capital, est_date: established_on, region: region_code}
    updated_at_column: changed
    freshness: 15m
`, dsn)
}

func resourcesSettings(dsn string) string {
	return fmt.Sprintf(`
department: {id: resources}
dsn: %q
datasets:
  resources.land_use_certificates:
    by_key:
      sql: SELECT cert_no, parcel, holder, holder_id, area, issued FROM certificates WHERE cert_no = $1
      params: [certificate_no]
    by_lookup:
      holder_id:
        sql: SELECT cert_no, parcel, holder, holder_id, area, issued FROM certificates WHERE holder_id = $1 ORDER BY cert_no
        params: [holder_id]
      parcel_id:
        sql: SELECT cert_no, parcel, holder, holder_id, area, issued FROM certificates WHERE parcel = $1
        params: [parcel_id]
    columns: {cert_no: certificate_no, parcel: parcel_id, holder: holder_name, area: area_sqm, issued: issued_on}
  resources.parcels:
    by_key:
      sql: SELECT id, holder_id, shape FROM parcels WHERE id = $1
      params: [parcel_id]
    columns: {id: parcel_id, shape: geometry}
`, dsn)
}

func mustNew(t *testing.T, s string) *Connector {
	t.Helper()
	c, err := New(t.Context(), []byte(s))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func fetch(t *testing.T, c *Connector, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return c.Fetch(ctx, req)
}

func TestPostgres(t *testing.T) {
	dsn := setup(t)
	market := mustNew(t, marketSettings(dsn))
	resources := mustNew(t, resourcesSettings(dsn))

	t.Run("by key", func(t *testing.T) {
		resp, err := fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA0000001X"}})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		r := resp.Records[0]
		f := r.Fields.AsMap()
		want := map[string]any{"credit_code": "91130100MA0000001X", "name": "石家庄市甲商贸有限公司", "enterprise_type": "有限责任公司",
			"registered_capital": 500.5, "established_on": "2015-03-12", "region_code": "130102", "status": "存续"}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("%s = %#v, want %#v", k, f[k], v)
			}
		}
		if len(f) != len(want) {
			t.Errorf("fields = %v", f)
		}
		if r.Id != "91130100MA0000001X" || r.UpdatedAt.AsTime().UTC().Hour() != 0 {
			t.Errorf("id %q updated_at %v", r.Id, r.UpdatedAt.AsTime())
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130100MA0000009X"}})
		testutil.WantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	})
	t.Run("injection attempts are plain values", func(t *testing.T) {
		for _, key := range []string{"' OR 1=1 --", "x'; DROP TABLE licences; --", "91130100MA0000001X' OR '1'='1", "$1", `\'; DELETE FROM licences; --`} {
			_, err := fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": key}})
			testutil.WantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
			_, err = fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": key}})
			if err != nil {
				t.Errorf("filter %q: %v", key, err)
			}
		}
		pool, err := pgxpool.New(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var n int
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM licences").Scan(&n); err != nil || n != 2 {
			t.Fatalf("licences table after injection attempts: %d rows, %v; want 2 rows", n, err)
		}
	})
	t.Run("filter", func(t *testing.T) {
		resp, err := fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "注销"}})
		if err != nil || len(resp.Records) != 1 || resp.Records[0].Id != "91130100MA0000002X" {
			t.Fatalf("filter = %v, %v", resp, err)
		}
		_, err = fetch(t, market, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"name": "x"}})
		testutil.WantCode(t, err, codes.InvalidArgument, "")
	})
	t.Run("lookups", func(t *testing.T) {
		resp, err := fetch(t, resources, &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"holder_id": "91130100MA0000001X"}})
		if err != nil || len(resp.Records) != 2 {
			t.Fatalf("by holder = %v, %v", resp, err)
		}
		if got := resp.Records[0].Fields.Fields["area_sqm"].GetNumberValue(); got != 1234.5 {
			t.Errorf("area_sqm = %v, want the number 1234.5 from text", got)
		}
		resp, err = fetch(t, resources, &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"parcel_id": "130102001001GB00003"}})
		if err != nil || len(resp.Records) != 1 || resp.Records[0].Fields.Fields["holder_name"].GetStringValue() != "张三" {
			t.Fatalf("by parcel = %v, %v", resp, err)
		}
		_, err = fetch(t, resources, &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"holder_id": "NOBODY"}})
		testutil.WantCode(t, err, codes.NotFound, "")
		_, err = fetch(t, resources, &v1.FetchRequest{Dataset: "resources.land_use_certificates", Keys: map[string]string{"address": "x"}})
		testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownField)
	})
	t.Run("geometry from jsonb", func(t *testing.T) {
		resp, err := fetch(t, resources, &v1.FetchRequest{Dataset: "resources.parcels", Keys: map[string]string{"parcel_id": "130102001001GB00001"}})
		if err != nil {
			t.Fatal(err)
		}
		g := resp.Records[0].Fields.Fields["geometry"].GetStructValue().AsMap()
		if g["type"] != "Polygon" {
			t.Errorf("geometry = %v", g)
		}
	})
	t.Run("health", func(t *testing.T) {
		if err := market.Health(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("server rejects the SQL", func(t *testing.T) {
		s := strings.Replace(marketSettings(dsn), "FROM licences WHERE uscc", "FROM licence_typo WHERE uscc", 1)
		_, err := fetch(t, mustNew(t, s), &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "x"}})
		testutil.WantCode(t, err, codes.FailedPrecondition, apierr.ReasonConnectorMisconfig)
	})
	t.Run("id column missing from the result", func(t *testing.T) {
		s := strings.Replace(marketSettings(dsn), "SELECT uscc, ent_name, status FROM", "SELECT ent_name, status FROM", 1)
		_, err := fetch(t, mustNew(t, s), &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}})
		testutil.WantCode(t, err, codes.FailedPrecondition, apierr.ReasonConnectorMisconfig)
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := market.Fetch(ctx, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "x"}})
		testutil.WantCode(t, err, codes.Canceled, "")
	})
	t.Run("slow query past the deadline", func(t *testing.T) {
		s := strings.Replace(marketSettings(dsn), "WHERE status = $1 ORDER BY uscc", "WHERE status = $1 AND pg_sleep(30) IS NOT NULL ORDER BY uscc", 1)
		c := mustNew(t, s)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}})
		testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
	})
	t.Run("conformance", func(t *testing.T) {
		opts := connectortest.Options{Dataset: "market.business_licences", Key: map[string]string{"credit_code": "91130100MA0000002X"}}
		connectortest.Run(t, market, opts)
		connectortest.Run(t, connectortest.InProcess(t, market), opts)
	})
}

func TestDatabaseDown(t *testing.T) {
	port := testenv.FreePort(t)
	c := mustNew(t, marketSettings(fmt.Sprintf("postgres://nobody@127.0.0.1:%d/x?connect_timeout=2", port)))
	_, err := fetch(t, c, &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "x"}})
	e := testutil.WantCode(t, err, codes.Unavailable, apierr.ReasonDepartmentDown)
	if e.Meta["department"] != "market" {
		t.Errorf("meta = %v", e.Meta)
	}
	testutil.WantCode(t, c.Health(t.Context()), codes.Unavailable, "")
}

func TestParseErrors(t *testing.T) {
	base := marketSettings("postgres://u@127.0.0.1:1/db")
	tests := []struct{ from, to, want string }{
		{"WHERE uscc = $1", "WHERE uscc = $1 AND status = $2", `datasets["market.business_licences"].by_key.sql: uses 2 parameters ($1..$2) but params lists 1 fields`},
		{"WHERE uscc = $1", "WHERE uscc = $2", "parameter $1 is not used"},
		{"params: [credit_code]", "params: [name]", `by_key.params: [name] must name the key fields [credit_code]`},
		{"params: [status]", "params: [colour]", `by_lookup.status.params[0]: "colour" is not a field`},
		{"uscc: credit_code,", "uscc: uscc,", `columns.uscc: "uscc" is not a field`},
		{"max_conns: 2", "max_conns: 2\nmin_conns: 3", "min_conns"},
		{"max_conns: 2", "max_conns: 2\ndsn_env: X", "dsn, dsn_env: give exactly one"},
		{"max_conns: 2", "max_conn: 2", "field max_conn not found"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			in := strings.Replace(base, tt.from, tt.to, 1)
			if in == base {
				t.Fatalf("replacement %q did not apply", tt.from)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want %q", err, tt.want)
			}
		})
	}
	_, err := New(t.Context(), []byte(strings.Replace(base, `dsn: "postgres://u@127.0.0.1:1/db"`, "dsn_env: TONGBAN_TEST_UNSET_DSN", 1)))
	if err == nil || !strings.Contains(err.Error(), "TONGBAN_TEST_UNSET_DSN") {
		t.Errorf("New with unset dsn_env: %v", err)
	}
}

func TestCountParams(t *testing.T) {
	tests := []struct {
		sql  string
		want int
		ok   bool
	}{
		{"SELECT 1", 0, true},
		{"SELECT * FROM t WHERE a = $1 AND b = $2", 2, true},
		{"SELECT * FROM t WHERE a = $1 OR b = $1", 1, true},
		{"SELECT '$2' FROM t WHERE a = $1", 1, true},
		{`SELECT "$2" FROM t WHERE a = $1`, 1, true},
		{"SELECT 'it''s $3' FROM t WHERE a = $1", 1, true},
		{"SELECT $$ $4 $$ FROM t WHERE a = $1", 1, true},
		{"SELECT $tag$ $4 $tag$ FROM t WHERE a = $1", 1, true},
		{"SELECT a FROM t -- $3\nWHERE a = $1", 1, true},
		{"SELECT a /* $3 */ FROM t WHERE a = $1", 1, true},
		{"SELECT a FROM t WHERE a = $1 AND b = $3", 0, false},
		{"SELECT 'open", 0, false},
		{"SELECT $0", 0, false},
		{"SELECT a FROM t WHERE a = $10", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			n, err := CountParams(tt.sql)
			if (err == nil) != tt.ok || (tt.ok && n != tt.want) {
				t.Fatalf("CountParams = %d, %v; want %d ok=%v", n, err, tt.want, tt.ok)
			}
		})
	}
}
