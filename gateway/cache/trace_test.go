package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tongban/tongban/gateway/telemetry"
)

// tracedFetch runs fn inside a recording request span and returns the
// attributes of the cache.fetch spans it made.
func tracedFetch(t *testing.T, fn func(ctx context.Context)) []map[string]string {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	fn(ctx)
	root.End()
	var out []map[string]string
	for _, s := range rec.Ended() {
		if s.Name() != "cache.fetch" {
			continue
		}
		if s.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("cache.fetch is not a child of the request span")
		}
		a := map[string]string{}
		for _, kv := range s.Attributes() {
			a[string(kv.Key)] = kv.Value.String()
		}
		out = append(out, a)
	}
	return out
}

func TestFetchSpanNamesTheTier(t *testing.T) {
	c, src, _, ds := setup(t)
	cases := []struct {
		name, code           string
		tier, delivery, coal string
	}{
		{"miss", "A", "miss", "live", "false"},
		{"memory hit", "A", "memory", "cache", "false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spans := tracedFetch(t, func(ctx context.Context) {
				if _, err := c.Fetch(ctx, ds, req(tc.code)); err != nil {
					t.Fatal(err)
				}
			})
			if len(spans) != 1 {
				t.Fatalf("%d cache.fetch spans, want 1", len(spans))
			}
			a := spans[0]
			if a[telemetry.AttrTier] != tc.tier || a[telemetry.AttrDelivery] != tc.delivery || a[telemetry.AttrCoalesced] != tc.coal || a[telemetry.AttrDataset] != ds.Name {
				t.Fatalf("attributes = %v, want tier %s delivery %s coalesced %s", a, tc.tier, tc.delivery, tc.coal)
			}
		})
	}

	t.Run("not found", func(t *testing.T) {
		spans := tracedFetch(t, func(ctx context.Context) { _, _ = c.Fetch(ctx, ds, req("missing")) })
		if len(spans) != 1 || spans[0][telemetry.AttrReason] != "NOT_FOUND" {
			t.Fatalf("spans = %v, want one with reason NOT_FOUND", spans)
		}
	})

	t.Run("coalesced", func(t *testing.T) {
		src.gate = make(chan struct{})
		defer func() { src.gate = nil }()
		before := src.calls.Load()
		spans := tracedFetch(t, func(ctx context.Context) {
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = c.Fetch(ctx, ds, req("B"))
				}()
			}
			// Release the department once the callers wait on the one call
			// (bounded, as TestCoalescingWithRedis does).
			deadline := time.Now().Add(10 * time.Second)
			for src.calls.Load() == before && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			close(src.gate)
			wg.Wait()
		})
		coalesced := 0
		for _, a := range spans {
			if a[telemetry.AttrCoalesced] == "true" {
				coalesced++
			}
		}
		if len(spans) != 20 || coalesced < 2 {
			t.Fatalf("%d spans, %d coalesced; want 20 spans with the shared lookup marked", len(spans), coalesced)
		}
	})
}

func TestFetchSpanRedisTier(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, time.Hour), cl.node(t, time.Hour)
	if _, err := a.Fetch(context.Background(), cl.ds, req("91130100MA0G5XKQ2U")); err != nil {
		t.Fatal(err)
	}
	spans := tracedFetch(t, func(ctx context.Context) {
		if _, err := b.Fetch(ctx, cl.ds, req("91130100MA0G5XKQ2U")); err != nil {
			t.Fatal(err)
		}
	})
	if len(spans) != 1 || spans[0][telemetry.AttrTier] != "redis" {
		t.Fatalf("spans = %v, want one answered by the redis tier", spans)
	}
}

func TestFetchUntracedMakesNoSpan(t *testing.T) {
	c, _, _, ds := setup(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	defer root.End()
	if _, err := c.Fetch(ctx, ds, req("A")); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Started()); n != 0 {
		t.Fatalf("an unsampled request started %d spans", n)
	}
}
