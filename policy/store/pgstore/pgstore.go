// Package pgstore is the grant store for several gateway nodes: PostgreSQL
// through pgx's connection pool. Every write takes a row lock on the one
// revision counter in its transaction, so writes are serialized and
// revisions are handed out in commit order (a reader polling Revision never
// misses a change); grant writes are rare enough for that to cost nothing.
// Migrations are embedded and applied on Open under an advisory lock, so
// nodes starting together do not race.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tongban/tongban/policy/store"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key held while migrating.
const migrationLock = 0x746f6e6762616e // "tongban"

// Store is a store.Store in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string) and applies the migrations it lacks.
func Open(ctx context.Context, dsn string) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening grant store: %w", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrating grant store: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
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
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&done); err != nil {
			return err
		}
		if done {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

const columns = `id, version, revision, updated_at, body::text`

func scan(r pgx.Row) (store.Record, error) {
	var (
		id   string
		rec  store.Record
		body string
	)
	if err := r.Scan(&id, &rec.Version, &rec.Revision, &rec.UpdatedAt, &body); err != nil {
		return store.Record{}, err
	}
	g, err := store.Unmarshal([]byte(body))
	if err != nil {
		return store.Record{}, fmt.Errorf("decoding grant %s: %w", id, err)
	}
	rec.Grant = g
	rec.UpdatedAt = rec.UpdatedAt.UTC()
	return rec, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (store.Record, error) {
	rec, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM grants WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
	add := func(col string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if f.State != v1.GrantState_GRANT_STATE_UNSPECIFIED {
		add("state", int32(f.State))
	}
	if f.Dataset != "" {
		add("dataset", f.Dataset)
	}
	if f.SystemID != "" {
		add("system_id", f.SystemID)
	}
	if f.Department != "" {
		add("department", f.Department)
	}
	q := `SELECT ` + columns + ` FROM grants`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	recs, err := collect(s.pool.Query(ctx, q+` ORDER BY id`, args...))
	if err != nil {
		return nil, fmt.Errorf("listing grants: %w", err)
	}
	return recs, nil
}

func collect(rows pgx.Rows, err error) ([]store.Record, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// write runs fn in a transaction holding the next revision.
func (s *Store) write(ctx context.Context, what string, fn func(tx pgx.Tx, rev int64, now time.Time) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback(ctx)
	var rev int64
	if err := tx.QueryRow(ctx, `UPDATE store_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision`).Scan(&rev); err != nil {
		return fmt.Errorf("%s: advancing revision: %w", what, err)
	}
	if err := fn(tx, rev, time.Now().UTC().Truncate(time.Microsecond)); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
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
	err = s.write(ctx, "creating grant "+g.GetId(), func(tx pgx.Tx, rev int64, now time.Time) error {
		tag, err := tx.Exec(ctx, `INSERT INTO grants (id, dataset, state, system_id, department, version, revision, updated_at, body)
			VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8::jsonb) ON CONFLICT (id) DO NOTHING`,
			g.GetId(), g.GetDataset(), int32(g.GetState()), g.GetConsumer().GetSystemId(), g.GetConsumer().GetDepartment(), rev, now, string(body))
		if err != nil {
			return fmt.Errorf("creating grant %s: %w", g.GetId(), err)
		}
		if tag.RowsAffected() == 0 {
			return store.Exists(g.GetId())
		}
		rec = store.Record{Version: 1, Revision: rev, UpdatedAt: now}
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
	err = s.write(ctx, "updating grant "+g.GetId(), func(tx pgx.Tx, rev int64, now time.Time) error {
		tag, err := tx.Exec(ctx, `UPDATE grants SET dataset = $1, state = $2, system_id = $3, department = $4,
			version = version + 1, revision = $5, updated_at = $6, body = $7::jsonb WHERE id = $8 AND version = $9`,
			g.GetDataset(), int32(g.GetState()), g.GetConsumer().GetSystemId(), g.GetConsumer().GetDepartment(),
			rev, now, string(body), g.GetId(), version)
		if err != nil {
			return fmt.Errorf("updating grant %s: %w", g.GetId(), err)
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM grants WHERE id = $1)`, g.GetId()).Scan(&exists); err != nil {
				return fmt.Errorf("updating grant %s: %w", g.GetId(), err)
			}
			if !exists {
				return store.NotFound(g.GetId())
			}
			return store.Conflict(g.GetId())
		}
		rec = store.Record{Version: version + 1, Revision: rev, UpdatedAt: now}
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
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM store_revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading grant store revision: %w", err)
	}
	return rev, nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, since int64) ([]store.Record, int64, error) {
	// REPEATABLE READ: both reads see one snapshot.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	defer tx.Rollback(ctx)
	var rev int64
	if err := tx.QueryRow(ctx, `SELECT revision FROM store_revision WHERE id = 1`).Scan(&rev); err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	recs, err := collect(tx.Query(ctx, `SELECT `+columns+` FROM grants WHERE revision > $1 ORDER BY revision`, since))
	if err != nil {
		return nil, 0, fmt.Errorf("reading grant changes: %w", err)
	}
	return recs, rev, nil
}
