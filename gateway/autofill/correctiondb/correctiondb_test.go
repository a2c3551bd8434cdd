package correctiondb

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/autofill/correctiontest"
	"github.com/tongban/tongban/policy/store/pgstore"
	"github.com/tongban/tongban/policy/store/storetest"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/testenv"
)

// backend makes fresh databases of one kind. fresh creates one new, empty
// database and returns a function opening a handle on it: two handles on
// the same fresh database are two gateway nodes sharing a queue.
type backend struct {
	name  string
	fresh func(t *testing.T) opener
	// freshDSN, for PostgreSQL only, creates a new database and returns
	// its DSN.
	freshDSN func(t *testing.T) string
}

// opener opens a new handle on one database.
type opener func(ctx context.Context) (*Store, error)

// node opens a handle, failing the test on error, and closes it when the
// test ends.
func (o opener) node(t *testing.T) *Store {
	t.Helper()
	s, err := o(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteBackend() backend {
	return backend{name: "sqlite", fresh: func(t *testing.T) opener {
		path := filepath.Join(t.TempDir(), "corrections.db")
		return func(ctx context.Context) (*Store, error) { return Open(ctx, path) }
	}}
}

// postgresBackend starts one PostgreSQL cluster for the test; every fresh
// call creates a database of its own in it. The databases order text by
// ICU's root locale ("a" < "A" < "b"), as a production database made with
// a national locale would, not byte-wise as the test cluster's C locale.
func postgresBackend(t *testing.T) backend {
	dsn := testenv.Postgres(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() { admin.Close() })
	var n atomic.Int64
	freshDSN := func(t *testing.T) string {
		db := fmt.Sprintf("corrections_%d", n.Add(1))
		if _, err := admin.ExecContext(context.Background(),
			"CREATE DATABASE "+db+" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'"); err != nil {
			t.Fatalf("creating database: %v", err)
		}
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parsing DSN: %v", err)
		}
		u.Path = "/" + db
		return u.String()
	}
	return backend{name: "postgres", freshDSN: freshDSN, fresh: func(t *testing.T) opener {
		dsn := freshDSN(t)
		return func(ctx context.Context) (*Store, error) { return OpenPostgres(ctx, dsn) }
	}}
}

// TestStores runs every test below against SQLite and a real PostgreSQL
// server on loopback (one cluster for the whole run, a database per
// subtest).
func TestStores(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"conformance", testConformance},
		{"shared queue", testSharedQueue},
		{"open concurrently", testOpenConcurrently},
		{"order is bytewise", testOrderIsBytewise},
	}
	for _, b := range []backend{sqliteBackend(), postgresBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, b) })
			}
			if b.freshDSN != nil {
				t.Run("beside grants", func(t *testing.T) { testBesideGrants(t, b.freshDSN(t)) })
			}
		})
	}
}

// testConformance runs the autofill.Store suite; each of its subtests gets
// an empty database.
func testConformance(t *testing.T, b backend) {
	correctiontest.Run(t, func(t *testing.T) autofill.Store { return b.fresh(t).node(t) })
}

func correction(id, dep string, at time.Time) *autofill.Correction {
	return &autofill.Correction{ID: id, Form: "food_business_licence", Field: "premises_area",
		ApplicantID: "91130109MAAY40HT30", Dataset: dep + ".x", SourceField: "area_sqm", Department: dep,
		RecordID: "r-" + id, CurrentValue: "24490.8", ProposedValue: "24000", State: autofill.StateOpen,
		RaisedBy: "approval-bureau", RaisedAt: at}
}

// testSharedQueue opens two handles ("nodes") on one database: what one
// raises the other lists and counts, and of many resolvers of the same
// correction racing across both nodes exactly one wins.
func testSharedQueue(t *testing.T, b backend) {
	const (
		corrections = 10
		resolvers   = 8 // per correction, half on each node
	)
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := b.fresh(t)
	nodes := []*Store{open.node(t), open.node(t)}

	for i := range corrections {
		if err := nodes[i%2].Add(ctx, correction(fmt.Sprintf("c%02d", i), "resources", base.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[1].Add(ctx, correction("c00", "market", base)); apierr.CodeOf(err) != codes.AlreadyExists {
		t.Errorf("duplicate id through the other node: err = %v, want AlreadyExists", err)
	}
	for n, s := range nodes {
		got, err := s.List(ctx, autofill.Filter{Department: "resources"})
		if err != nil || len(got) != corrections {
			t.Fatalf("node %d lists %d corrections, %v; want %d", n, len(got), err, corrections)
		}
	}

	type result struct {
		by  string
		res *autofill.Correction
		err error
	}
	results := make([][]result, corrections)
	// records counts the record calls per correction: the audit record
	// is written only by the resolver that resolves it.
	records := make([]atomic.Int32, corrections)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range corrections {
		results[i] = make([]result, resolvers)
		for r := range resolvers {
			wg.Go(func() {
				<-start
				by := fmt.Sprintf("desk-%d", r)
				c, err := nodes[r%2].Resolve(ctx, fmt.Sprintf("c%02d", i), by, base.Add(time.Hour), func(*autofill.Correction) error {
					records[i].Add(1)
					return nil
				})
				results[i][r] = result{by: by, res: c, err: err}
			})
		}
	}
	close(start)
	wg.Wait()

	for i, rs := range results {
		id := fmt.Sprintf("c%02d", i)
		var winner string
		for _, r := range rs {
			switch {
			case r.err == nil:
				if winner != "" {
					t.Errorf("%s resolved twice: by %s and %s", id, winner, r.by)
				}
				winner = r.by
				if r.res.State != autofill.StateResolved || r.res.ResolvedBy != r.by || !r.res.ResolvedAt.Equal(base.Add(time.Hour)) {
					t.Errorf("%s: winner got %+v", id, r.res)
				}
			case apierr.CodeOf(r.err) != codes.FailedPrecondition:
				t.Errorf("%s: loser %s got %v, want FailedPrecondition", id, r.by, r.err)
			}
		}
		if winner == "" {
			t.Errorf("%s: nobody resolved it", id)
			continue
		}
		if n := records[i].Load(); n != 1 {
			t.Errorf("%s: record called %d times across the nodes, want once (by the winner)", id, n)
		}
		for n, s := range nodes {
			got, err := s.List(ctx, autofill.Filter{Department: "resources", State: autofill.StateResolved})
			if err != nil {
				t.Fatal(err)
			}
			if !containsResolved(got, id, winner) {
				t.Errorf("node %d does not show %s resolved by %s", n, id, winner)
			}
		}
	}
	for n, s := range nodes {
		counts, err := s.Counts(ctx)
		want := []autofill.Count{{Department: "resources", Resolved: corrections}}
		if err != nil || fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Errorf("node %d counts = %v, %v; want %v", n, counts, err, want)
		}
	}
}

func containsResolved(cs []*autofill.Correction, id, by string) bool {
	for _, c := range cs {
		if c.ID == id {
			return c.State == autofill.StateResolved && c.ResolvedBy == by
		}
	}
	return false
}

// testOpenConcurrently opens several nodes on one new database at once:
// creating the table is idempotent and does not race.
func testOpenConcurrently(t *testing.T, b backend) {
	const nodes = 6
	open := b.fresh(t)
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = open(context.Background()) })
	}
	wg.Wait()
	for _, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	ctx := context.Background()
	if err := stores[0].Add(ctx, correction("c1", "market", time.Unix(1700000000, 0).UTC())); err != nil {
		t.Fatal(err)
	}
	if got, err := stores[nodes-1].List(ctx, autofill.Filter{}); err != nil || len(got) != 1 {
		t.Fatalf("list through the last node = %v, %v", got, err)
	}
}

// testOrderIsBytewise checks that ids tied on RaisedAt come back in Go's
// string order (upper case before lower case), whatever the database's
// collation.
func testOrderIsBytewise(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.fresh(t).node(t)
	at := time.Unix(1700000000, 0).UTC()
	for _, id := range []string{"b", "B", "a", "A"} {
		if err := s.Add(ctx, correction(id, "market", at)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dep := range []string{"b", "B", "a"} {
		if err := s.Add(ctx, correction("dep-"+dep, dep, at)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, autofill.Filter{Department: "market"})
	if err != nil {
		t.Fatal(err)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids, deps []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	for _, c := range counts {
		deps = append(deps, c.Department)
	}
	for _, c := range []struct {
		what string
		got  []string
		want string
	}{{"list order", ids, "[A B a b]"}, {"count order", deps, "[B a b market]"}} {
		if fmt.Sprint(c.got) != c.want {
			t.Errorf("%s = %v, want %s", c.what, c.got, c.want)
		}
	}
}

// testBesideGrants opens the queue in the database of the PostgreSQL grant
// store, as a multi-node gateway does: the two coexist in either order.
func testBesideGrants(t *testing.T, dsn string) {
	ctx := context.Background()
	open := opener(func(ctx context.Context) (*Store, error) { return OpenPostgres(ctx, dsn) })
	q1 := open.node(t)
	grants, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer grants.Close()
	if _, err := grants.Create(ctx, storetest.Grant("g-1", "approval.permits", "x")); err != nil {
		t.Fatal(err)
	}
	q2 := open.node(t)
	if err := q1.Add(ctx, correction("c1", "market", time.Unix(1700000000, 0).UTC())); err != nil {
		t.Fatal(err)
	}
	if got, err := q2.List(ctx, autofill.Filter{}); err != nil || len(got) != 1 {
		t.Fatalf("list = %v, %v", got, err)
	}
	if _, err := grants.Get(ctx, "g-1"); err != nil {
		t.Fatalf("grant after the queue opened: %v", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "corrections.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c := &autofill.Correction{ID: "c1", Form: "f", Field: "x", ApplicantID: "a", Dataset: "d", Department: "market",
		State: autofill.StateOpen, RaisedAt: time.Unix(1700000000, 5).UTC()}
	if err := s.Add(ctx, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.List(ctx, autofill.Filter{})
	if err != nil || len(got) != 1 || *got[0] != *c {
		t.Fatalf("after reopen: %v, %v", got, err)
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		open func() (*Store, error)
	}{
		{"empty path", func() (*Store, error) { return Open(ctx, "") }},
		{"empty DSN", func() (*Store, error) { return OpenPostgres(ctx, "") }},
		{"bad DSN", func() (*Store, error) { return OpenPostgres(ctx, "postgres://%zz") }},
		{"directory as file", func() (*Store, error) { return Open(ctx, t.TempDir()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.open()
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
		})
	}
}
