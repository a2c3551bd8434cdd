package rest

// The change-feed part of the rest connector: settings, their validation,
// and Watch, which follows a department's change feed by (long) polling.
//
// Settings (YAML), under the connector's settings:
//
//	watch:
//	  path: /api/changes
//	  cursor_param: since        # the cursor is sent as ?since=<cursor>
//	  wait_param: wait           # empty: the department does not long-poll
//	  wait: 25s                  # sent as ?wait=25 (wait_format: seconds) or ?wait=25s (duration)
//	  wait_format: seconds
//	  limit_param: limit         # optional, sent as ?limit=<limit>
//	  limit: 100
//	  items: /changes            # JSON pointer to the array of changes
//	  cursor: /last_seq          # JSON pointer to the next cursor in the response
//	  item_cursor: /seq          # or: pointer into the last item
//	  event:
//	    dataset: /dataset        # defaults: /dataset, /record_id, /op, /at
//	    datasets: {permits: approval.permits}   # department values to dataset names
//	    record_id: /record_id
//	    op: /op
//	    ops: {created: upsert, removed: delete}  # department values to upsert/delete
//	    at: /at
//	    keys: {permit_id: /permit_id}
//	  start: latest              # or earliest
//	  poll_interval: 5s          # least time between two requests that return no change
//	  backoff: {min: 1s, max: 1m}

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/connectors/builtin/internal/conn"
	"github.com/tongban/tongban/connectors/builtin/internal/httpc"
	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Defaults of Watch.
const (
	DefaultWatchWait         = 25 * time.Second
	DefaultWatchLimit        = 100
	DefaultWatchPollInterval = 5 * time.Second
	DefaultWatchBackoffMin   = time.Second
	DefaultWatchBackoffMax   = time.Minute
)

// Values of Watch.Start.
const (
	StartLatest   = "latest"
	StartEarliest = "earliest"
)

// Values of Watch.WaitFormat.
const (
	WaitSeconds  = "seconds"
	WaitDuration = "duration"
)

// Change operations of a ChangeEvent.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Watch says how the connector follows the department's change feed. Each
// request sends the cursor reached so far; the answer holds the changes
// after it and the cursor to send next.
type Watch struct {
	// Path is the feed's path, e.g. "/api/changes".
	Path string `yaml:"path"`
	// CursorParam is the query parameter carrying the cursor (default
	// "since"). The first request of start "earliest" has no cursor.
	CursorParam string `yaml:"cursor_param"`
	// WaitParam is the query parameter asking the department to hold the
	// request until a change arrives or Wait passes (long polling); empty
	// means the department does not long-poll and is polled every
	// PollInterval.
	WaitParam string `yaml:"wait_param"`
	// Wait is the long-poll time asked for (default 25s). The requests of
	// the feed may take Wait longer than the connector's timeout.
	Wait time.Duration `yaml:"wait"`
	// WaitFormat is how Wait is written: "seconds" (default, "25") or
	// "duration" ("25s").
	WaitFormat string `yaml:"wait_format"`
	// LimitParam is the query parameter bounding the changes of one answer;
	// empty sends none.
	LimitParam string `yaml:"limit_param"`
	// Limit is the value sent in LimitParam (default 100).
	Limit int `yaml:"limit"`
	// Items is a JSON pointer to the array of changes; empty means the body
	// is the array.
	Items string `yaml:"items"`
	// Cursor is a JSON pointer to the next cursor in the response.
	Cursor string `yaml:"cursor"`
	// ItemCursor is a JSON pointer to a change's own cursor, read from the
	// last change of an answer when Cursor is not set or absent. At least
	// one of Cursor and ItemCursor must be set.
	ItemCursor string `yaml:"item_cursor"`
	// Event maps a change of the feed to a change event.
	Event Event `yaml:"event"`
	// Start is where a Watch call begins: "latest" (default; changes made
	// before the call are skipped) or "earliest" (the whole feed the
	// department keeps). A call given WatchRequest.resume_after continues
	// after that cursor instead.
	Start string `yaml:"start"`
	// PollInterval is the least time between the starts of two requests
	// when the first returned no change (default 5s). It paces departments
	// that do not long-poll, and those that answer a long poll at once.
	PollInterval time.Duration `yaml:"poll_interval"`
	// Backoff is the wait after a failed request, doubling from Min to Max.
	Backoff Backoff `yaml:"backoff"`
}

// Event maps one change of the department's feed, a JSON object, to a
// change event. Pointers are RFC 6901 JSON pointers into the change.
type Event struct {
	// Dataset points to the dataset of the change (default "/dataset").
	// A change without one belongs to the connector's only dataset, when it
	// has only one.
	Dataset string `yaml:"dataset"`
	// Datasets maps the department's dataset values to dataset names of the
	// dictionary; values not listed are taken as dataset names.
	Datasets map[string]string `yaml:"datasets"`
	// RecordID points to the changed record's identifier (default
	// "/record_id"); when absent, the value of a single-key dataset's key.
	RecordID string `yaml:"record_id"`
	// Op points to the operation (default "/op").
	Op string `yaml:"op"`
	// Ops maps the department's operation values to "upsert" or "delete".
	// "upsert" and "delete" stand for themselves; any other value, or none,
	// is an "upsert": a change the gateway must not miss.
	Ops map[string]string `yaml:"ops"`
	// At points to the time of the change (default "/at").
	At string `yaml:"at"`
	// Keys maps fields of the changed record to pointers: its key fields,
	// and other fields the feed carries (e.g. region_code) that let the
	// gateway match cached lookups and check jurisdiction. A single-key
	// dataset's key, when not mapped or absent, is the record id.
	Keys map[string]string `yaml:"keys"`
}

// Backoff is an exponential backoff.
type Backoff struct {
	// Min is the first wait (default 1s).
	Min time.Duration `yaml:"min"`
	// Max is the longest wait (default 1m).
	Max time.Duration `yaml:"max"`
}

func (w *Watch) defaults() {
	w.CursorParam = cmp(w.CursorParam, "since")
	w.WaitFormat = cmp(w.WaitFormat, WaitSeconds)
	w.Start = cmp(w.Start, StartLatest)
	if w.WaitParam != "" && w.Wait == 0 {
		w.Wait = DefaultWatchWait
	}
	if w.LimitParam != "" && w.Limit == 0 {
		w.Limit = DefaultWatchLimit
	}
	if w.PollInterval == 0 {
		w.PollInterval = DefaultWatchPollInterval
	}
	if w.Backoff.Min == 0 {
		w.Backoff.Min = DefaultWatchBackoffMin
	}
	if w.Backoff.Max == 0 {
		w.Backoff.Max = max(DefaultWatchBackoffMax, w.Backoff.Min)
	}
	e := &w.Event
	e.Dataset = cmp(e.Dataset, "/dataset")
	e.RecordID = cmp(e.RecordID, "/record_id")
	e.Op = cmp(e.Op, "/op")
	e.At = cmp(e.At, "/at")
}

// validate checks the settings; names are the connector's datasets, already
// checked against the dictionary. Errors name the key path, e.g.
// watch.event.keys.colour.
func (w *Watch) validate(names []string) error {
	if !strings.HasPrefix(w.Path, "/") {
		return fmt.Errorf("watch.path: %q must start with \"/\"", w.Path)
	}
	if strings.ContainsAny(w.Path, "{}#") {
		return fmt.Errorf("watch.path: %q must not hold placeholders or a fragment", w.Path)
	}
	if _, err := url.Parse(w.Path); err != nil {
		return fmt.Errorf("watch.path: %w", err)
	}
	if w.Wait < 0 {
		return errors.New("watch.wait: must not be negative")
	}
	if w.WaitParam == "" && w.Wait > 0 {
		return errors.New("watch.wait: needs wait_param, the query parameter that asks the department to wait")
	}
	if w.WaitParam != "" && w.WaitFormat == WaitSeconds && w.Wait < time.Second {
		return fmt.Errorf("watch.wait: %v is less than a second, the unit of wait_format seconds", w.Wait)
	}
	if !slices.Contains([]string{WaitSeconds, WaitDuration}, w.WaitFormat) {
		return fmt.Errorf("watch.wait_format: %q is not one of seconds, duration", w.WaitFormat)
	}
	if w.Limit < 0 {
		return errors.New("watch.limit: must not be negative")
	}
	if w.LimitParam == "" && w.Limit > 0 {
		return errors.New("watch.limit: needs limit_param, the query parameter carrying it")
	}
	params := map[string]string{}
	for _, p := range []struct{ key, name string }{{"cursor_param", w.CursorParam}, {"wait_param", w.WaitParam}, {"limit_param", w.LimitParam}} {
		if p.name == "" {
			continue
		}
		if other, ok := params[p.name]; ok {
			return fmt.Errorf("watch.%s: %q is also %s", p.key, p.name, other)
		}
		params[p.name] = p.key
	}
	if w.Cursor == "" && w.ItemCursor == "" {
		return errors.New("watch.cursor: give cursor (a pointer into the response) or item_cursor (a pointer into a change)")
	}
	ptrs := []struct{ key, ptr string }{
		{"watch.items", w.Items}, {"watch.cursor", w.Cursor}, {"watch.item_cursor", w.ItemCursor},
		{"watch.event.dataset", w.Event.Dataset}, {"watch.event.record_id", w.Event.RecordID},
		{"watch.event.op", w.Event.Op}, {"watch.event.at", w.Event.At},
	}
	for _, p := range ptrs {
		if _, err := conn.ParsePointer(p.ptr); err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
	}
	if w.Items != "" && w.Items == w.Cursor {
		return fmt.Errorf("watch.cursor: %q is also items", w.Cursor)
	}
	if !slices.Contains([]string{StartLatest, StartEarliest}, w.Start) {
		return fmt.Errorf("watch.start: %q is not one of latest, earliest", w.Start)
	}
	if w.PollInterval < 0 {
		return errors.New("watch.poll_interval: must not be negative")
	}
	if w.Backoff.Min < 0 {
		return errors.New("watch.backoff.min: must not be negative")
	}
	if w.Backoff.Max < w.Backoff.Min {
		return fmt.Errorf("watch.backoff.max: %v is less than min %v", w.Backoff.Max, w.Backoff.Min)
	}
	for _, v := range slices.Sorted(maps.Keys(w.Event.Datasets)) {
		if name := w.Event.Datasets[v]; !slices.Contains(names, name) {
			return fmt.Errorf("watch.event.datasets[%q]: %q is not a dataset of the connector (datasets: %s)", v, name, strings.Join(names, ", "))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(w.Event.Ops)) {
		if op := w.Event.Ops[v]; op != OpUpsert && op != OpDelete {
			return fmt.Errorf("watch.event.ops[%q]: %q is not one of upsert, delete", v, op)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(w.Event.Keys)) {
		if !slices.ContainsFunc(names, func(n string) bool {
			ds, ok := conn.Dictionary().Dataset(n)
			return ok && ds.HasField(f)
		}) {
			return fmt.Errorf("watch.event.keys: %q is not a field of any dataset of the connector (datasets: %s)", f, strings.Join(names, ", "))
		}
		ptr := w.Event.Keys[f]
		if _, err := conn.ParsePointer(ptr); err != nil || ptr == "" {
			if err == nil {
				err = errors.New("JSON pointer must not be empty")
			}
			return fmt.Errorf("watch.event.keys.%s: %w", f, err)
		}
	}
	return nil
}

// watcher is the compiled Watch settings.
type watcher struct {
	cfg    *Watch
	dept   string
	client *httpc.Client
	sets   map[string]*datasets.Dataset
	only   string // the connector's dataset when it has one

	items, cursor, itemCursor conn.Pointer
	dataset, recordID, op, at conn.Pointer
	keys                      map[string]conn.Pointer
}

// newWatcher compiles validated settings. The feed has its own HTTP client,
// built from the connector's settings (same authentication, response limit
// and redirect rules) with the timeout lengthened by the long-poll wait.
func newWatcher(cfg *Config, sets map[string]*datasets.Dataset) (*watcher, error) {
	w := cfg.Watch
	s := cfg.Settings
	if s.Timeout == 0 {
		s.Timeout = httpc.DefaultTimeout
	}
	if w.WaitParam != "" {
		s.Timeout += w.Wait
	}
	client, err := httpc.New(cfg.Department.ID, s)
	if err != nil {
		return nil, err
	}
	wt := &watcher{
		cfg:        w,
		dept:       cfg.Department.ID,
		client:     client,
		sets:       sets,
		items:      conn.MustPointer(w.Items),
		cursor:     conn.MustPointer(w.Cursor),
		itemCursor: conn.MustPointer(w.ItemCursor),
		dataset:    conn.MustPointer(w.Event.Dataset),
		recordID:   conn.MustPointer(w.Event.RecordID),
		op:         conn.MustPointer(w.Event.Op),
		at:         conn.MustPointer(w.Event.At),
		keys:       map[string]conn.Pointer{},
	}
	if len(sets) == 1 {
		for n := range sets {
			wt.only = n
		}
	}
	for f, p := range w.Event.Keys {
		wt.keys[f] = conn.MustPointer(p)
	}
	return wt, nil
}

var _ sdk.Watcher = (*Connector)(nil)

// Watch follows the department's change feed and calls send with a change
// event for each change of a dataset in req.Datasets (all the connector's
// datasets when empty), in the feed's order. It returns ctx's error when
// ctx ends and send's error when send fails. Failed requests to the
// department are logged and retried with backoff; Watch does not return on
// them. Changes the connector cannot read (an unknown dataset, no record id)
// are logged and skipped. A connector without watch settings answers
// UNIMPLEMENTED.
//
// Events carry the feed's cursor: with item_cursor set, each event carries
// its own change's cursor; the last event sent from an answer of the feed
// carries the answer's cursor (changes after it in that answer were
// skipped). Other events carry none, so the last non-empty cursor a caller
// received never lies beyond a change it did not receive. Given
// req.ResumeAfter, such a cursor, Watch continues the feed after it instead
// of at Start. When the department rejects that cursor (HTTP 400, or 410
// Gone for a cursor it no longer keeps) on the first request, Watch logs a
// warning and falls back to Start.
func (c *Connector) Watch(ctx context.Context, req *v1.WatchRequest, send func(*v1.ChangeEvent) error) error {
	w := c.watch
	if w == nil {
		return apierr.Newf(codes.Unimplemented, apierr.ReasonUnimplemented,
			"the connector of department %q has no change feed configured", c.cfg.Department.ID)
	}
	var want map[string]bool
	for _, name := range req.GetDatasets() {
		if _, err := c.base.Dataset(name); err != nil {
			return err
		}
		if want == nil {
			want = map[string]bool{}
		}
		want[name] = true
	}
	log := slog.Default().With("connector", Type, "department", w.dept)
	var (
		cursor     string
		haveCursor bool
		positioned = w.cfg.Start == StartEarliest
		failures   int
		// resuming is true until the department first answers a request
		// after req.ResumeAfter.
		resuming = req.GetResumeAfter() != ""
	)
	if resuming {
		cursor, haveCursor, positioned = req.GetResumeAfter(), true, true
		log.DebugContext(ctx, "resuming the change feed", "cursor", cursor)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		began := time.Now()
		b, err := w.poll(ctx, cursor, haveCursor, positioned)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if resuming && (errors.Is(err, httpc.ErrNotFound) || apierr.CodeOf(err) == codes.InvalidArgument) {
				// A cursor the department does not (or no longer) know:
				// changes since it cannot be had, so start afresh.
				log.WarnContext(ctx, "the department rejected the resume cursor; starting the change feed afresh, changes since the cursor may be missed",
					"cursor", cursor, "start", w.cfg.Start, "err", err)
				resuming = false
				cursor, haveCursor, positioned = "", false, w.cfg.Start == StartEarliest
				continue
			}
			failures++
			d := w.backoff(failures)
			log.WarnContext(ctx, "change feed request failed; retrying", "err", err, "failures", failures, "retry_in", d)
			if !sleep(ctx, d) {
				return ctx.Err()
			}
			continue
		}
		resuming = false
		if failures > 0 {
			log.InfoContext(ctx, "change feed answers again", "after_failures", failures)
			failures = 0
		}
		if !positioned {
			// Start "latest": read up to the end of the feed, sending nothing.
			moved := b.haveCursor && (!haveCursor || b.cursor != cursor)
			if b.haveCursor {
				cursor, haveCursor = b.cursor, true
			}
			if len(b.items) == 0 || !moved {
				positioned = true
				log.DebugContext(ctx, "change feed positioned at its end", "cursor", cursor)
			}
			continue
		}
		var events []*v1.ChangeEvent
		for i, it := range b.items {
			ev, err := w.event(it)
			if err != nil {
				log.WarnContext(ctx, "skipping a change the connector cannot read", "err", err, "index", i, "cursor", cursor)
				continue
			}
			if ev == nil || (want != nil && !want[ev.Dataset]) {
				continue
			}
			ev.Cursor = w.itemCursorOf(it)
			events = append(events, ev)
		}
		if n := len(events); n > 0 && b.haveCursor {
			// The changes after the last event sent, if any, are skipped
			// ones: resuming after the whole answer loses nothing.
			events[n-1].Cursor = b.cursor
		}
		for _, ev := range events {
			if err := send(ev); err != nil {
				return fmt.Errorf("sending change of %s %s: %w", ev.Dataset, ev.RecordId, err)
			}
		}
		if b.haveCursor {
			cursor, haveCursor = b.cursor, true
		}
		if len(b.items) == 0 {
			if !sleep(ctx, time.Until(began.Add(w.cfg.PollInterval))) {
				return ctx.Err()
			}
		}
	}
}

// batch is one answer of the feed.
type batch struct {
	items      []any
	cursor     string
	haveCursor bool
}

// itemCursorOf returns the change's own cursor (watch.item_cursor), or ""
// when there is none or it cannot be read.
func (w *watcher) itemCursorOf(item any) string {
	if w.itemCursor.IsRoot() {
		return ""
	}
	v, ok := w.itemCursor.Eval(item)
	if !ok || v == nil {
		return ""
	}
	s, err := conn.IDString(v)
	if err != nil {
		return ""
	}
	return s
}

// poll sends one request: after cursor (when have), long-polling when wait
// is true and the department supports it. A department answering 410 Gone
// (a cursor it no longer keeps) gives httpc.ErrNotFound.
func (w *watcher) poll(ctx context.Context, cursor string, have, wait bool) (*batch, error) {
	q := url.Values{}
	if have {
		q.Set(w.cfg.CursorParam, cursor)
	}
	if wait && w.cfg.WaitParam != "" {
		q.Set(w.cfg.WaitParam, formatWait(w.cfg.Wait, w.cfg.WaitFormat))
	}
	if w.cfg.LimitParam != "" {
		q.Set(w.cfg.LimitParam, strconv.Itoa(w.cfg.Limit))
	}
	u, err := w.client.URL(w.cfg.Path, q)
	if err != nil {
		return nil, err
	}
	doc, err := w.client.GetJSON(ctx, u, accept, []int{http.StatusGone})
	if errors.Is(err, httpc.ErrNotFound) {
		return nil, fmt.Errorf("reading the change feed: 410 Gone for cursor %q: %w", cursor, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the change feed: %w", err)
	}
	itemsv, ok := w.items.Eval(doc)
	items, isArr := itemsv.([]any)
	if !ok || (itemsv != nil && !isArr) {
		return nil, conn.BadData(w.dept, fmt.Errorf("change feed: no array at %q", w.cfg.Items))
	}
	b := &batch{items: items}
	var cv any
	if !w.cursor.IsRoot() {
		cv, _ = w.cursor.Eval(doc)
	}
	if cv == nil && !w.itemCursor.IsRoot() && len(items) > 0 {
		cv, _ = w.itemCursor.Eval(items[len(items)-1])
	}
	if cv != nil {
		s, err := conn.IDString(cv)
		if err != nil || s == "" {
			return nil, conn.BadData(w.dept, fmt.Errorf("change feed: cursor %v is not a string or number", cv))
		}
		b.cursor, b.haveCursor = s, true
	} else if len(items) > 0 {
		// Without a cursor the same changes would come again and again.
		return nil, conn.BadData(w.dept, fmt.Errorf("change feed: %d changes but no cursor at %q or %q", len(items), w.cfg.Cursor, w.cfg.ItemCursor))
	}
	return b, nil
}

// event maps one change of the feed. It returns nil, nil for a change of a
// dataset the connector does not serve.
func (w *watcher) event(item any) (*v1.ChangeEvent, error) {
	if _, ok := item.(map[string]any); !ok {
		return nil, fmt.Errorf("change is a %T, not an object", item)
	}
	name := w.only
	if v, ok := w.dataset.Eval(item); ok && v != nil {
		s, err := conn.IDString(v)
		if err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
		name = s
		if mapped, ok := w.cfg.Event.Datasets[s]; ok {
			name = mapped
		}
	}
	if name == "" {
		return nil, fmt.Errorf("change has no dataset at %q", w.cfg.Event.Dataset)
	}
	ds, ok := w.sets[name]
	if !ok {
		// Feeds may carry datasets the connector is not configured for.
		return nil, nil
	}
	ev := &v1.ChangeEvent{Dataset: name, Op: OpUpsert}
	for f, p := range w.keys {
		if !ds.HasField(f) {
			continue
		}
		v, ok := p.Eval(item)
		if !ok || v == nil {
			continue
		}
		s, err := conn.IDString(v)
		if err != nil {
			return nil, fmt.Errorf("%s: keys.%s: %w", name, f, err)
		}
		if s == "" {
			continue
		}
		if ev.Keys == nil {
			ev.Keys = map[string]string{}
		}
		ev.Keys[f] = s
	}
	if v, ok := w.recordID.Eval(item); ok && v != nil {
		s, err := conn.IDString(v)
		if err != nil {
			return nil, fmt.Errorf("%s: record_id: %w", name, err)
		}
		ev.RecordId = s
	}
	if len(ds.Keys) == 1 {
		k := ds.Keys[0]
		switch {
		case ev.RecordId == "" && ev.Keys[k] != "":
			ev.RecordId = ev.Keys[k]
		case ev.RecordId != "" && ev.Keys[k] == "":
			if ev.Keys == nil {
				ev.Keys = map[string]string{}
			}
			ev.Keys[k] = ev.RecordId
		}
	}
	if ev.RecordId == "" {
		return nil, fmt.Errorf("%s: change has no record id at %q", name, w.cfg.Event.RecordID)
	}
	if v, ok := w.op.Eval(item); ok && v != nil {
		s, _ := conn.IDString(v)
		if mapped, ok := w.cfg.Event.Ops[s]; ok {
			ev.Op = mapped
		} else if s == OpDelete {
			ev.Op = OpDelete
		}
	}
	if v, ok := w.at.Eval(item); ok {
		// A change time that cannot be read is left out: the change itself
		// must still reach the gateway.
		ev.At, _ = conn.Timestamp(v)
	}
	return ev, nil
}

// backoff returns the wait after the n-th failure in a row: Min doubling up
// to Max, less up to a quarter at random so that connectors do not retry in
// step.
func (w *watcher) backoff(n int) time.Duration {
	lo, hi := w.cfg.Backoff.Min, w.cfg.Backoff.Max
	d := float64(lo) * math.Pow(2, float64(min(n-1, 62)))
	if d > float64(hi) {
		d = float64(hi)
	}
	return time.Duration(d - d/4*rand.Float64())
}

func formatWait(d time.Duration, format string) string {
	if format == WaitDuration {
		return d.String()
	}
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
