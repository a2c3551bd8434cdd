package api

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
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
