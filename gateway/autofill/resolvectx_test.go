package autofill

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// heldRecorder is an audit log whose append waits: until the caller's
// context (caller) ends, or, when late, until its own context ends. Like
// the audit log (see audit.Log.Append), once an entry is queued it is
// recorded whatever happens, and the append returns its own context's error
// when that ended first.
type heldRecorder struct {
	next    *fakeRecorder
	caller  context.Context
	late    bool // the log confirms nothing before the append's context ends
	entered chan struct{}
	once    sync.Once
}

func (r *heldRecorder) RecordExchange(ctx context.Context, ex query.Exchange) (*v1.Receipt, error) {
	r.once.Do(func() { close(r.entered) })
	safety := time.NewTimer(30 * time.Second) // bounds a broken test
	defer safety.Stop()
	if r.late {
		select {
		case <-ctx.Done():
		case <-safety.C:
		}
	} else {
		select {
		case <-r.caller.Done():
		case <-ctx.Done():
		case <-safety.C:
		}
	}
	receipt, err := r.next.RecordExchange(context.Background(), ex) // queued: recorded
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return receipt, err
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestResolveCallerGoneDuringAppend: the caller's context ends while the
// resolution's audit entry waits to be made durable. The append goes on
// without it: once the log confirms the entry, the resolution commits, so
// the log never holds a resolution that did not take effect. When the log
// does not confirm in time, the resolution is refused and the unknown
// outcome is logged at ERROR.
func TestResolveCallerGoneDuringAppend(t *testing.T) {
	desk := policy.Principal{SystemID: "resources-desk", Department: "resources"}
	tests := []struct {
		name     string
		late     bool
		resolved bool
		// timeout is the Engine's ResolveTimeout: short only where the
		// test exercises its expiry, so that a slow machine between the
		// append starting and the caller leaving fails nothing.
		timeout time.Duration
	}{
		{"log confirms after the caller left", false, true, 30 * time.Second},
		{"log does not confirm in time", true, false, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := newEngine(t, nil)
			c := raiseCorrection(t, te)
			logs := &syncBuffer{}
			te.Logger = slog.New(slog.NewTextHandler(logs, nil))
			te.ResolveTimeout = tt.timeout
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := &heldRecorder{next: te.rec, caller: ctx, late: tt.late, entered: make(chan struct{})}
			te.Record = rec

			type result struct {
				c   *v1.Correction
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := te.ResolveCorrection(ctx, desk, "r", c.GetId())
				done <- result{res, err}
			}()
			select {
			case <-rec.entered:
			case <-time.After(30 * time.Second):
				t.Fatal("the resolution never reached the audit log")
			}
			cancel() // the caller leaves while the entry waits
			var got result
			select {
			case got = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the resolution did not end")
			}

			stored, err := te.store.List(context.Background(), Filter{})
			if err != nil || len(stored) != 1 {
				t.Fatalf("stored = %v, %v", stored, err)
			}
			recorded := resolutions(t, te.Refs, te.rec.exchanges(), c)
			if tt.resolved {
				if got.err != nil || got.c.GetState() != StateResolved {
					t.Fatalf("resolve = %v, %v; want resolved", got.c, got.err)
				}
				if stored[0].State != StateResolved || recorded != 1 {
					t.Fatalf("store says %s, log records %d resolutions; want resolved and 1", stored[0].State, recorded)
				}
				return
			}
			if apierr.CodeOf(got.err) != codes.Unavailable || apierr.ReasonOf(got.err) != apierr.ReasonAuditUnavailable {
				t.Fatalf("err = %v, want UNAVAILABLE AUDIT_UNAVAILABLE", got.err)
			}
			if stored[0].State != StateOpen {
				t.Fatalf("store says %s, want the correction still open", stored[0].State)
			}
			out := logs.String()
			if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, c.GetId()) {
				t.Fatalf("no ERROR naming the correction logged; logs:\n%s", out)
			}
		})
	}
}
