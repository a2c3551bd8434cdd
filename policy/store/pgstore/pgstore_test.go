package pgstore

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/policy/store/storetest"
	"github.com/tongban/tongban/schemas/testenv"
)

// TestConformance runs the store suite against a real PostgreSQL server
// started on loopback; each subtest gets its own database.
func TestConformance(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		db := fmt.Sprintf("grants_%d", n.Add(1))
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatalf("creating database: %v", err)
		}
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parsing DSN: %v", err)
		}
		u.Path = "/" + db
		s, err := Open(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	a, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Create(ctx, storetest.Grant("g-1", "approval.permits", "x")); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer b.Close()
	rec, err := b.Get(ctx, "g-1")
	if err != nil || rec.Revision != 1 {
		t.Fatalf("Get through the second store = %v, %v", rec, err)
	}
}
