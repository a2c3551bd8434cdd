package rest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/connectors/builtin/internal/testutil"
	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// guard bounds every wait of these tests so that a broken Watch fails the
// test instead of hanging it; nothing asserts how fast Watch is.
const guard = 20 * time.Second

// fakeFeed is a department change feed with its own JSON shape:
//
//	GET /feed?after=<cursor>&hold=<seconds>&max=<n>
//	{"result": {"items": [{"no", "ds", "id", "uscc", "region", "kind", "time"}], "next": "<cursor>"}}
//
// With bare set, the body is the bare array of changes (cursor read from the
// last item). Faults, when queued, answer the next requests instead.
type fakeFeed struct {
	mu      sync.Mutex
	changes []map[string]any
	notify  chan struct{}
	queries []url.Values
	faults  []func(http.ResponseWriter, *http.Request)
	bare    bool
	// waiting receives the query of every request that waits for a change.
	waiting chan url.Values
	// seen receives the query of every request.
	seen chan url.Values
}

func newFakeFeed() *fakeFeed {
	return &fakeFeed{notify: make(chan struct{}), waiting: make(chan url.Values, 100), seen: make(chan url.Values, 1000)}
}

// add appends changes; each is {ds, id, kind} plus optional extras.
func (f *fakeFeed) add(changes ...map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range changes {
		c["no"] = len(f.changes) + 1
		f.changes = append(f.changes, c)
	}
	close(f.notify)
	f.notify = make(chan struct{})
}

func (f *fakeFeed) fault(fs ...func(http.ResponseWriter, *http.Request)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fs...)
}

func (f *fakeFeed) after(n, limit int) ([]map[string]any, int, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n >= len(f.changes) {
		return []map[string]any{}, max(n, len(f.changes)), f.notify
	}
	out := slices.Clone(f.changes[n:min(len(f.changes), n+limit)])
	return out, n + len(out), f.notify
}

func (f *fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 401})
		return
	}
	if r.URL.Path != "/feed" {
		writeJSON(w, http.StatusNotFound, map[string]any{"code": 404})
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	f.queries = append(f.queries, q)
	var fault func(http.ResponseWriter, *http.Request)
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	f.mu.Unlock()
	select {
	case f.seen <- q:
	default:
	}
	if fault != nil {
		fault(w, r)
		return
	}
	after, _ := strconv.Atoi(q.Get("after"))
	limit := 1000
	if s := q.Get("max"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	hold, _ := strconv.Atoi(q.Get("hold"))
	items, next, changed := f.after(after, limit)
	if len(items) == 0 && hold > 0 {
		f.waiting <- q
		select {
		case <-changed:
			items, next, _ = f.after(after, limit)
		case <-time.After(time.Duration(hold) * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	if f.bare {
		writeJSON(w, http.StatusOK, items)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": map[string]any{"items": items, "next": strconv.Itoa(next)}})
}

func (f *fakeFeed) queryLog() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queries)
}

func (f *fakeFeed) faultsLeft() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.faults)
}

// feedYAML is a market connector with two datasets watching the fake feed;
// watch replaces the default watch settings when not empty.
func feedYAML(base, watch string) string {
	if watch == "" {
		watch = `
  path: /feed
  cursor_param: after
  wait_param: hold
  wait: 30s
  limit_param: max
  limit: 2
  items: /result/items
  cursor: /result/next
  event:
    dataset: /ds
    datasets: {licences: market.business_licences, enterprises: market.enterprises}
    record_id: /id
    op: /kind
    ops: {created: upsert, changed: upsert, removed: delete}
    at: /time
    keys: {credit_code: /uscc, region_code: /region}
  start: earliest
  backoff: {min: 1ms, max: 4ms}`
	}
	return fmt.Sprintf(`
department: {id: market}
base_url: %s
auth: {bearer_token: %s}
timeout: 5s
max_response_bytes: 4096
datasets:
  market.business_licences:
    get: /api/v1/licences/{credit_code}
  market.enterprises:
    get: /api/v1/enterprises/{credit_code}
watch:%s
`, base, token, watch)
}

func startFeed(t *testing.T) (*fakeFeed, *httptest.Server) {
	t.Helper()
	f := newFakeFeed()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// watching runs Watch in the background, passing events to the returned
// channel; stop cancels it and returns Watch's error.
func watching(t *testing.T, c interface {
	Watch(context.Context, *v1.WatchRequest, func(*v1.ChangeEvent) error) error
}, req *v1.WatchRequest) (events <-chan *v1.ChangeEvent, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan *v1.ChangeEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, req, func(ev *v1.ChangeEvent) error {
			select {
			case ch <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(guard):
				t.Errorf("Watch did not return after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return ch, stop
}

func next(t *testing.T, events <-chan *v1.ChangeEvent) *v1.ChangeEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(guard):
		t.Fatal("no change event arrived")
		return nil
	}
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("%s did not happen", what)
		var zero T
		return zero
	}
}

func change(ds, id, kind string) map[string]any {
	return map[string]any{"ds": ds, "id": id, "uscc": id, "kind": kind, "time": "2024-05-01T08:00:00+08:00"}
}

func TestWatchLongPollAdvancesCursor(t *testing.T) {
	f, srv := startFeed(t)
	c := mustNew(t, feedYAML(srv.URL, ""))
	l1 := change("licences", "L1", "created")
	l1["region"] = "130102"
	f.add(l1, change("enterprises", "L1", "changed"))
	events, stop := watching(t, c, &v1.WatchRequest{})

	at := timestamppb.New(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC))
	want := []*v1.ChangeEvent{
		{Dataset: "market.business_licences", RecordId: "L1", Keys: map[string]string{"credit_code": "L1", "region_code": "130102"}, Op: "upsert", At: at},
		// The last event of an answer carries the answer's cursor.
		{Dataset: "market.enterprises", RecordId: "L1", Keys: map[string]string{"credit_code": "L1"}, Op: "upsert", At: at, Cursor: "2"},
	}
	for _, w := range want {
		if got := next(t, events); !proto.Equal(got, w) {
			t.Errorf("event = %v, want %v", got, w)
		}
	}
	// Watch now holds a long poll after cursor 2; three changes end it, and
	// with max=2 they come in two answers.
	if q := waitFor(t, f.waiting, "a long poll"); q.Get("after") != "2" {
		t.Errorf("long poll after %q, want 2", q.Get("after"))
	}
	f.add(change("licences", "L2", "removed"), change("licences", "L3", "created"), change("enterprises", "L3", "created"))
	for _, w := range []struct{ ds, id, op string }{
		{"market.business_licences", "L2", "delete"},
		{"market.business_licences", "L3", "upsert"},
		{"market.enterprises", "L3", "upsert"},
	} {
		ev := next(t, events)
		if ev.Dataset != w.ds || ev.RecordId != w.id || ev.Op != w.op || ev.Keys["credit_code"] != w.id {
			t.Errorf("event = %v, want %s %s %s", ev, w.ds, w.id, w.op)
		}
	}
	waitFor(t, f.waiting, "a long poll after the last change")
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v after cancel, want context.Canceled", err)
	}

	var afters []string
	for i, q := range f.queryLog() {
		if q.Get("hold") != "30" || q.Get("max") != "2" {
			t.Errorf("request %d: query %v, want hold=30 and max=2", i, q)
		}
		afters = append(afters, q.Get("after"))
	}
	// start earliest: the first request has no cursor; then 2 (the first
	// answer), 2 again (the long poll that was answered), 4 and 5.
	if want := []string{"", "2", "4", "5"}; !slices.Equal(slices.Compact(afters), want) {
		t.Errorf("cursors sent = %q, want %q (repeats aside)", afters, want)
	}
}

func TestWatchStartLatestSkipsHistory(t *testing.T) {
	f, srv := startFeed(t)
	c := mustNew(t, strings.Replace(feedYAML(srv.URL, ""), "start: earliest", "start: latest", 1))
	for i := range 5 {
		f.add(change("licences", fmt.Sprintf("OLD%d", i), "created"))
	}
	events, _ := watching(t, c, &v1.WatchRequest{})
	q := waitFor(t, f.waiting, "a long poll")
	if q.Get("after") != "5" {
		t.Fatalf("long poll after %q, want the end of the feed, 5", q.Get("after"))
	}
	f.add(change("enterprises", "NEW", "created"))
	if ev := next(t, events); ev.RecordId != "NEW" {
		t.Fatalf("first event = %v, want the change made after Watch began", ev)
	}
	// Reading up to the end of the feed does not hold the department.
	for i, q := range f.queryLog() {
		if i < 4 && q.Has("hold") {
			t.Errorf("request %d %v skipping history asked the department to wait", i, q)
		}
	}
}

func TestWatchSurvivesDepartmentErrors(t *testing.T) {
	f, srv := startFeed(t)
	var otherHits int
	var mu sync.Mutex
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		otherHits++
		mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"result": map[string]any{"items": []any{change("licences", "EVIL", "created")}, "next": "99"}})
	}))
	t.Cleanup(other.Close)
	status := func(code int) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, code, map[string]any{"code": code}) }
	}
	body := func(s string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(s))
		}
	}
	f.fault(
		status(http.StatusServiceUnavailable),
		status(http.StatusInternalServerError),
		status(http.StatusBadRequest),
		body(`{"result": {"items": [`),                                             // malformed JSON
		body(`{"result": {"items": {"no": 1}, "next": "1"}}`),                      // items not an array
		body(`{"result": {"items": [{"ds": "licences", "id": "X", "no": 1}]}}`),    // changes but no cursor
		body(`{"result": {"items": [], "next": "`+strings.Repeat("9", 5000)+`"}}`), // over max_response_bytes
		func(w http.ResponseWriter, r *http.Request) { // redirect to another host
			http.Redirect(w, r, other.URL+"/feed", http.StatusFound)
		},
		func(w http.ResponseWriter, _ *http.Request) { // connection dropped
			panic(http.ErrAbortHandler)
		},
	)
	f.add(change("licences", "A", "created"))
	c := mustNew(t, feedYAML(srv.URL, ""))
	events, stop := watching(t, c, &v1.WatchRequest{})
	if ev := next(t, events); ev.RecordId != "A" {
		t.Fatalf("first event after the faults = %v, want A", ev)
	}
	if n := f.faultsLeft(); n != 0 {
		t.Errorf("%d faults not reached", n)
	}
	// And it keeps going after recovering, through another failure.
	waitFor(t, f.waiting, "a long poll")
	f.fault(status(http.StatusBadGateway))
	f.add(change("licences", "B", "created"))
	if ev := next(t, events); ev.RecordId != "B" {
		t.Fatalf("event = %v, want B", ev)
	}
	waitFor(t, f.waiting, "a long poll after B")
	if n := f.faultsLeft(); n != 0 {
		t.Errorf("the fault after B was not reached")
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if otherHits != 0 {
		t.Errorf("the redirect to another host was followed %d times", otherHits)
	}
}

func TestWatchEndsWithContext(t *testing.T) {
	t.Run("during a long poll", func(t *testing.T) {
		f, srv := startFeed(t)
		c := mustNew(t, feedYAML(srv.URL, ""))
		_, stop := watching(t, c, &v1.WatchRequest{})
		waitFor(t, f.waiting, "a long poll")
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
	})
	t.Run("during backoff", func(t *testing.T) {
		f, srv := startFeed(t)
		f.fault(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusServiceUnavailable, nil) })
		c := mustNew(t, strings.Replace(feedYAML(srv.URL, ""), "backoff: {min: 1ms, max: 4ms}", "backoff: {min: 1h}", 1))
		_, stop := watching(t, c, &v1.WatchRequest{})
		waitFor(t, f.seen, "the first request")
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
		if n := len(f.queryLog()); n != 1 {
			t.Errorf("%d requests, want 1 (the second waits an hour)", n)
		}
	})
	t.Run("between polls", func(t *testing.T) {
		f, srv := startFeed(t)
		c := mustNew(t, feedYAML(srv.URL, "\n  path: /feed\n  cursor_param: after\n  items: /result/items\n  cursor: /result/next\n  poll_interval: 1h"))
		_, stop := watching(t, c, &v1.WatchRequest{})
		waitFor(t, f.seen, "the first request")
		waitFor(t, f.seen, "the second request")
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		f, srv := startFeed(t)
		c := mustNew(t, feedYAML(srv.URL, ""))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := c.Watch(ctx, &v1.WatchRequest{}, func(*v1.ChangeEvent) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watch = %v, want context.Canceled", err)
		}
		if n := len(f.queryLog()); n != 0 {
			t.Errorf("%d requests with a cancelled context", n)
		}
	})
}

func TestWatchFiltersDatasets(t *testing.T) {
	f, srv := startFeed(t)
	c := mustNew(t, feedYAML(srv.URL, ""))
	noID := change("enterprises", "", "created")
	delete(noID, "id")
	delete(noID, "uscc")
	f.add(
		change("licences", "L1", "created"),
		change("parcels", "P1", "created"), // a dataset the connector does not serve
		noID,                               // unreadable: skipped
		change("enterprises", "E1", "removed"),
		change("licences", "L2", "created"),
		change("enterprises", "E2", "created"),
	)
	events, _ := watching(t, c, &v1.WatchRequest{Datasets: []string{"market.enterprises"}})
	for _, id := range []string{"E1", "E2"} {
		if ev := next(t, events); ev.Dataset != "market.enterprises" || ev.RecordId != id {
			t.Errorf("event = %v, want market.enterprises %s", ev, id)
		}
	}
	waitFor(t, f.waiting, "a long poll after the last change")
	select {
	case ev := <-events:
		t.Errorf("unexpected event %v", ev)
	default:
	}

	for _, ds := range []string{"market.parcels", "approval.permits"} {
		err := c.Watch(t.Context(), &v1.WatchRequest{Datasets: []string{"market.enterprises", ds}}, func(*v1.ChangeEvent) error { return nil })
		testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownDataset)
	}
}

func TestWatchReturnsWhenSendFails(t *testing.T) {
	f, srv := startFeed(t)
	c := mustNew(t, feedYAML(srv.URL, ""))
	f.add(change("licences", "L1", "created"), change("licences", "L2", "created"))
	stopErr := errors.New("subscriber gone")
	var got []string
	err := c.Watch(t.Context(), &v1.WatchRequest{}, func(ev *v1.ChangeEvent) error {
		got = append(got, ev.RecordId)
		return stopErr
	})
	if !errors.Is(err, stopErr) || !slices.Equal(got, []string{"L1"}) {
		t.Fatalf("Watch = %v after events %v, want %v after L1", err, got, stopErr)
	}
}

func TestWatchPollsWithoutLongPoll(t *testing.T) {
	f, srv := startFeed(t)
	f.bare = true
	c := mustNew(t, feedYAML(srv.URL, `
  path: /feed
  cursor_param: after
  item_cursor: /no
  event: {dataset: /ds, datasets: {licences: market.business_licences, enterprises: market.enterprises}, record_id: /id, op: /kind}
  start: earliest
  poll_interval: 1ms`))
	f.add(change("licences", "L1", "created"))
	events, _ := watching(t, c, &v1.WatchRequest{})
	if ev := next(t, events); ev.RecordId != "L1" {
		t.Fatalf("event = %v, want L1", ev)
	}
	// An empty answer keeps the cursor; the next change is picked up by a
	// later poll.
	waitFor(t, f.seen, "the first poll")
	waitFor(t, f.seen, "a poll after L1")
	f.add(change("enterprises", "E1", "delete"))
	if ev := next(t, events); ev.RecordId != "E1" || ev.Op != "delete" {
		t.Fatalf("event = %v, want E1 delete", ev)
	}
	for i, q := range f.queryLog() {
		if q.Has("hold") || q.Has("max") {
			t.Errorf("request %d: query %v asks to wait or limit", i, q)
		}
		if i > 0 && q.Get("after") == "" {
			t.Errorf("request %d: no cursor", i)
		}
	}
}

func TestWatchCapability(t *testing.T) {
	_, srv := startFeed(t)
	for _, tt := range []struct {
		name, yaml string
		watch      bool
	}{
		{"configured", feedYAML(srv.URL, ""), true},
		{"not configured", marketYAML(srv.URL, ""), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := mustNew(t, tt.yaml)
			d, err := c.Describe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(d.Capabilities, "watch"); got != tt.watch {
				t.Errorf("capabilities %v, want watch %v", d.Capabilities, tt.watch)
			}
			if !tt.watch {
				err := c.Watch(t.Context(), &v1.WatchRequest{}, func(*v1.ChangeEvent) error { return nil })
				testutil.WantCode(t, err, codes.Unimplemented, apierr.ReasonUnimplemented)
			}
		})
	}
}

func TestWatchOverGRPC(t *testing.T) {
	f, srv := startFeed(t)
	c := connectortest.InProcess(t, mustNew(t, feedYAML(srv.URL, "")))
	f.add(change("licences", "L1", "created"), change("enterprises", "L1", "removed"))
	events, stop := watching(t, c, &v1.WatchRequest{Datasets: []string{"market.enterprises"}})
	if ev := next(t, events); ev.Dataset != "market.enterprises" || ev.RecordId != "L1" || ev.Op != "delete" || ev.Keys["credit_code"] != "L1" || ev.At == nil {
		t.Errorf("event over gRPC = %v", ev)
	}
	waitFor(t, f.waiting, "a long poll")
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) && apierr.CodeOf(err) != codes.Canceled {
		t.Errorf("Watch over gRPC = %v after cancel, want nil or Canceled", err)
	}
	err := c.Watch(t.Context(), &v1.WatchRequest{Datasets: []string{"market.parcels"}}, func(*v1.ChangeEvent) error { return nil })
	testutil.WantCode(t, err, codes.InvalidArgument, apierr.ReasonUnknownDataset)
}

func TestWatchEventMapping(t *testing.T) {
	cfg, err := Parse([]byte(feedYAML("http://127.0.0.1:1", "")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := c.watch
	tests := []struct {
		name string
		item any
		want *v1.ChangeEvent
		err  string
	}{
		{"record id from key", map[string]any{"ds": "licences", "uscc": "K"}, &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "K", Keys: map[string]string{"credit_code": "K"}, Op: "upsert"}, ""},
		{"key from record id", map[string]any{"ds": "enterprises", "id": "R", "kind": "removed"}, &v1.ChangeEvent{Dataset: "market.enterprises", RecordId: "R", Keys: map[string]string{"credit_code": "R"}, Op: "delete"}, ""},
		{"dataset name as is", map[string]any{"ds": "market.enterprises", "id": 42}, &v1.ChangeEvent{Dataset: "market.enterprises", RecordId: "42", Keys: map[string]string{"credit_code": "42"}, Op: "upsert"}, ""},
		{"op delete as is", map[string]any{"ds": "licences", "id": "R", "kind": "delete"}, &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "R", Keys: map[string]string{"credit_code": "R"}, Op: "delete"}, ""},
		{"unknown op is an upsert", map[string]any{"ds": "licences", "id": "R", "kind": "archived"}, &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "R", Keys: map[string]string{"credit_code": "R"}, Op: "upsert"}, ""},
		{"unreadable time left out", map[string]any{"ds": "licences", "id": "R", "time": "yesterday"}, &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "R", Keys: map[string]string{"credit_code": "R"}, Op: "upsert"}, ""},
		{"date as time", map[string]any{"ds": "licences", "id": "R", "time": "2024-05-01"}, &v1.ChangeEvent{Dataset: "market.business_licences", RecordId: "R", Keys: map[string]string{"credit_code": "R"}, Op: "upsert", At: timestamppb.New(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC))}, ""},
		{"dataset not served", map[string]any{"ds": "approval.permits", "id": "R"}, nil, ""},
		{"no dataset with two datasets", map[string]any{"id": "R"}, nil, "no dataset"},
		{"no record id", map[string]any{"ds": "licences"}, nil, "no record id"},
		{"not an object", []any{1}, nil, "not an object"},
		{"record id an object", map[string]any{"ds": "licences", "id": map[string]any{}}, nil, "record_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := w.event(tt.item)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("event = %v, %v; want error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("event = %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	// A connector with one dataset takes changes without a dataset as its.
	one := mustNew(t, `
department: {id: approval}
base_url: http://127.0.0.1:1
datasets:
  approval.permits: {get: "/p/{permit_id}"}
watch: {path: /c, items: /changes, cursor: /last_seq}
`)
	got, err := one.watch.event(map[string]any{"record_id": "P1", "op": "upsert"})
	if err != nil || got.GetDataset() != "approval.permits" || got.GetKeys()["permit_id"] != "P1" {
		t.Errorf("event without dataset = %v, %v", got, err)
	}
}

func TestWatchBackoffGrowsToMax(t *testing.T) {
	w := &watcher{cfg: &Watch{Backoff: Backoff{Min: 100 * time.Millisecond, Max: time.Second}}}
	for _, tt := range []struct {
		n    int
		want time.Duration // before jitter
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {100, time.Second}} {
		for range 20 {
			if d := w.backoff(tt.n); d > tt.want || d < tt.want*3/4 {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", tt.n, d, tt.want*3/4, tt.want)
			}
		}
	}
}

func TestWatchConfigErrors(t *testing.T) {
	good := feedYAML("http://127.0.0.1:1", "")
	cfg, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("Parse(good): %v", err)
	}
	// Defaults.
	if _, err := Parse([]byte(strings.Replace(good, "  wait: 30s\n", "", 1))); err != nil {
		t.Fatal(err)
	}
	minimal := `
department: {id: approval}
base_url: http://127.0.0.1:1
datasets:
  approval.permits: {get: "/p/{permit_id}"}
watch: {path: /c, items: /changes, cursor: /last_seq, wait_param: wait}
`
	m, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	w := m.Watch
	if w.CursorParam != "since" || w.Wait != DefaultWatchWait || w.WaitFormat != "seconds" || w.Start != "latest" ||
		w.PollInterval != DefaultWatchPollInterval || w.Backoff != (Backoff{DefaultWatchBackoffMin, DefaultWatchBackoffMax}) ||
		w.Event.Dataset != "/dataset" || w.Event.RecordID != "/record_id" || w.Event.Op != "/op" || w.Event.At != "/at" {
		t.Errorf("defaults = %+v", w)
	}
	if got := formatWait(cfg.Watch.Wait, "seconds"); got != "30" {
		t.Errorf("wait in seconds = %q", got)
	}
	if got := formatWait(1500*time.Millisecond, "duration"); got != "1.5s" {
		t.Errorf("wait as duration = %q", got)
	}

	tests := []struct {
		name, from, to, want string
	}{
		{"relative path", "path: /feed", "path: feed", `watch.path: "feed" must start with "/"`},
		{"placeholder in path", "path: /feed", "path: /feed/{x}", `watch.path: "/feed/{x}" must not hold placeholders`},
		{"negative wait", "wait: 30s", "wait: -1s", "watch.wait: must not be negative"},
		{"wait under a second", "wait: 30s", "wait: 500ms", "watch.wait: 500ms is less than a second"},
		{"wait without wait_param", "  wait_param: hold\n", "", "watch.wait: needs wait_param"},
		{"bad wait format", "wait: 30s", "wait: 30s\n  wait_format: minutes", `watch.wait_format: "minutes" is not one of seconds, duration`},
		{"limit without limit_param", "  limit_param: max\n", "", "watch.limit: needs limit_param"},
		{"negative limit", "limit: 2", "limit: -2", "watch.limit: must not be negative"},
		{"same parameter twice", "limit_param: max", "limit_param: after", `watch.limit_param: "after" is also cursor_param`},
		{"no cursor", "  cursor: /result/next\n", "", "watch.cursor: give cursor"},
		{"bad cursor pointer", "cursor: /result/next", "cursor: result/next", `watch.cursor: JSON pointer "result/next" must start with "/"`},
		{"bad items pointer", "items: /result/items", "items: /result/~2", "watch.items: JSON pointer"},
		{"cursor is items", "cursor: /result/next", "cursor: /result/items", `watch.cursor: "/result/items" is also items`},
		{"bad item cursor", "cursor: /result/next", "item_cursor: no", "watch.item_cursor: JSON pointer"},
		{"bad event pointer", "record_id: /id", "record_id: id", "watch.event.record_id: JSON pointer"},
		{"bad at pointer", "at: /time", "at: time", "watch.event.at: JSON pointer"},
		{"dataset of the dictionary but not the connector", "enterprises: market.enterprises", "enterprises: approval.permits", `watch.event.datasets["enterprises"]: "approval.permits" is not a dataset of the connector`},
		{"bad op", "removed: delete", "removed: remove", `watch.event.ops["removed"]: "remove" is not one of upsert, delete`},
		{"key not a field", "region_code: /region", "colour: /c", `watch.event.keys: "colour" is not a field of any dataset of the connector`},
		{"empty key pointer", "region_code: /region", `region_code: ""`, "watch.event.keys.region_code: JSON pointer must not be empty"},
		{"bad start", "start: earliest", "start: now", `watch.start: "now" is not one of latest, earliest`},
		{"negative poll interval", "start: earliest", "start: earliest\n  poll_interval: -1s", "watch.poll_interval: must not be negative"},
		{"backoff max under min", "backoff: {min: 1ms, max: 4ms}", "backoff: {min: 1s, max: 4ms}", "watch.backoff.max: 4ms is less than min 1s"},
		{"negative backoff", "backoff: {min: 1ms, max: 4ms}", "backoff: {min: -1ms}", "watch.backoff.min: must not be negative"},
		{"misspelt key", "cursor_param: after", "cursor_parm: after", "field cursor_parm not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(good, tt.from, tt.to, 1)
			if in == good {
				t.Fatalf("replacement %q did not apply", tt.from)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// collect runs Watch until send has seen n events or returned stop, and
// returns the events and Watch's error.
func collect(t *testing.T, c *Connector, req *v1.WatchRequest, n int) ([]*v1.ChangeEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	enough := errors.New("enough events")
	var got []*v1.ChangeEvent
	err := c.Watch(ctx, req, func(ev *v1.ChangeEvent) error {
		got = append(got, ev)
		if len(got) == n {
			return enough
		}
		return nil
	})
	if !errors.Is(err, enough) {
		return got, err
	}
	return got, nil
}

func TestWatchEventCursors(t *testing.T) {
	type want struct{ id, cursor string }
	itemCursor := `
  path: /feed
  cursor_param: after
  limit_param: max
  limit: 3
  items: /result/items
  cursor: /result/next
  item_cursor: /no
  event: {dataset: /ds, datasets: {licences: market.business_licences, enterprises: market.enterprises}, record_id: /id, op: /kind}
  start: earliest`
	// The feed: 1 L1, 2 E1, 3 L2, 4 X (a dataset the connector does not
	// serve), 5 L3, 6 E2, 7 L4.
	tests := []struct {
		name, watch string
		datasets    []string
		want        []want
	}{
		// Answers of two changes: 1-2, 3-4, 5-6, 7. Only the last event
		// sent from an answer carries a cursor, the answer's, even when
		// skipped changes follow it.
		{"answer cursor on the last event", "", nil, []want{{"L1", ""}, {"E1", "2"}, {"L2", "4"}, {"L3", ""}, {"E2", "6"}, {"L4", "7"}}},
		// The answer 3-4 sends no event, so no cursor.
		{"filtered", "", []string{"market.enterprises"}, []want{{"E1", "2"}, {"E2", "6"}}},
		// With item_cursor, each event carries its own change's cursor.
		// Answers of three: 1-3, 4-6, 7.
		{"item cursors", itemCursor, nil, []want{{"L1", "1"}, {"E1", "2"}, {"L2", "3"}, {"L3", "5"}, {"E2", "6"}, {"L4", "7"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := startFeed(t)
			c := mustNew(t, feedYAML(srv.URL, tt.watch))
			f.add(change("licences", "L1", "created"), change("enterprises", "E1", "created"),
				change("licences", "L2", "created"), change("parcels", "X", "created"),
				change("licences", "L3", "created"), change("enterprises", "E2", "created"),
				change("licences", "L4", "created"))
			got, err := collect(t, c, &v1.WatchRequest{Datasets: tt.datasets}, len(tt.want))
			if err != nil {
				t.Fatalf("Watch = %v after %v", err, got)
			}
			var gotw []want
			for _, ev := range got {
				gotw = append(gotw, want{ev.RecordId, ev.Cursor})
			}
			if !slices.Equal(gotw, tt.want) {
				t.Errorf("events (id, cursor) = %v, want %v", gotw, tt.want)
			}
		})
	}
}

func TestWatchResumesAfterCursor(t *testing.T) {
	f, srv := startFeed(t)
	// start: latest would skip every change below; resume_after wins.
	c := mustNew(t, strings.Replace(feedYAML(srv.URL, ""), "start: earliest", "start: latest", 1))
	for _, id := range []string{"L1", "L2", "L3", "L4", "L5"} {
		f.add(change("licences", id, "created"))
	}
	got, err := collect(t, c, &v1.WatchRequest{ResumeAfter: "2"}, 3)
	if err != nil {
		t.Fatalf("Watch = %v after %v", err, got)
	}
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.RecordId)
	}
	if want := []string{"L3", "L4", "L5"}; !slices.Equal(ids, want) {
		t.Errorf("events after cursor 2 = %v, want %v", ids, want)
	}
	if q := f.queryLog()[0]; q.Get("after") != "2" || q.Get("hold") != "30" {
		t.Errorf("first request %v, want after=2 as a long poll (no skipping to the end)", q)
	}
}

// A resume from the last non-empty cursor a caller received never skips
// a change it did not receive, even when it stopped inside an answer.
func TestWatchResumeNeverSkipsAPartlyDeliveredAnswer(t *testing.T) {
	f, srv := startFeed(t)
	c := mustNew(t, feedYAML(srv.URL, "")) // answers of two changes
	for _, id := range []string{"L1", "L2", "L3", "L4", "L5"} {
		f.add(change("licences", id, "created"))
	}
	seen := map[string]bool{}
	cursor := ""
	// The first run takes L1, L2 and L3 and refuses L4, the second event
	// of the answer 3-4, as if the plugin died between the events of one
	// answer. Later runs resume from the last non-empty cursor.
	for run := 0; run < 10 && len(seen) < 5; run++ {
		stop := errors.New("plugin died")
		n := 0
		ctx, cancel := context.WithTimeout(t.Context(), guard)
		err := c.Watch(ctx, &v1.WatchRequest{ResumeAfter: cursor}, func(ev *v1.ChangeEvent) error {
			n++
			if n == 4 {
				return stop
			}
			seen[ev.RecordId] = true
			if ev.Cursor != "" {
				cursor = ev.Cursor
			}
			if len(seen) == 5 {
				return stop // all there: end the run
			}
			return nil
		})
		cancel()
		if !errors.Is(err, stop) {
			t.Fatalf("run %d: Watch = %v, want the send error", run, err)
		}
	}
	if cursor != "5" {
		t.Errorf("last cursor %q, want 5", cursor)
	}
	for _, id := range []string{"L1", "L2", "L3", "L4", "L5"} {
		if !seen[id] {
			t.Errorf("change %s was never delivered (delivered: %v)", id, seen)
		}
	}
}

func TestWatchRejectedResumeCursorStartsAfresh(t *testing.T) {
	for _, status := range []int{http.StatusGone, http.StatusBadRequest} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f, srv := startFeed(t)
			c := mustNew(t, strings.Replace(feedYAML(srv.URL, ""), "start: earliest", "start: latest", 1))
			f.add(change("licences", "OLD", "created"))
			f.fault(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, status, map[string]any{"code": status}) })
			events, _ := watching(t, c, &v1.WatchRequest{ResumeAfter: "expired"})
			q := waitFor(t, f.waiting, "a long poll")
			if q.Get("after") != "1" {
				t.Fatalf("long poll after %q, want the end of the feed, 1 (start latest)", q.Get("after"))
			}
			f.add(change("licences", "NEW", "created"))
			if ev := next(t, events); ev.RecordId != "NEW" {
				t.Fatalf("event = %v, want NEW", ev)
			}
			if q := f.queryLog()[0]; q.Get("after") != "expired" {
				t.Errorf("first request %v, want after=expired", q)
			}
		})
	}
}
