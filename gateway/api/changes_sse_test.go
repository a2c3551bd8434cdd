package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/httperr"
	"github.com/tongban/tongban/policy"
)

// lateWriter is a streaming ResponseWriter that counts writes made after the
// handler returned.
type lateWriter struct {
	mu         sync.Mutex
	header     http.Header
	buf        strings.Builder
	returned   bool
	late       int
	subscribed chan struct{}
}

func (w *lateWriter) Header() http.Header { return w.header }
func (w *lateWriter) WriteHeader(int)     {}
func (w *lateWriter) Flush()              {}
func (w *lateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.returned {
		w.late++
	}
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), ": subscribed") && w.subscribed != nil {
		close(w.subscribed)
		w.subscribed = nil
	}
	return len(p), nil
}

// TestSSEHeartbeatStopsBeforeReturn checks that no keep-alive is written
// once ServeHTTP has returned (the ResponseWriter is no longer the
// handler's then).
func TestSSEHeartbeatStopsBeforeReturn(t *testing.T) {
	f := newWatchFixture(t)
	f.changes.Heartbeat = time.Nanosecond // beat as often as possible
	var writers []*lateWriter
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/v1/changes/events?datasets=approval.permits&purpose=inspection", nil)
		r.Header.Set("Authorization", "Bearer tok-enforcement")
		w := &lateWriter{header: http.Header{}, subscribed: make(chan struct{})}
		sub := w.subscribed
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.changes.ServeHTTP(w, r)
			w.mu.Lock()
			w.returned = true
			w.mu.Unlock()
		}()
		select {
		case <-sub:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream did not open")
		}
		cancel()
		<-done
		writers = append(writers, w)
	}
	// Give a heartbeat that outlived its handler the chance to show.
	time.Sleep(50 * time.Millisecond)
	late := 0
	for _, w := range writers {
		w.mu.Lock()
		late += w.late
		w.mu.Unlock()
	}
	if late > 0 {
		t.Fatalf("%d keep-alives written after ServeHTTP returned", late)
	}
}

// TestSSEEndsWhenGrantIsGone checks that an SSE stream whose grant is
// revoked sends the PERMISSION_DENIED error as its "error" event and ends,
// on a quiet stream (periodic check) and at the next event.
func TestSSEEndsWhenGrantIsGone(t *testing.T) {
	for _, quiet := range []bool{true, false} {
		t.Run(map[bool]string{true: "quiet stream", false: "at the next event"}[quiet], func(t *testing.T) {
			f := newWatchFixture(t)
			f.changes.RecheckInterval = time.Hour
			if quiet {
				f.changes.RecheckInterval = 10 * time.Millisecond
			}
			s := f.sse(t, "tok-enforcement", "datasets=approval.permits&purpose=inspection")
			if s.resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", s.resp.StatusCode)
			}
			s.waitSubscribed(t)
			f.policy.snap.Store(policy.Prepare(f.dict, testGrants(time.Now(), "demo-enforcement-permits"), 2))
			if !quiet {
				f.publish(t, permitInShijiazhuang)
			}
			event, data, _ := s.next(t)
			if event != "error" {
				t.Fatalf("event %q (%s), want error", event, data)
			}
			var body httperr.Body
			if err := json.Unmarshal([]byte(data), &body); err != nil {
				t.Fatalf("data %q: %v", data, err)
			}
			e := body.Error
			if e.Code != http.StatusForbidden || e.Status != "PERMISSION_DENIED" || e.Reason != policy.ReasonNoGrant ||
				e.Metadata["dataset"] != "approval.permits" || !strings.Contains(e.Message, "approval.permits") ||
				!strings.Contains(e.Message, "subscription is closed") {
				t.Fatalf("error event %+v", e)
			}
			// The response ends after the error: nothing but the end of
			// the body follows.
			rest, err := io.ReadAll(io.LimitReader(s.r, 1<<20))
			if err != nil {
				t.Fatalf("reading after the error event: %v", err)
			}
			if len(rest) != 0 {
				t.Fatalf("after the error event: %q", rest)
			}
		})
	}
}
