// Package correctiondb is the corrections store (autofill.Store): one table,
// "corrections", either in a SQLite file of its own (one gateway node; the
// pure-Go driver modernc.org/sqlite in WAL mode with a busy timeout) or in
// the PostgreSQL database that holds the grants (several nodes share one
// queue; pgx's database/sql driver). Both run the same statements through
// database/sql; the dialects differ only in placeholders, the collation that
// orders text byte-wise and how a duplicate id is reported.
//
// Ids are chosen by the caller (autofill draws 64 random bits), so nodes
// need no shared sequence; the primary key rejects a duplicate. Resolve is
// one conditional UPDATE: when two nodes resolve the same correction at
// once, exactly one succeeds and the other gets FailedPrecondition.
package correctiondb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"google.golang.org/grpc/codes"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/schemas/apierr"
)

// BusyTimeout is how long a SQLite write waits for another writer's lock.
const BusyTimeout = 10 * time.Second

// MaxOpenConns bounds the connections one Store opens.
const MaxOpenConns = 8

// schemaLock is the PostgreSQL advisory lock key held while creating the
// table, so that nodes starting together do not race ("correct"; the grant
// store's migrations use another key).
const schemaLock = 0x636f7272656374

// schema creates the table and its indexes when missing. BIGINT has integer
// affinity in SQLite, so files made with INTEGER columns read the same.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS corrections (
    id             TEXT PRIMARY KEY,
    form           TEXT NOT NULL,
    field          TEXT NOT NULL,
    applicant_id   TEXT NOT NULL,
    dataset        TEXT NOT NULL,
    source_field   TEXT NOT NULL,
    department     TEXT NOT NULL,
    record_id      TEXT NOT NULL,
    current_value  TEXT NOT NULL,
    proposed_value TEXT NOT NULL,
    comment        TEXT NOT NULL,
    state          TEXT NOT NULL,
    raised_by      TEXT NOT NULL,
    raised_at      BIGINT NOT NULL, -- Unix nanoseconds, UTC
    resolved_by    TEXT NOT NULL DEFAULT '',
    resolved_at    BIGINT NOT NULL DEFAULT 0
)`,
	`CREATE INDEX IF NOT EXISTS corrections_department_state ON corrections (department, state)`,
	`CREATE INDEX IF NOT EXISTS corrections_applicant_state ON corrections (applicant_id, state)`,
}

// dialect is what differs between SQLite and PostgreSQL.
type dialect struct {
	// name names the database in errors.
	name string
	// numbered is true where placeholders are $1, $2, … instead of ?.
	numbered bool
	// collation orders text byte-wise, as Go compares strings.
	collation string
	// lock, when set, runs first in the transaction creating the table.
	lock string
	// duplicate reports a primary key violation.
	duplicate func(error) bool
	// busy, when set, reports that the database was locked by another
	// connection beyond what its busy timeout waits for.
	busy func(error) bool
}

var (
	sqliteDialect = dialect{
		name:      "SQLite",
		collation: "BINARY",
		duplicate: func(err error) bool {
			var e *sqlite.Error
			return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
		},
		busy: func(err error) bool {
			var e *sqlite.Error
			return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
		},
	}
	postgresDialect = dialect{
		name:      "PostgreSQL",
		numbered:  true,
		collation: `"C"`,
		lock:      "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(schemaLock, 10) + ")",
		duplicate: func(err error) bool {
			var e *pgconn.PgError
			return errors.As(err, &e) && e.Code == "23505" // unique_violation
		},
	}
)

// Store is an autofill.Store in SQLite or PostgreSQL.
type Store struct {
	db *sql.DB
	d  dialect
}

var _ autofill.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and creates
// the corrections table if it is missing. The queue is this node's alone.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("opening corrections store: path is empty")
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return open(ctx, sqliteDialect, "sqlite", "file:"+path+"?"+q.Encode(), path)
}

// OpenPostgres connects to the PostgreSQL database at dsn (a URL or
// key=value string; the grant store's DSN) and creates the corrections
// table if it is missing. Every node opening the same database shares one
// queue; nodes may open it concurrently.
func OpenPostgres(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("opening corrections store: PostgreSQL DSN is empty")
	}
	return open(ctx, postgresDialect, "pgx", dsn, "PostgreSQL")
}

// open opens the database and creates the table in one transaction (under
// the dialect's lock). where names the database in errors without
// revealing credentials.
func open(ctx context.Context, d dialect, driver, source, where string) (*Store, error) {
	db, err := sql.Open(driver, source)
	if err != nil {
		return nil, fmt.Errorf("opening corrections store %s: %w", where, err)
	}
	db.SetMaxOpenConns(MaxOpenConns)
	s := &Store{db: db, d: d}
	// A new SQLite database being switched to WAL by another connection
	// can refuse a connection at once, before its busy timeout applies:
	// opening retries for as long as that timeout.
	for deadline := time.Now().Add(BusyTimeout); ; {
		err = s.createTable(ctx)
		if err == nil || d.busy == nil || !d.busy(err) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
			continue
		}
		break
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("creating corrections table in %s: %w", where, err)
	}
	return s, nil
}

func (s *Store) createTable(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmts := schema
	if s.d.lock != "" {
		stmts = append([]string{s.d.lock}, schema...)
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// bind rewrites the ? placeholders of q for the dialect. The statements of
// this package hold no ? inside literals.
func (s *Store) bind(q string) string {
	if !s.d.numbered {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Add implements autofill.Store.
func (s *Store) Add(ctx context.Context, c *autofill.Correction) error {
	_, err := s.db.ExecContext(ctx, s.bind(`INSERT INTO corrections (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.Form, c.Field, c.ApplicantID, c.Dataset, c.SourceField, c.Department, c.RecordID,
		c.CurrentValue, c.ProposedValue, c.Comment, c.State, c.RaisedBy, c.RaisedAt.UnixNano(),
		c.ResolvedBy, nanos(c.ResolvedAt))
	if err != nil {
		if s.d.duplicate(err) {
			return apierr.Newf(codes.AlreadyExists, apierr.ReasonConflict, "correction %q exists already", c.ID)
		}
		return fmt.Errorf("inserting correction %s into %s: %w", c.ID, s.d.name, err)
	}
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

const columns = `id, form, field, applicant_id, dataset, source_field, department, record_id, current_value,
	proposed_value, comment, state, raised_by, raised_at, resolved_by, resolved_at`

func scan(rows interface{ Scan(...any) error }) (*autofill.Correction, error) {
	var c autofill.Correction
	var raised, resolved int64
	if err := rows.Scan(&c.ID, &c.Form, &c.Field, &c.ApplicantID, &c.Dataset, &c.SourceField, &c.Department,
		&c.RecordID, &c.CurrentValue, &c.ProposedValue, &c.Comment, &c.State, &c.RaisedBy, &raised,
		&c.ResolvedBy, &resolved); err != nil {
		return nil, err
	}
	c.RaisedAt = time.Unix(0, raised).UTC()
	if resolved != 0 {
		c.ResolvedAt = time.Unix(0, resolved).UTC()
	}
	return &c, nil
}

// List implements autofill.Store.
func (s *Store) List(ctx context.Context, f autofill.Filter) ([]*autofill.Correction, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"department", f.Department}, {"state", f.State}, {"applicant_id", f.ApplicantID}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	q := "SELECT " + columns + " FROM corrections"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY raised_at, id COLLATE " + s.d.collation
	rows, err := s.db.QueryContext(ctx, s.bind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("listing corrections in %s: %w", s.d.name, err)
	}
	defer rows.Close()
	var out []*autofill.Correction
	for rows.Next() {
		c, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("reading correction: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing corrections in %s: %w", s.d.name, err)
	}
	return out, nil
}

// Resolve implements autofill.Store. The state changes in one conditional
// UPDATE, so of several nodes resolving the same correction at once exactly
// one succeeds; the others get FailedPrecondition. record runs inside the
// transaction, after the UPDATE (whose row lock, or SQLite's write lock,
// holds the other resolvers back) and before COMMIT; when it fails the
// transaction is rolled back.
func (s *Store) Resolve(ctx context.Context, id, by string, at time.Time, record func(*autofill.Correction) error) (*autofill.Correction, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("resolving correction %s: %w", id, err)
	}
	defer tx.Rollback()
	c, err := scan(tx.QueryRowContext(ctx, s.bind(`UPDATE corrections SET state = ?, resolved_by = ?, resolved_at = ?
		WHERE id = ? AND state <> ? RETURNING `+columns),
		autofill.StateResolved, by, nanos(at), id, autofill.StateResolved))
	if errors.Is(err, sql.ErrNoRows) {
		// Nothing changed: the correction is unknown or resolved already
		// (corrections are never deleted, so this answer is final).
		var state string
		err := tx.QueryRowContext(ctx, s.bind(`SELECT state FROM corrections WHERE id = ?`), id).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, autofill.ErrCorrectionNotFound(id)
		}
		if err != nil {
			return nil, fmt.Errorf("reading correction %s: %w", id, err)
		}
		return nil, autofill.ErrAlreadyResolved(id)
	}
	if err != nil {
		return nil, fmt.Errorf("resolving correction %s in %s: %w", id, s.d.name, err)
	}
	if record != nil {
		cp := *c
		if err := record(&cp); err != nil {
			return nil, err // the deferred Rollback undoes the UPDATE
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("resolving correction %s in %s: %w", id, s.d.name, err)
	}
	return c, nil
}

// Counts implements autofill.Store.
func (s *Store) Counts(ctx context.Context) ([]autofill.Count, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT department,
		COUNT(*) FILTER (WHERE state <> 'resolved'),
		COUNT(*) FILTER (WHERE state = 'resolved')
		FROM corrections GROUP BY department ORDER BY department COLLATE `+s.d.collation)
	if err != nil {
		return nil, fmt.Errorf("counting corrections in %s: %w", s.d.name, err)
	}
	defer rows.Close()
	var out []autofill.Count
	for rows.Next() {
		var c autofill.Count
		if err := rows.Scan(&c.Department, &c.Open, &c.Resolved); err != nil {
			return nil, fmt.Errorf("counting corrections: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting corrections in %s: %w", s.d.name, err)
	}
	return out, nil
}
