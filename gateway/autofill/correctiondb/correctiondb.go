// Package correctiondb is the embedded corrections store (autofill.Store):
// one table in a SQLite file, opened with the pure-Go driver
// modernc.org/sqlite in WAL mode with a busy timeout.
package correctiondb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/schemas/apierr"
)

// BusyTimeout is how long a write waits for another writer's lock.
const BusyTimeout = 10 * time.Second

const schema = `CREATE TABLE IF NOT EXISTS corrections (
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
    raised_at      INTEGER NOT NULL, -- Unix nanoseconds, UTC
    resolved_by    TEXT NOT NULL DEFAULT '',
    resolved_at    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS corrections_department_state ON corrections (department, state);
CREATE INDEX IF NOT EXISTS corrections_applicant_state ON corrections (applicant_id, state);`

// Store is an autofill.Store in one SQLite file.
type Store struct {
	db *sql.DB
}

var _ autofill.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and creates
// the corrections table if it is missing.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("opening corrections store: path is empty")
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening corrections store %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating corrections table in %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Add implements autofill.Store.
func (s *Store) Add(ctx context.Context, c *autofill.Correction) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO corrections (id, form, field, applicant_id, dataset, source_field,
		department, record_id, current_value, proposed_value, comment, state, raised_by, raised_at, resolved_by, resolved_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Form, c.Field, c.ApplicantID, c.Dataset, c.SourceField, c.Department, c.RecordID,
		c.CurrentValue, c.ProposedValue, c.Comment, c.State, c.RaisedBy, c.RaisedAt.UnixNano(),
		c.ResolvedBy, nanos(c.ResolvedAt))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return apierr.Newf(codes.AlreadyExists, apierr.ReasonConflict, "correction %q exists already", c.ID)
		}
		return fmt.Errorf("inserting correction %s: %w", c.ID, err)
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
	q += " ORDER BY raised_at, id"
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing corrections: %w", err)
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
		return nil, fmt.Errorf("listing corrections: %w", err)
	}
	return out, nil
}

// Resolve implements autofill.Store.
func (s *Store) Resolve(ctx context.Context, id, by string, at time.Time) (*autofill.Correction, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("resolving correction %s: %w", id, err)
	}
	defer tx.Rollback()
	c, err := scan(tx.QueryRowContext(ctx, "SELECT "+columns+" FROM corrections WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, autofill.ErrCorrectionNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("reading correction %s: %w", id, err)
	}
	if c.State == autofill.StateResolved {
		return nil, autofill.ErrAlreadyResolved(id)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE corrections SET state = ?, resolved_by = ?, resolved_at = ? WHERE id = ?`,
		autofill.StateResolved, by, at.UnixNano(), id); err != nil {
		return nil, fmt.Errorf("resolving correction %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("resolving correction %s: %w", id, err)
	}
	c.State, c.ResolvedBy, c.ResolvedAt = autofill.StateResolved, by, time.Unix(0, at.UnixNano()).UTC()
	return c, nil
}

// Counts implements autofill.Store.
func (s *Store) Counts(ctx context.Context) ([]autofill.Count, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT department,
		SUM(CASE WHEN state = 'resolved' THEN 0 ELSE 1 END),
		SUM(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END)
		FROM corrections GROUP BY department ORDER BY department`)
	if err != nil {
		return nil, fmt.Errorf("counting corrections: %w", err)
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
	return out, rows.Err()
}
