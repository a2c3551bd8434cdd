package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestWindowsMatchMemoryLimiter runs the same sequence against the Redis
// limiter and policy.MemoryLimiter and expects the same answers.
func TestWindowsMatchMemoryLimiter(t *testing.T) {
	srv := testenv.Redis(t)
	// 2026-11-01 15:59:58 UTC is 23:59:58 in China: the day window turns
	// two seconds later.
	start := time.Date(2026, 11, 1, 15, 59, 58, 0, time.UTC)
	type step struct {
		advance        time.Duration
		perMin, perDay int
		want           bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"per minute", []step{
			{0, 2, 0, true}, {0, 2, 0, true}, {0, 2, 0, false}, {0, 2, 0, false},
			{time.Minute, 2, 0, true},
		}},
		{"per day turns at midnight China time", []step{
			{0, 0, 2, true}, {0, 0, 2, true}, {0, 0, 2, false},
			{time.Second, 0, 2, false}, // 23:59:59
			{time.Second, 0, 2, true},  // 00:00:00 next day
		}},
		{"both limits; refused requests are not counted", []step{
			{0, 1, 3, true}, {0, 1, 3, false}, {0, 1, 3, false},
			{time.Minute, 1, 3, true}, // a new minute and a new China day
			{time.Minute, 1, 3, true}, {time.Minute, 1, 3, true},
			{0, 1, 3, false}, {time.Minute, 1, 3, false}, // the day's 3 are used
		}},
		{"no limit", []step{{0, 0, 0, true}, {0, 0, 0, true}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: start}
			l := New(newClient(t, srv.Addr), Options{Now: clk.now, KeyPrefix: "q" + string(rune('a'+i)) + ":"})
			m := policy.NewMemoryLimiter(clk.now)
			now := start
			for j, s := range tc.steps {
				now = now.Add(s.advance)
				clk.set(now)
				got, err := l.Allow(context.Background(), "grant/g1", s.perMin, s.perDay)
				if err != nil {
					t.Fatal(err)
				}
				mem, _ := m.Allow(context.Background(), "grant/g1", s.perMin, s.perDay)
				if got != s.want || mem != s.want {
					t.Fatalf("step %d at %v: redis %v, memory %v, want %v", j, now, got, mem, s.want)
				}
			}
		})
	}
}

// TestSharedAcrossNodes has two "nodes" (limiters with their own clients)
// race for one quota: exactly the limit is let through.
func TestSharedAcrossNodes(t *testing.T) {
	srv := testenv.Redis(t)
	clk := &clock{t: time.Date(2026, 11, 1, 9, 0, 10, 0, time.UTC)}
	nodes := []*Limiter{New(newClient(t, srv.Addr), Options{Now: clk.now}), New(newClient(t, srv.Addr), Options{Now: clk.now})}
	const limit, callers = 20, 60
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(l *Limiter) {
			defer wg.Done()
			ok, err := l.Allow(context.Background(), "grant/shared", limit, 0)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				allowed.Add(1)
			}
		}(nodes[i%2])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != limit {
		t.Fatalf("allowed %d across two nodes, want %d", got, limit)
	}
	// Other keys are independent.
	if ok, err := nodes[0].Allow(context.Background(), "grant/other", limit, 0); err != nil || !ok {
		t.Fatalf("other key: %v, %v", ok, err)
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	srv := testenv.Redis(t)
	l := New(newClient(t, srv.Addr), Options{})
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := l.Allow(ctx, "grant/g1", 5, 0)
	if err == nil || ok {
		t.Fatalf("Allow with Redis down = %v, %v; want an error", ok, err)
	}
	// policy.DecideWithQuota turns it into UNAVAILABLE, not a permission
	// error; a request without quota never touches Redis.
	if ok, err := l.Allow(ctx, "grant/g1", 0, 0); err != nil || !ok {
		t.Fatalf("no quota with Redis down = %v, %v", ok, err)
	}
}
