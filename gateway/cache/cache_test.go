package cache

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// fakeSource counts calls; while gate is non-nil each call waits on it.
type fakeSource struct {
	calls atomic.Int64
	gate  chan struct{}
	err   atomic.Pointer[error]
	name  string
}

func (f *fakeSource) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if e := f.err.Load(); e != nil {
		return nil, *e
	}
	if req.GetKeys()["credit_code"] == "missing" {
		return nil, apierr.New(codes.NotFound, apierr.ReasonNotFound, "no such licence")
	}
	fields, _ := structpb.NewStruct(map[string]any{"credit_code": req.GetKeys()["credit_code"], "name": f.name})
	return &v1.FetchResponse{Records: []*v1.SourceRecord{{Id: req.GetKeys()["credit_code"], Fields: fields}}}, nil
}

func (f *fakeSource) fail(err error) { f.err.Store(&err) }
func (f *fakeSource) heal()          { f.err.Store(nil) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func setup(t *testing.T) (*Cache, *fakeSource, *clock, *datasets.Dataset) {
	t.Helper()
	src := &fakeSource{name: "v1"}
	clk := &clock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}
	c := New(src, Options{MaxBytes: 1 << 20, MaxStale: time.Hour, NegativeTTL: time.Minute, Now: clk.now})
	ds, _ := datasets.Default().Dataset("market.business_licences")
	return c, src, clk, ds
}

func req(code string) *v1.FetchRequest {
	return &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": code}}
}

func TestHitAfterFill(t *testing.T) {
	c, src, _, ds := setup(t)
	ctx := context.Background()
	r1, err := c.Fetch(ctx, ds, req("A"))
	if err != nil || r1.Delivery != v1.Delivery_DELIVERY_LIVE {
		t.Fatalf("first fetch = %v, %v; want live", r1.Delivery, err)
	}
	r2, err := c.Fetch(ctx, ds, req("A"))
	if err != nil || r2.Delivery != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("second fetch = %v, %v; want cache", r2.Delivery, err)
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("department calls = %d, want 1", got)
	}
}

func TestCoalescing(t *testing.T) {
	c, src, _, ds := setup(t)
	src.gate = make(chan struct{})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	started := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			_, err := c.Fetch(context.Background(), ds, req("B"))
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		<-started
	}
	// Let the goroutines reach the singleflight group before releasing.
	deadline := time.Now().Add(5 * time.Second)
	for src.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("department calls = %d, want 1 for %d concurrent misses", got, n)
	}
}

func TestStaleIfErrorAndNoCorruption(t *testing.T) {
	c, src, clk, ds := setup(t)
	ctx := context.Background()
	if _, err := c.Fetch(ctx, ds, req("C")); err != nil {
		t.Fatal(err)
	}
	clk.add(ds.Freshness + time.Minute) // expired, within MaxStale
	src.fail(apierr.Unavailable("market", errors.New("connection refused")))
	r, err := c.Fetch(ctx, ds, req("C"))
	if err != nil || r.Delivery != v1.Delivery_DELIVERY_STALE {
		t.Fatalf("fetch with department down = %v, %v; want stale", r.Delivery, err)
	}
	if r.Records[0].GetFields().GetFields()["name"].GetStringValue() != "v1" {
		t.Fatalf("stale record corrupted: %v", r.Records[0])
	}
	clk.add(2 * time.Hour) // beyond MaxStale
	_, err = c.Fetch(ctx, ds, req("C"))
	if apierr.CodeOf(err) != codes.Unavailable {
		t.Fatalf("beyond max_stale: err = %v, want UNAVAILABLE", err)
	}
	src.heal()
	src.name = "v2"
	r, err = c.Fetch(ctx, ds, req("C"))
	if err != nil || r.Delivery != v1.Delivery_DELIVERY_LIVE || r.Records[0].GetFields().GetFields()["name"].GetStringValue() != "v2" {
		t.Fatalf("after recovery = %v, %v", r, err)
	}
}

func TestNegativeCaching(t *testing.T) {
	c, src, clk, ds := setup(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Fetch(ctx, ds, req("missing")); apierr.CodeOf(err) != codes.NotFound {
			t.Fatalf("err = %v, want NOT_FOUND", err)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("department calls = %d, want 1 (not-found cached)", got)
	}
	clk.add(2 * time.Minute)
	_, _ = c.Fetch(ctx, ds, req("missing"))
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("department calls = %d, want 2 after the negative TTL", got)
	}
}

func TestInvalidate(t *testing.T) {
	c, src, _, ds := setup(t)
	ctx := context.Background()
	_, _ = c.Fetch(ctx, ds, req("D"))
	if n := c.Invalidate(&v1.ChangeEvent{Dataset: ds.Name, RecordId: "D"}); n != 1 {
		t.Fatalf("evicted %d, want 1", n)
	}
	r, _ := c.Fetch(ctx, ds, req("D"))
	if r.Delivery != v1.Delivery_DELIVERY_LIVE || src.calls.Load() != 2 {
		t.Fatalf("after invalidation delivery = %v calls = %d", r.Delivery, src.calls.Load())
	}
}

func TestLRUBoundedByBytes(t *testing.T) {
	evicted := 0
	l := newLRU(1000, func(string) { evicted++ })
	for i := 0; i < 10; i++ {
		l.put(string(rune('a'+i)), &entry{data: make([]byte, 100)})
	}
	if l.bytes() > 1000 {
		t.Fatalf("size %d exceeds bound", l.bytes())
	}
	if evicted == 0 {
		t.Fatal("nothing evicted")
	}
	if _, ok := l.get("a"); ok {
		t.Fatal("least recently used entry still present")
	}
}

func TestWaitEndsWithTheCallersContextError(t *testing.T) {
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		code   codes.Code
		reason string
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, codes.Canceled, apierr.ReasonCanceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(0, 0))
		}, codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, src, _, ds := setup(t)
			src.gate = make(chan struct{})
			defer close(src.gate)
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := c.Fetch(ctx, ds, req("C"))
			if apierr.CodeOf(err) != tt.code || apierr.ReasonOf(err) != tt.reason {
				t.Fatalf("err = %v (%v %s), want %v %s", err, apierr.CodeOf(err), apierr.ReasonOf(err), tt.code, tt.reason)
			}
		})
	}
}

// TestLRUKeepsWhatIsUsed: an entry hit since it was stored is kept for a
// second round of the list, outliving entries stored after it but not hit,
// and is evicted in its turn once its use is spent.
func TestLRUKeepsWhatIsUsed(t *testing.T) {
	var evicted []string
	size := (&entry{data: make([]byte, 10)}).size()
	l := newLRU(3*size, func(k string) { evicted = append(evicted, k) })
	put := func(keys ...string) {
		for _, k := range keys {
			l.put(k, &entry{data: make([]byte, 10)})
		}
	}
	put("a", "b", "c")
	if _, ok := l.get("a"); !ok {
		t.Fatal("a missing")
	}
	put("d", "e", "f")
	if !slices.Equal(evicted, []string{"b", "c", "d"}) {
		t.Fatalf("evicted %q, want b, c and d: a was used", evicted)
	}
	put("g")
	if !slices.Equal(evicted, []string{"b", "c", "d", "a"}) {
		t.Fatalf("evicted %q, then a, its use spent", evicted)
	}
}
