// Package sqlstore is the embedded grant store: one SQLite file, opened with
// the pure-Go driver modernc.org/sqlite (no cgo), in WAL mode with a busy
// timeout so that readers never block the writer and concurrent writers
// wait instead of failing. Write transactions begin IMMEDIATE, taking the
// write lock up front, so two writers never deadlock upgrading a read lock.
// Migrations are embedded and applied on Open.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tongban/tongban/policy/store"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

//go:embed migrations/*.sql
var migrations embed.FS

// BusyTimeout is how long a write waits for another writer's lock.
const BusyTimeout = 10 * time.Second

// Store is a store.Store in one SQLite file.
type Store struct {
	db *sql.DB
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and applies
// the migrations it lacks.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("opening grant store: path is empty")
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening grant store %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating grant store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with a number", name)
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if err := s.apply(ctx, version, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
	}
	return nil
}

func (s *Store) apply(ctx context.Context, version int, body string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

const columns = `id, version, revision, updated_at, body`

type scanner interface{ Scan(dest ...any) error }

func scan(r scanner) (store.Record, error) {
	var (
		id      string
		rec     store.Record
		updated int64
		body    string
	)
	if err := r.Scan(&id, &rec.Version, &rec.Revision, &updated, &body); err != nil {
		return store.Record{}, err
	}
	g, err := store.Unmarshal([]byte(body))
	if err != nil {
		return store.Record{}, fmt.Errorf("decoding grant %s: %w", id, err)
	}
	rec.Grant = g
	rec.UpdatedAt = time.Unix(0, updated).UTC()
	return rec, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (store.Record, error) {
	rec, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM grants WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, store.NotFound(id)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("reading grant %s: %w", id, err)
	}
	return rec, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) ([]store.Record, error) {
	var where []string
	var args []any
	if f.State != v1.GrantState_GRANT_STATE_UNSPECIFIED {
		where, args = append(where, "state = ?"), append(args, int32(f.State))
	}
	for _, c := range []struct{ col, val string }{{"dataset", f.Dataset}, {"system_id", f.SystemID}, {"department", f.Department}} {
		if c.val != "" {
			where, args = append(where, c.col+" = ?"), append(args, c.val)
		}
	}
	q := `SELECT ` + columns + ` FROM grants`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return s.query(ctx, q+` ORDER BY id`, args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) ([]store.Record, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("listing grants: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	return out, nil
}

// write runs fn in an IMMEDIATE transaction with the next revision.
func (s *Store) write(ctx context.Context, what string, fn func(tx *sql.Tx, rev int64, now time.Time) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	var rev int64
	if err := tx.QueryRowContext(ctx, `UPDATE store_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision`).Scan(&rev); err != nil {
		return fmt.Errorf("%s: advancing revision: %w", what, err)
	}
	if err := fn(tx, rev, time.Now().UTC()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: committing: %w", what, err)
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, g *v1.Grant) (store.Record, error) {
	if err := store.Invalid(g); err != nil {
		return store.Record{}, err
	}
	body, err := store.Marshal(g)
	if err != nil {
		return store.Record{}, fmt.Errorf("encoding grant %s: %w", g.GetId(), err)
	}
	var rec store.Record
	err = s.write(ctx, "creating grant "+g.GetId(), func(tx *sql.Tx, rev int64, now time.Time) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO grants (id, dataset, state, system_id, department, version, revision, updated_at, body)
			VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			g.GetId(), g.GetDataset(), int32(g.GetState()), g.GetConsumer().GetSystemId(), g.GetConsumer().GetDepartment(), rev, now.UnixNano(), string(body))
		if err != nil {
			return fmt.Errorf("creating grant %s: %w", g.GetId(), err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("creating grant %s: %w", g.GetId(), err)
		} else if n == 0 {
			return store.Exists(g.GetId())
		}
		rec = store.Record{Version: 1, Revision: rev, UpdatedAt: time.Unix(0, now.UnixNano()).UTC()}
		return nil
	})
	if err != nil {
		return store.Record{}, err
	}
	rec.Grant, err = store.Unmarshal(body)
	return rec, err
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, g *v1.Grant, version int64) (store.Record, error) {
	if err := store.Invalid(g); err != nil {
		return store.Record{}, err
	}
	body, err := store.Marshal(g)
	if err != nil {
		return store.Record{}, fmt.Errorf("encoding grant %s: %w", g.GetId(), err)
	}
	var rec store.Record
	err = s.write(ctx, "updating grant "+g.GetId(), func(tx *sql.Tx, rev int64, now time.Time) error {
		res, err := tx.ExecContext(ctx, `UPDATE grants SET dataset = ?, state = ?, system_id = ?, department = ?,
			version = version + 1, revision = ?, updated_at = ?, body = ? WHERE id = ? AND version = ?`,
			g.GetDataset(), int32(g.GetState()), g.GetConsumer().GetSystemId(), g.GetConsumer().GetDepartment(),
			rev, now.UnixNano(), string(body), g.GetId(), version)
		if err != nil {
			return fmt.Errorf("updating grant %s: %w", g.GetId(), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("updating grant %s: %w", g.GetId(), err)
		}
		if n == 0 {
			var exists int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM grants WHERE id = ?`, g.GetId()).Scan(&exists); err != nil {
				return fmt.Errorf("updating grant %s: %w", g.GetId(), err)
			}
			if exists == 0 {
				return store.NotFound(g.GetId())
			}
			return store.Conflict(g.GetId())
		}
		rec = store.Record{Version: version + 1, Revision: rev, UpdatedAt: time.Unix(0, now.UnixNano()).UTC()}
		return nil
	})
	if err != nil {
		return store.Record{}, err
	}
	rec.Grant, err = store.Unmarshal(body)
	return rec, err
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.db.QueryRowContext(ctx, `SELECT revision FROM store_revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading grant store revision: %w", err)
	}
	return rev, nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, since int64) ([]store.Record, int64, error) {
	// A read transaction gives one consistent WAL snapshot for both reads.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	defer tx.Rollback()
	var rev int64
	if err := tx.QueryRowContext(ctx, `SELECT revision FROM store_revision WHERE id = 1`).Scan(&rev); err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM grants WHERE revision > ? ORDER BY revision`, since)
	if err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("reading grant changes: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	return out, rev, nil
}
