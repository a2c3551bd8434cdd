package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Memory is the in-process Bus of a single node. Publish delivers to every
// group synchronously, in the publisher's goroutine, before it returns: on
// one node a published change has been applied when Publish returns. Nothing
// is retained, so a group only sees what is published while it subscribes.
type Memory struct {
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	next   int
	topics map[string]map[string]*memGroup // topic → group
}

type memGroup struct {
	subs []*memSub
	rr   int
}

type memSub struct {
	id  int
	ctx context.Context
	fn  Handler
	mu  sync.Mutex // one delivery at a time
}

var _ Bus = (*Memory)(nil)

// NewMemory returns an empty in-process bus logging to log (slog.Default
// when nil).
func NewMemory(log *slog.Logger) *Memory {
	if log == nil {
		log = slog.Default()
	}
	return &Memory{log: log, topics: map[string]map[string]*memGroup{}}
}

var errClosed = errors.New("event bus closed")

// Publish implements Publisher.
func (b *Memory) Publish(ctx context.Context, topic string, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m := Message{Topic: topic, Key: key, Value: value, Time: time.Now()}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errClosed
	}
	var targets []*memSub
	for _, g := range b.topics[topic] {
		if len(g.subs) == 0 {
			continue
		}
		targets = append(targets, g.subs[g.rr%len(g.subs)])
		g.rr++
	}
	b.mu.Unlock()
	for _, s := range targets {
		s.mu.Lock()
		if s.ctx.Err() == nil {
			if err := s.fn(s.ctx, m); err != nil {
				b.log.WarnContext(ctx, "event handler failed", "topic", topic, "err", err)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// Subscribe implements Subscriber.
func (b *Memory) Subscribe(ctx context.Context, topic, group string, fn Handler) (func(), error) {
	if group == "" {
		return nil, errors.New("subscribing: a group is required")
	}
	sctx, cancel := context.WithCancel(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cancel()
		return nil, errClosed
	}
	b.next++
	s := &memSub{id: b.next, ctx: sctx, fn: fn}
	groups := b.topics[topic]
	if groups == nil {
		groups = map[string]*memGroup{}
		b.topics[topic] = groups
	}
	g := groups[group]
	if g == nil {
		g = &memGroup{}
		groups[group] = g
	}
	g.subs = append(g.subs, s)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			b.mu.Lock()
			for i, x := range g.subs {
				if x == s {
					g.subs = append(g.subs[:i:i], g.subs[i+1:]...)
					break
				}
			}
			b.mu.Unlock()
			s.mu.Lock() // wait for a delivery in progress
			s.mu.Unlock()
		})
	}
	context.AfterFunc(sctx, stop)
	return stop, nil
}

// Close implements Bus.
func (b *Memory) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}
