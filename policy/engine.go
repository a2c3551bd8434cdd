package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Change tells that a grant was written, and the store revision of the
// write.
type Change struct {
	GrantID  string
	Revision int64
}

// Publisher announces grant changes to every gateway node.
type Publisher interface {
	Publish(ctx context.Context, c Change) error
}

// Subscriber delivers announced grant changes to a handler until the
// returned function is called.
type Subscriber interface {
	Subscribe(handle func(ctx context.Context, c Change)) (unsubscribe func())
}

// Bus carries grant changes between the workflow and the engines: in
// process (LocalBus) or, across nodes, over Kafka (provided by the gateway).
type Bus interface {
	Publisher
	Subscriber
}

// LocalBus is an in-process Bus. Publish calls every handler in the
// publisher's goroutine before it returns, so an engine following the bus
// has swapped in its new snapshot by the time the workflow call that
// published the change returns.
type LocalBus struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(context.Context, Change)
}

var _ Bus = (*LocalBus)(nil)

// NewLocalBus returns an empty LocalBus.
func NewLocalBus() *LocalBus {
	return &LocalBus{subs: map[int]func(context.Context, Change){}}
}

// Publish implements Publisher.
func (b *LocalBus) Publish(ctx context.Context, c Change) error {
	b.mu.RLock()
	handlers := make([]func(context.Context, Change), 0, len(b.subs))
	for _, h := range b.subs {
		handlers = append(handlers, h)
	}
	b.mu.RUnlock()
	for _, h := range handlers {
		h(ctx, c)
	}
	return nil
}

// Subscribe implements Subscriber.
func (b *LocalBus) Subscribe(handle func(context.Context, Change)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	b.subs[id] = handle
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
	}
}

// Source is where an Engine reads grants: a store.Store satisfies it.
type Source interface {
	Revision(ctx context.Context) (int64, error)
	List(ctx context.Context, f store.Filter) ([]store.Record, error)
}

// EngineOptions configures an Engine. The zero value is usable.
type EngineOptions struct {
	// Clock gives the decision time of requests that carry none
	// (time.Now when nil).
	Clock func() time.Time
	// Logger receives refresh failures and skipped grants
	// (slog.Default when nil).
	Logger *slog.Logger
}

// Engine holds the current Snapshot and replaces it, atomically, when the
// grants in its Source change. Decide never blocks on a rebuild. It is safe
// for concurrent use.
type Engine struct {
	dict  *datasets.Dictionary
	src   Source
	clock func() time.Time
	log   *slog.Logger

	snap      atomic.Pointer[Snapshot]
	refreshMu sync.Mutex
}

var _ Decider = (*Engine)(nil)

// NewEngine returns an Engine loaded with the active grants of src.
func NewEngine(ctx context.Context, dict *datasets.Dictionary, src Source, opts EngineOptions) (*Engine, error) {
	e := &Engine{dict: dict, src: src, clock: opts.Clock, log: opts.Logger}
	if e.clock == nil {
		e.clock = time.Now
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.snap.Store(Prepare(dict, nil, -1))
	if _, err := e.Refresh(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Snapshot returns the snapshot in force.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Decide decides req on the snapshot in force; a request without a time is
// decided at the engine clock's now.
func (e *Engine) Decide(req Request) (Decision, error) {
	if req.Time.IsZero() {
		req.Time = e.clock()
	}
	return e.snap.Load().Decide(req)
}

// Refresh rebuilds the snapshot if the source's revision moved past the
// snapshot's, and reports whether it did. On error the snapshot in force
// stays.
func (e *Engine) Refresh(ctx context.Context) (bool, error) {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	rev, err := e.src.Revision(ctx)
	if err != nil {
		return false, fmt.Errorf("refreshing policy: %w", err)
	}
	if rev <= e.snap.Load().Revision() {
		return false, nil
	}
	recs, err := e.src.List(ctx, store.Filter{State: v1.GrantState_GRANT_STATE_ACTIVE})
	if err != nil {
		return false, fmt.Errorf("refreshing policy at revision %d: %w", rev, err)
	}
	grants := make([]*v1.Grant, len(recs))
	for i, r := range recs {
		grants[i] = r.Grant
	}
	snap := Prepare(e.dict, grants, rev)
	for _, s := range snap.Skipped() {
		e.log.Warn("grant skipped: it does not fit the dataset dictionary", "grant_id", s.GrantID, "err", s.Err)
	}
	e.snap.Store(snap)
	return true, nil
}

// Follow keeps the engine current: it refreshes on every change announced
// by sub that is newer than the snapshot, and polls the source's revision
// every pollEvery as a safety net for lost announcements (no polling when
// pollEvery is not positive). The returned function stops following and
// waits for the poller to end.
func (e *Engine) Follow(sub Subscriber, pollEvery time.Duration) (stop func()) {
	var unsubscribe func()
	if sub != nil {
		unsubscribe = sub.Subscribe(func(ctx context.Context, c Change) {
			if c.Revision > 0 && c.Revision <= e.snap.Load().Revision() {
				return
			}
			if _, err := e.Refresh(ctx); err != nil {
				e.log.Error("policy refresh after a grant change failed; the periodic poll will retry", "grant_id", c.GrantID, "revision", c.Revision, "err", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if pollEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(pollEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				rctx, rcancel := context.WithTimeout(ctx, 10*pollEvery)
				if _, err := e.Refresh(rctx); err != nil && ctx.Err() == nil {
					e.log.Error("policy poll failed", "err", err)
				}
				rcancel()
			}
		}()
	}
	return func() {
		if unsubscribe != nil {
			unsubscribe()
		}
		cancel()
		wg.Wait()
	}
}
