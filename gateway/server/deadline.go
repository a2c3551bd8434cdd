package server

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlineSlice is how far apart the deadlines of REST requests may be and
// still share a timer: requests that begin within one slice end together,
// at least RequestTimeout after they began and at most two slices later.
const deadlineSlice = 10 * time.Millisecond

// deadlines gives REST requests their deadline without a timer each, which
// context.WithTimeout would start and stop for every request. Requests that
// begin within one deadlineSlice of each other share an epoch: a context
// that ends (with context.DeadlineExceeded) RequestTimeout after the end of
// the slice. Each
// request's context takes its values from the request and its deadline,
// Done and Err from its epoch (deadlineContext).
type deadlines struct {
	timeout time.Duration
	cur     atomic.Pointer[epoch]
}

// An epoch is the shared deadline of the requests that begin before until.
type epoch struct {
	until time.Time
	ctx   context.Context
	// cancel is kept, not called: an epoch ends at its deadline, and its
	// requests end with it.
	cancel context.CancelFunc
}

// with returns a context with the values of values (which must not be
// cancelled otherwise; see context.WithoutCancel) that ends at least the
// timeout after now, and at most two deadlineSlices later.
func (d *deadlines) with(values context.Context, now time.Time) context.Context {
	e := d.cur.Load()
	if e == nil || !now.Before(e.until) {
		e = d.next(now)
	}
	return &deadlineContext{Context: values, epoch: e.ctx}
}

// next returns the epoch of requests beginning at now, making it if no
// other request has. An epoch takes requests for one slice from the first
// of them; its times keep now's monotonic clock reading, so that a step of
// the wall clock neither ends nor prolongs it.
func (d *deadlines) next(now time.Time) *epoch {
	until := now.Add(deadlineSlice)
	ctx, cancel := context.WithDeadline(context.Background(), until.Add(d.timeout))
	e := &epoch{until: until, ctx: ctx, cancel: cancel}
	for {
		old := d.cur.Load()
		if old != nil && now.Before(old.until) {
			// Another request made this slice's epoch, or the next
			// one's, first.
			cancel()
			return old
		}
		if d.cur.CompareAndSwap(old, e) {
			return e
		}
	}
}

// deadlineContext is a request's context: the request's values, and the
// deadline, Done and Err of its epoch. Contexts derived from it end with
// it: context.WithCancel and the like find its AfterFunc.
type deadlineContext struct {
	context.Context // the values; never done
	epoch           context.Context
}

func (c *deadlineContext) Deadline() (time.Time, bool) { return c.epoch.Deadline() }
func (c *deadlineContext) Done() <-chan struct{}       { return c.epoch.Done() }
func (c *deadlineContext) Err() error                  { return c.epoch.Err() }

// AfterFunc arranges for f to run once c is done, as context.AfterFunc
// does; the context package uses it to end contexts derived from c.
func (c *deadlineContext) AfterFunc(f func()) (stop func() bool) {
	return context.AfterFunc(c.epoch, f)
}
