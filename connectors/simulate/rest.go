package simulate

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Page is the list shape of the REST departments.
type Page[T any] struct {
	Items      []T `json:"items"`
	Page       int `json:"page"`
	PageSize   int `json:"page_size"`
	Total      int `json:"total"`
	TotalPages int `json:"total_pages"`
}

// Paging limits of the REST list endpoints.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// checkParams reports the first query parameter not in allowed.
func checkParams(q url.Values, allowed ...string) error {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unknown query parameter %q; allowed: %s", k, strings.Join(allowed, ", "))
		}
		if len(q[k]) > 1 {
			return fmt.Errorf("query parameter %q is given %d times", k, len(q[k]))
		}
	}
	return nil
}

func positiveInt(q url.Values, name string, def, maxVal int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s %q is not a positive integer", name, s)
	}
	if maxVal > 0 && n > maxVal {
		return 0, fmt.Errorf("%s %d is larger than %d", name, n, maxVal)
	}
	return n, nil
}

// paginate cuts one page of items.
func paginate[T any](items []T, q url.Values) (Page[T], error) {
	page, err := positiveInt(q, "page", 1, 0)
	if err != nil {
		return Page[T]{}, err
	}
	size, err := positiveInt(q, "page_size", DefaultPageSize, MaxPageSize)
	if err != nil {
		return Page[T]{}, err
	}
	p := Page[T]{Page: page, PageSize: size, Total: len(items), TotalPages: (len(items) + size - 1) / size, Items: []T{}}
	if from := (page - 1) * size; from < len(items) {
		p.Items = items[from:min(from+size, len(items))]
	}
	return p, nil
}

// regionMatch reports whether a region code matches a filter: a six-digit
// code matches itself, a two- or four-digit code matches as a prefix
// (province or city).
func regionMatch(filter, code string) bool {
	return filter == "" || strings.HasPrefix(code, filter)
}

func checkRegionFilter(f string) error {
	if f == "" {
		return nil
	}
	if len(f) != 2 && len(f) != 4 && len(f) != 6 {
		return fmt.Errorf("region_code %q must have 2, 4 or 6 digits", f)
	}
	for _, c := range f {
		if c < '0' || c > '9' {
			return fmt.Errorf("region_code %q must have 2, 4 or 6 digits", f)
		}
	}
	return nil
}

// Change is an event of a department's change feed.
type Change struct {
	// Seq increases by one with every change, starting at 1.
	Seq        int64  `json:"seq"`
	Dataset    string `json:"dataset"`
	RecordID   string `json:"record_id"`
	PermitID   string `json:"permit_id,omitempty"`
	CreditCode string `json:"credit_code,omitempty"`
	// RegionCode is the changed record's region, so that a subscriber's
	// jurisdiction can be applied to the change.
	RegionCode string `json:"region_code,omitempty"`
	// Op is "upsert" or "delete".
	Op string    `json:"op"`
	At time.Time `json:"at"`
}

// ChangeList is the response of a change feed.
type ChangeList struct {
	Changes []Change `json:"changes"`
	// LastSeq is the sequence number to pass as since next time.
	LastSeq int64 `json:"last_seq"`
}

// Change feed limits.
const (
	maxChangeWait  = 30 * time.Second
	maxChangeBatch = 1000
)

// feed is an in-memory change feed.
type feed struct {
	mu      sync.Mutex
	changes []Change
	notify  chan struct{} // closed and replaced on every append
}

func newFeed() *feed { return &feed{notify: make(chan struct{})} }

func (f *feed) add(c Change) Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.Seq = int64(len(f.changes)) + 1
	c.At = time.Now().UTC()
	f.changes = append(f.changes, c)
	close(f.notify)
	f.notify = make(chan struct{})
	return c
}

// since returns up to limit changes after seq, the last sequence number and
// a channel closed on the next change.
func (f *feed) since(seq int64, limit int) ([]Change, int64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int64(len(f.changes))
	if seq >= n {
		return []Change{}, max(seq, n), f.notify
	}
	out := slices.Clone(f.changes[max(seq, 0):min(n, max(seq, 0)+int64(limit))])
	return out, out[len(out)-1].Seq, f.notify
}

// serve answers GET ...changes?since=&wait=&limit=. With wait, the request
// waits up to that long for a change when there is none after since.
func (f *feed) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkParams(q, "since", "wait", "limit"); err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	var since int64
	if s := q.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("since %q is not a non-negative integer", s))
			return
		}
		since = n
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("wait %q is not a duration such as 10s", s))
			return
		}
		wait = min(d, maxChangeWait)
	}
	limit, err := positiveInt(q, "limit", 100, maxChangeBatch)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	changes, last, next := f.since(since, limit)
	if len(changes) == 0 && wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		select {
		case <-next:
			changes, last, _ = f.since(since, limit)
		case <-ctx.Done():
		}
	}
	writeJSON(w, http.StatusOK, "application/json; charset=utf-8", ChangeList{Changes: changes, LastSeq: last})
}
