package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type ctxKey struct{}

// TestDeadlinesShareEpochs: requests that begin within a slice share an
// epoch; each ends with context.DeadlineExceeded at least the timeout after
// it began and at most two slices later, carries its own values, and ends
// the contexts derived from it.
func TestDeadlinesShareEpochs(t *testing.T) {
	d := &deadlines{timeout: 40 * time.Millisecond}
	start := time.Now()
	a := d.with(context.WithValue(context.Background(), ctxKey{}, "a"), start)
	b := d.with(context.WithValue(context.Background(), ctxKey{}, "b"), start)
	if a.Done() != b.Done() {
		t.Error("requests beginning at the same moment do not share an epoch")
	}
	later := d.with(context.Background(), start.Add(3*deadlineSlice))
	if later.Done() == a.Done() {
		t.Error("a request three slices later shares the first epoch")
	}
	if a.Value(ctxKey{}) != "a" || b.Value(ctxKey{}) != "b" {
		t.Errorf("values %v, %v", a.Value(ctxKey{}), b.Value(ctxKey{}))
	}
	for _, ctx := range []context.Context{a, later} {
		dl, ok := ctx.Deadline()
		began := start
		if ctx == later {
			began = start.Add(3 * deadlineSlice)
		}
		if !ok || dl.Before(began.Add(d.timeout)) || dl.After(began.Add(d.timeout+2*deadlineSlice)) {
			t.Errorf("deadline %v after the start, want within [%v, %v]", dl.Sub(began), d.timeout, d.timeout+2*deadlineSlice)
		}
	}
	// Derived contexts end with it, with its error; one cancelled early
	// leaves it be.
	child, cancelChild := context.WithCancel(a)
	defer cancelChild()
	timed, cancelTimed := context.WithTimeout(a, time.Hour)
	defer cancelTimed()
	early, cancelEarly := context.WithCancel(a)
	cancelEarly()
	// (The request may have reached its deadline already on a slow
	// machine, but it cannot have been cancelled.)
	if errors.Is(a.Err(), context.Canceled) || early.Err() != context.Canceled {
		t.Fatalf("cancelling a derived context: request %v, derived %v", a.Err(), early.Err())
	}
	<-a.Done()
	for name, ctx := range map[string]context.Context{"request": a, "shared": b, "derived": child, "timed": timed} {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s context did not end with its epoch", name)
		}
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			t.Errorf("%s ended with %v (cause %v), want the deadline", name, ctx.Err(), context.Cause(ctx))
		}
	}
}

// TestDeadlinesConcurrent: requests beginning at once across slices, from
// many goroutines, each get an epoch that ends no earlier than it should
// and no later than the last epoch begun could (for the race detector,
// too).
func TestDeadlinesConcurrent(t *testing.T) {
	d := &deadlines{timeout: time.Second}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				const maxSkew = 7 * time.Millisecond
				now := time.Now().Add(time.Duration(g*i%7) * time.Millisecond)
				dl, ok := d.with(context.Background(), now).Deadline()
				// No earlier than the timeout after the start; no later
				// than an epoch begun by another goroutine, whatever the
				// scheduler did in between, could end.
				latest := time.Now().Add(maxSkew + deadlineSlice + d.timeout)
				if !ok || dl.Before(now.Add(d.timeout)) || dl.After(latest) {
					t.Errorf("deadline %v after the start", dl.Sub(now))
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestDeadlinesFollowTheMonotonicClock: an epoch's end of intake and its
// deadline keep the monotonic clock reading of the request that made it
// (time.Time's String shows it as "m=..."), so that a step of the wall
// clock can neither keep handing out an epoch that has ended nor end one
// early. Cut to the wall clock, as by Truncate, a step back of an hour
// would hand every request an ended epoch for that hour.
func TestDeadlinesFollowTheMonotonicClock(t *testing.T) {
	d := &deadlines{timeout: time.Minute}
	ctx := d.with(context.Background(), time.Now())
	dl, _ := ctx.Deadline()
	if e := d.cur.Load(); !strings.Contains(e.until.String(), "m=") || !strings.Contains(dl.String(), "m=") {
		t.Fatalf("epoch intake until %v, deadline %v: no monotonic reading", e.until, dl)
	}
}
