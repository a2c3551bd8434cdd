package cache

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkFetch measures a memory hit and a Redis hit (open + decode +
// fill memory) against a real redis-server on loopback.
func BenchmarkFetch(b *testing.B) {
	cl := newClusterB(b)
	ctx := context.Background()
	mk := func(maxBytes int64) *Cache {
		c := New(cl.src, Options{MaxBytes: maxBytes, MaxStale: time.Hour, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
			Redis: &RedisOptions{Addrs: []string{cl.redis.Addr}, Keyring: cl.ring}})
		b.Cleanup(func() { c.Close() })
		return c
	}
	filler := mk(1 << 20)
	if _, err := filler.Fetch(ctx, cl.ds, req("91130100MA0G5XKQ2U")); err != nil {
		b.Fatal(err)
	}
	b.Run("memory hit", func(b *testing.B) {
		for b.Loop() {
			if _, err := filler.Fetch(ctx, cl.ds, req("91130100MA0G5XKQ2U")); err != nil {
				b.Fatal(err)
			}
		}
	})
	redisOnly := mk(0) // no memory tier: every fetch reads Redis
	b.Run("redis hit", func(b *testing.B) {
		for b.Loop() {
			if _, err := redisOnly.Fetch(ctx, cl.ds, req("91130100MA0G5XKQ2U")); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := cl.src.calls.Load(); n != 1 {
		b.Fatalf("department calls = %d, want 1", n)
	}
}
