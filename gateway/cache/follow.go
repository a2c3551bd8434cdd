package cache

import (
	"context"

	"github.com/tongban/tongban/gateway/events"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// FollowChanges subscribes the cache to the change events on the bus
// (events.TopicChanges) and invalidates, in memory and Redis, every entry an
// event touches. group must be unique to this node (e.g.
// "tongban-cache-<node>") so that every node evicts. A Redis failure during
// an invalidation is held and applied when Redis is back; it does not fail
// the event.
func (c *Cache) FollowChanges(ctx context.Context, sub events.Subscriber, group string) (stop func(), err error) {
	return events.SubscribeChanges(ctx, sub, group, func(ctx context.Context, ev *v1.ChangeEvent) error {
		n, err := c.InvalidateContext(ctx, ev)
		c.log.DebugContext(ctx, "change event applied to cache", "dataset", ev.GetDataset(), "evicted", n, "redis_err", err)
		return nil
	})
}
