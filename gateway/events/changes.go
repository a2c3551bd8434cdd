package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// PublishChange publishes a change event on TopicChanges, keyed by dataset
// and record id so that changes of one record stay in order.
func PublishChange(ctx context.Context, pub Publisher, ev *v1.ChangeEvent) error {
	b, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding change event: %w", err)
	}
	return pub.Publish(ctx, TopicChanges, partitionKey(ev.GetDataset(), ev.GetRecordId()), b)
}

// SubscribeChanges delivers the change events of TopicChanges to fn (see
// Subscriber.Subscribe). Undecodable messages are logged and skipped.
func SubscribeChanges(ctx context.Context, sub Subscriber, group string, fn func(context.Context, *v1.ChangeEvent) error) (func(), error) {
	return sub.Subscribe(ctx, TopicChanges, group, func(ctx context.Context, m Message) error {
		ev := &v1.ChangeEvent{}
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			return fmt.Errorf("decoding change event: %w", err)
		}
		return fn(ctx, ev)
	})
}

// ChangeSource is the departments' change stream: the connector host's
// Watch. Watch calls fn for every change of datasets (all watchable ones
// when empty) until ctx ends or fn fails.
type ChangeSource interface {
	Watch(ctx context.Context, datasets []string, fn func(*v1.ChangeEvent) error) error
}

// Relay copies the departments' change events onto the bus. Run one per
// deployment (or one per node: duplicates are harmless, every consumer is
// idempotent).
type Relay struct {
	Source   ChangeSource
	Bus      Publisher
	Datasets []string
	Logger   *slog.Logger
	// Backoff is the first wait before retrying a failed publish or watch
	// (default 100ms, doubling up to 5s).
	Backoff time.Duration
}

// Run relays until ctx ends. A failed publish is retried (the watch waits,
// so no event is dropped); a failed watch is restarted. It returns ctx's
// error.
func (r *Relay) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	first := r.Backoff
	if first <= 0 {
		first = 100 * time.Millisecond
	}
	wait := func(d *time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(*d):
		}
		*d = min(2**d, 5*time.Second)
		return true
	}
	for {
		err := r.Source.Watch(ctx, r.Datasets, func(ev *v1.ChangeEvent) error {
			d := first
			for {
				err := PublishChange(ctx, r.Bus, ev)
				if err == nil {
					return nil
				}
				log.WarnContext(ctx, "publishing change event; retrying", "dataset", ev.GetDataset(), "err", err)
				if !wait(&d) {
					return ctx.Err()
				}
			}
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.WarnContext(ctx, "watching department changes; restarting", "err", err)
		d := first
		if !wait(&d) {
			return ctx.Err()
		}
	}
}

// GrantBus carries policy.Change on TopicGrants, so that a grant approved
// or revoked on one node reaches every node's policy engine. It implements
// policy.Bus.
type GrantBus struct {
	Bus Bus
	// Group is this node's consumer group: every node needs every change,
	// so use one per node (e.g. "tongban-policy-<node>").
	Group  string
	Logger *slog.Logger
}

var _ policy.Bus = (*GrantBus)(nil)

// Publish implements policy.Publisher.
func (g *GrantBus) Publish(ctx context.Context, c policy.Change) error {
	b, err := json.Marshal(grantChange{GrantID: c.GrantID, Revision: c.Revision})
	if err != nil {
		return fmt.Errorf("encoding grant change: %w", err)
	}
	return g.Bus.Publish(ctx, TopicGrants, []byte(c.GrantID), b)
}

type grantChange struct {
	GrantID  string `json:"grant_id"`
	Revision int64  `json:"revision"`
}

// Subscribe implements policy.Subscriber. A failure to subscribe is logged
// (engines also poll their store, so changes still arrive).
func (g *GrantBus) Subscribe(handle func(ctx context.Context, c policy.Change)) func() {
	log := g.Logger
	if log == nil {
		log = slog.Default()
	}
	stop, err := g.Bus.Subscribe(context.Background(), TopicGrants, g.Group, func(ctx context.Context, m Message) error {
		var c grantChange
		if err := json.Unmarshal(m.Value, &c); err != nil {
			return fmt.Errorf("decoding grant change: %w", err)
		}
		handle(ctx, policy.Change{GrantID: c.GrantID, Revision: c.Revision})
		return nil
	})
	if err != nil {
		log.Error("subscribing to grant changes; relying on polling", "err", err)
		return func() {}
	}
	return stop
}
