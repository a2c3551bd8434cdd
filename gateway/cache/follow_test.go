package cache

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/events"
	"github.com/tongban/tongban/gateway/events/eventstest"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestChangeEventEvictsOnEveryNode publishes a change event on the bus and
// checks that both nodes and Redis drop the record, with the in-process bus
// and with Kafka.
func TestChangeEventEvictsOnEveryNode(t *testing.T) {
	buses := map[string]func(t *testing.T) (pub events.Publisher, a, b events.Subscriber){
		"memory": func(t *testing.T) (events.Publisher, events.Subscriber, events.Subscriber) {
			m := events.NewMemory(slog.New(slog.DiscardHandler))
			return m, m, m
		},
		"kafka": func(t *testing.T) (events.Publisher, events.Subscriber, events.Subscriber) {
			if testing.Short() {
				t.Skip("starts a broker")
			}
			broker := eventstest.StartKafka(t)
			mk := func() *events.Kafka {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				k, err := events.NewKafka(ctx, events.KafkaOptions{Brokers: broker.Addrs(), Logger: slog.New(slog.DiscardHandler), SessionTimeout: 6 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { k.Close() })
				return k
			}
			return mk(), mk(), mk()
		},
	}
	for name, mkBus := range buses {
		t.Run(name, func(t *testing.T) {
			cl := newCluster(t)
			a, b := cl.node(t, time.Hour), cl.node(t, time.Hour)
			pub, subA, subB := mkBus(t)
			ctx := context.Background()
			stopA, err := a.FollowChanges(ctx, subA, "tongban-cache-a")
			if err != nil {
				t.Fatal(err)
			}
			defer stopA()
			stopB, err := b.FollowChanges(ctx, subB, "tongban-cache-b")
			if err != nil {
				t.Fatal(err)
			}
			defer stopB()

			const code = "91130100MA0G5XKQ2U"
			fetchName(t, a, cl.ds, code)
			fetchName(t, b, cl.ds, code)
			fetchName(t, a, cl.ds, "91130102MA0CX1RT7K") // not changed
			if n := cl.src.calls.Load(); n != 2 {
				t.Fatalf("department calls = %d, want 2", n)
			}
			if err := events.PublishChange(ctx, pub, &v1.ChangeEvent{Dataset: cl.ds.Name, RecordId: "LIC-" + code, Op: "upsert"}); err != nil {
				t.Fatal(err)
			}
			// Wait, bounded, until both nodes have dropped the entry.
			deadline := time.Now().Add(60 * time.Second)
			key, _ := Key(req(code))
			for {
				_, inA := a.mem.get(key)
				_, inB := b.mem.get(key)
				applied := counter(t, a.reg, "tongban_cache_change_events_total") + counter(t, b.reg, "tongban_cache_change_events_total")
				if applied == 2 {
					if inA || inB || len(valueKeys(t, cl)) != 1 { // the unchanged record stays
						t.Fatalf("entry still cached after the change event: a=%v b=%v redis=%v", inA, inB, valueKeys(t, cl))
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("change event applied %v times, want 2", applied)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// a refetches from the department; b then finds a's fresh copy
			// in Redis.
			if d := fetchName(t, a, cl.ds, code); d != v1.Delivery_DELIVERY_LIVE {
				t.Fatalf("a after the change: %v, want live", d)
			}
			if d := fetchName(t, b, cl.ds, code); d != v1.Delivery_DELIVERY_CACHE {
				t.Fatalf("b after a's refill: %v, want cache", d)
			}
			if n := cl.src.calls.Load(); n != 3 {
				t.Fatalf("department calls = %d, want 3", n)
			}
			if d := fetchName(t, a, cl.ds, "91130102MA0CX1RT7K"); d != v1.Delivery_DELIVERY_CACHE {
				t.Fatalf("unchanged record: %v", d)
			}
		})
	}
}
