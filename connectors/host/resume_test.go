package host

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	builtinconn "github.com/tongban/tongban/connectors/builtin"
	"github.com/tongban/tongban/connectors/simulate"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// gatedFront serves a simulated department on a loopback server of its own.
// It records the query of every change-feed request and, while closed,
// holds change-feed requests until it is opened.
type gatedFront struct {
	h http.Handler

	mu      sync.Mutex
	open    chan struct{} // closed while the gate is open
	queries []url.Values
	polls   chan url.Values // every long poll (a request with "wait")
}

func newGatedFront(t *testing.T, h http.Handler) (*gatedFront, string) {
	t.Helper()
	g := &gatedFront{h: h, open: make(chan struct{}), polls: make(chan url.Values, 100)}
	close(g.open)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func (g *gatedFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/changes" {
		q := r.URL.Query()
		g.mu.Lock()
		g.queries = append(g.queries, q)
		open := g.open
		g.mu.Unlock()
		select {
		case <-open:
		case <-r.Context().Done():
			return
		}
		if q.Has("wait") {
			select {
			case g.polls <- q:
			default:
			}
		}
	}
	g.h.ServeHTTP(w, r)
}

// close holds change-feed requests until reopen.
func (g *gatedFront) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gatedFront) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

func (g *gatedFront) queryLog() []url.Values {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]url.Values(nil), g.queries...)
}

func awaitValue[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not happen", what)
		var zero T
		return zero
	}
}

// A change made while the connector's plugin process is down reaches the
// watcher once the plugin is back: the host resumes the department's change
// feed after the last cursor it delivered, even though the connector is
// configured with start: latest.
func TestWatchDeliversChangesMadeWhilePluginWasDown(t *testing.T) {
	deps, err := simulate.Start(t.Context(), simulate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("starting simulated departments: %v", err)
	}
	t.Cleanup(func() { _ = deps.Close() })
	front, base := newGatedFront(t, deps.Approval)

	typ, raw, err := builtinconn.DemoSettings("approval", map[string]string{"APPROVAL_URL": base})
	if err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(raw, &settings); err != nil {
		t.Fatal(err)
	}
	cc := builtin("approval", helperSettings{})
	cc.Type, cc.Settings = typ, settings
	opts := quietOptions()
	opts.Launcher = builtinLauncher
	h, err := New(Config{Connectors: []ConnectorConfig{cc}}, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := h.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })

	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan *v1.ChangeEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- h.Watch(ctx, []string{"approval.permits"}, func(ev *v1.ChangeEvent) error {
			select {
			case events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := awaitValue(t, done, "Watch returning after cancel"); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Watch = %v after cancel", err)
			}
		})
	}
	t.Cleanup(stop)

	permits := deps.Data.Permits
	// The plugin's Watch is positioned at the end of the feed (start:
	// latest) once it long-polls.
	awaitValue(t, front.polls, "the plugin's first long poll")
	first := permits[0].PermitID
	if _, err := deps.Approval.RevokePermit(first); err != nil {
		t.Fatal(err)
	}
	ev := awaitValue(t, events, "the event of the first revocation")
	if ev.GetRecordId() != first || ev.GetCursor() == "" {
		t.Fatalf("first event = %v, want permit %s with a cursor", ev, first)
	}
	cursor := ev.GetCursor()
	awaitValue(t, front.polls, "a long poll after the first change")

	// Kill the plugin process (SIGKILL, by its pid) while it long-polls.
	// The feed is held shut until the change below is made, so that a
	// restarted plugin cannot read the feed before it.
	inst, _ := h.conns[0].current()
	rc := inst.pc.ReattachConfig()
	if rc == nil || rc.Pid == 0 {
		t.Fatal("no pid of the plugin process")
	}
	front.close()
	before := len(front.queryLog())
	proc, err := os.FindProcess(rc.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatalf("killing plugin process %d: %v", rc.Pid, err)
	}
	eventually(t, "the plugin process to exit", inst.pc.Exited)

	missed := permits[1].PermitID
	if _, err := deps.Approval.RevokePermit(missed); err != nil {
		t.Fatal(err)
	}
	front.reopen()

	ev = awaitValue(t, events, "the event of the change made while the plugin was down")
	if ev.GetRecordId() != missed || ev.GetDataset() != "approval.permits" {
		t.Fatalf("event after the restart = %v, want permit %s", ev, missed)
	}
	if ev.GetCursor() == "" || ev.GetCursor() == cursor {
		t.Errorf("event after the restart has cursor %q, want a new one after %q", ev.GetCursor(), cursor)
	}
	if got := statusOf(h, "approval"); got.GetProcess() != StateRunning {
		t.Errorf("process state = %s, want running", got.GetProcess())
	}
	// The restarted plugin asked for the feed after the last cursor the
	// host delivered.
	resumed := false
	for _, q := range front.queryLog()[before:] {
		resumed = resumed || q.Get("since") == cursor
	}
	if !resumed {
		t.Errorf("no feed request resumed after cursor %s: %v", cursor, front.queryLog())
	}

	// A later Watch of the same datasets resumes too: a change made between
	// two watches is not lost.
	stop()
	between := permits[2].PermitID
	if _, err := deps.Approval.RevokePermit(between); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	got := errors.New("got an event")
	var next *v1.ChangeEvent
	err = h.Watch(wctx, []string{"approval.permits"}, func(ev *v1.ChangeEvent) error {
		next = ev
		return got
	})
	if !errors.Is(err, got) || next.GetRecordId() != between {
		t.Fatalf("second Watch = %v with event %v, want permit %s", err, next, between)
	}
}

func TestWatchKey(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a.x"}, "a.x"},
		{[]string{"b.y", "a.x", "b.y"}, "a.x,b.y"},
	} {
		if got := watchKey(tt.in); got != tt.want {
			t.Errorf("watchKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
