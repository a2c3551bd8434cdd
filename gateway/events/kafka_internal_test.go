package events

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/events/eventstest"
)

func (k *Kafka) subscriptions() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.stops)
}

// TestKafkaSubscriptionEndsWithItsContext: a subscription whose context
// ends without stop being called releases its reader.
func TestKafkaSubscriptionEndsWithItsContext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	b := eventstest.StartKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := NewKafka(ctx, KafkaOptions{Brokers: b.Addrs(), Topics: []string{"t1"}, Logger: slog.New(slog.DiscardHandler), SessionTimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	sctx, scancel := context.WithCancel(context.Background())
	if _, err := k.Subscribe(sctx, "t1", "g1", func(context.Context, Message) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := k.subscriptions(); n != 1 {
		t.Fatalf("subscriptions = %d, want 1", n)
	}
	scancel()
	for i := 0; i < 1000 && k.subscriptions() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := k.subscriptions(); n != 0 {
		t.Fatalf("subscriptions after the context ended = %d, want 0 (reader leaked)", n)
	}
}
