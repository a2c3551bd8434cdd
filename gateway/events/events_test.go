package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/events"
	"github.com/tongban/tongban/gateway/events/eventstest"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var quiet = slog.New(slog.DiscardHandler)

// collector records the values a subscription received.
type collector struct {
	mu   sync.Mutex
	got  []string
	seen map[string]int
	ch   chan struct{}
}

func newCollector() *collector { return &collector{seen: map[string]int{}, ch: make(chan struct{}, 1)} }

func (c *collector) handle(_ context.Context, m events.Message) error {
	c.mu.Lock()
	c.got = append(c.got, string(m.Value))
	c.seen[string(m.Value)]++
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
	return nil
}

// waitFor waits, bounded by timeout, until every value was received.
func (c *collector) waitFor(t *testing.T, timeout time.Duration, values ...string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		missing := ""
		for _, v := range values {
			if c.seen[v] == 0 {
				missing = v
				break
			}
		}
		c.mu.Unlock()
		if missing == "" {
			return
		}
		select {
		case <-c.ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("value %q not received within %v", missing, timeout)
		}
	}
}

func (c *collector) values() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// conformance is what every Bus does.
func conformance(t *testing.T, newBus func(t *testing.T) events.Bus) {
	ctx := context.Background()
	t.Run("every group gets every event in key order", func(t *testing.T) {
		bus := newBus(t)
		a, b := newCollector(), newCollector()
		stopA, err := bus.Subscribe(ctx, "t1", "node-a", a.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer stopA()
		stopB, err := bus.Subscribe(ctx, "t1", "node-b", b.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer stopB()
		want := values("ev", 30)
		for _, v := range want {
			if err := bus.Publish(ctx, "t1", []byte("same-key"), []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []*collector{a, b} {
			c.waitFor(t, 30*time.Second, want...)
			if got := c.values(); fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
				t.Fatalf("order = %v, want %v", got, want)
			}
		}
	})
	t.Run("stop ends delivery", func(t *testing.T) {
		bus := newBus(t)
		c := newCollector()
		stop, err := bus.Subscribe(ctx, "t2", "node-a", c.handle)
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(ctx, "t2", nil, []byte("before")); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, 30*time.Second, "before")
		stop()
		if err := bus.Publish(ctx, "t2", nil, []byte("after")); err != nil {
			t.Fatal(err)
		}
		// A later subscriber of another group sees "after": it was
		// published; the stopped one must not have.
		d := newCollector()
		stop2, err := bus.Subscribe(ctx, "t2", "node-b", d.handle)
		if err != nil {
			t.Fatal(err)
		}
		defer stop2()
		if err := bus.Publish(ctx, "t2", nil, []byte("marker")); err != nil {
			t.Fatal(err)
		}
		d.waitFor(t, 30*time.Second, "marker")
		for _, v := range c.values() {
			if v != "before" {
				t.Fatalf("stopped subscription received %q", v)
			}
		}
	})
	t.Run("grant changes reach every node", func(t *testing.T) {
		bus := newBus(t)
		pub := &events.GrantBus{Bus: bus, Group: "node-a", Logger: quiet}
		sub := &events.GrantBus{Bus: bus, Group: "node-b", Logger: quiet}
		got := make(chan policy.Change, 10)
		unsub := sub.Subscribe(func(_ context.Context, c policy.Change) { got <- c })
		defer unsub()
		if err := pub.Publish(ctx, policy.Change{GrantID: "g-17", Revision: 42}); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c.GrantID != "g-17" || c.Revision != 42 {
				t.Fatalf("got %+v", c)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("grant change not delivered")
		}
	})
	t.Run("relay publishes department changes", func(t *testing.T) {
		bus := newBus(t)
		got := make(chan *v1.ChangeEvent, 10)
		stop, err := events.SubscribeChanges(ctx, bus, "node-a", func(_ context.Context, ev *v1.ChangeEvent) error {
			got <- ev
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		src := &fakeWatch{events: []*v1.ChangeEvent{
			{Dataset: "approval.permits", RecordId: "P-1", Op: "upsert", Keys: map[string]string{"permit_no": "冀审批〔2026〕1号"}},
			{Dataset: "approval.permits", RecordId: "P-2", Op: "delete"},
		}}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- (&events.Relay{Source: src, Bus: bus, Logger: quiet}).Run(rctx) }()
		for i := 0; i < 2; i++ {
			select {
			case ev := <-got:
				if ev.GetRecordId() != src.events[i].GetRecordId() || ev.GetKeys()["permit_no"] != src.events[i].GetKeys()["permit_no"] {
					t.Fatalf("event %d = %v", i, ev)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("relayed event not delivered")
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("relay returned %v", err)
		}
	})
}

// fakeWatch sends its events once, then waits for ctx.
type fakeWatch struct {
	events []*v1.ChangeEvent
}

func (f *fakeWatch) Watch(ctx context.Context, _ []string, fn func(*v1.ChangeEvent) error) error {
	for _, ev := range f.events {
		if err := fn(ev); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestMemory(t *testing.T) {
	conformance(t, func(t *testing.T) events.Bus {
		b := events.NewMemory(quiet)
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func newKafka(t *testing.T, addrs []string, topics ...string) *events.Kafka {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := events.NewKafka(ctx, events.KafkaOptions{Brokers: addrs, Topics: topics, Logger: quiet, SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	conformance(t, func(t *testing.T) events.Bus {
		b := eventstest.StartKafka(t)
		return newKafka(t, b.Addrs(), "t1", "t2", events.TopicGrants, events.TopicChanges)
	})
}

// TestKafkaBrokerRestart stops the broker mid-run and restarts it on the same
// port: everything published before the stop and after the restart reaches
// every node.
func TestKafkaBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	broker := eventstest.StartKafka(t)
	pub := newKafka(t, broker.Addrs(), events.TopicChanges)
	nodeA, nodeB := newKafka(t, broker.Addrs()), newKafka(t, broker.Addrs())
	ctx := context.Background()
	a, b := newCollector(), newCollector()
	stopA, err := nodeA.Subscribe(ctx, events.TopicChanges, "tongban-cache-a", a.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	stopB, err := nodeB.Subscribe(ctx, events.TopicChanges, "tongban-cache-b", b.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()

	before := values("before", 20)
	for i, v := range before {
		if err := pub.Publish(ctx, events.TopicChanges, []byte(fmt.Sprint(i%5)), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	a.waitFor(t, 60*time.Second, before...)
	b.waitFor(t, 60*time.Second, before...)

	broker.Stop()
	// While the broker is down a publish fails (bounded by its context);
	// it reports the failure rather than pretending.
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = pub.Publish(dctx, events.TopicChanges, nil, []byte("during-outage"))
	cancel()
	if err == nil {
		t.Log("publish during outage reported success")
	}
	broker.Restart()

	after := values("after", 20)
	for i, v := range after {
		// The writer reconnects by itself; a publish that fails while the
		// broker comes up is retried here, bounded.
		var err error
		for try := 0; try < 50; try++ {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = pub.Publish(pctx, events.TopicChanges, []byte(fmt.Sprint(i%5)), []byte(v))
			cancel()
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("publishing %s after restart: %v", v, err)
		}
	}
	a.waitFor(t, 90*time.Second, after...)
	b.waitFor(t, 90*time.Second, after...)
}
