// Package cache keeps unshaped department records so that the gateway stays
// fast and keeps serving when a department is slow or down. It never holds a
// policy's view of a record: the query pipeline decides and shapes on every
// request, cached or not.
//
// Guarantees: concurrent misses on one key make one department call
// (coalescing); a failed department call never changes what is cached; a
// not-found answer is cached briefly (negative caching); when the department
// fails, a copy within MaxStale past its freshness is served marked stale.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Source fetches records from the departments (the connector host).
type Source interface {
	Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error)
}

// Options configure a Cache.
type Options struct {
	// MaxBytes bounds the in-process tier; 0 disables caching (every request
	// goes to the department, still coalesced).
	MaxBytes int64
	// MaxStale is how long past its freshness a copy may be served when the
	// department fails.
	MaxStale time.Duration
	// NegativeTTL is how long a not-found answer is remembered.
	NegativeTTL time.Duration
	// Freshness overrides the dictionary freshness per dataset.
	Freshness map[string]time.Duration
	// FetchTimeout bounds one coalesced department call, which runs detached
	// from any single caller's cancellation.
	FetchTimeout time.Duration
	Registry     prometheus.Registerer
	Logger       *slog.Logger
	Now          func() time.Time
}

// Cache is a read-through cache in front of a Source. It implements
// query.Fetcher.
type Cache struct {
	src   Source
	opts  Options
	mem   *lru
	group singleflight.Group
	m     *cacheMetrics
	log   *slog.Logger
}

var _ query.Fetcher = (*Cache)(nil)

// entry is one cached answer: a marshalled FetchResponse or a not-found.
type entry struct {
	dataset   string
	data      []byte
	notFound  bool
	fetchedAt time.Time
	freshTill time.Time
	// recordIDs and keys let change events evict the entry.
	recordIDs []string
	keys      map[string]string
}

func (e *entry) size() int64 { return int64(len(e.data)) + 256 }

// New returns a cache in front of src.
func New(src Source, opts Options) *Cache {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 30 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	c := &Cache{src: src, opts: opts, m: newCacheMetrics(opts.Registry), log: opts.Logger}
	c.mem = newLRU(opts.MaxBytes, func(key string) { c.m.evictions.WithLabelValues(datasetOf(key)).Inc() })
	return c
}

// Key returns the cache key of a fetch: the dataset and a digest of the
// canonical (deterministically marshalled) request.
func Key(req *v1.FetchRequest) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("marshalling fetch request: %w", err)
	}
	sum := sha256.Sum256(b)
	return req.GetDataset() + "|" + hex.EncodeToString(sum[:16]), nil
}

func datasetOf(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '|' {
			return key[:i]
		}
	}
	return key
}

type fetched struct {
	e *entry
}

// Fetch returns the records for req from the cache or the department.
func (c *Cache) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	key, err := Key(req)
	if err != nil {
		return query.Result{}, err
	}
	now := c.opts.Now()
	cached, ok := c.mem.get(key)
	if ok && now.Before(cached.freshTill) {
		c.m.hits.WithLabelValues(ds.Name).Inc()
		return c.result(ds, cached, v1.Delivery_DELIVERY_CACHE)
	}
	c.m.misses.WithLabelValues(ds.Name).Inc()

	ch := c.group.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
		defer cancel()
		return c.fill(fctx, ds, key, req)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return query.Result{}, apierr.Newf(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded,
			"waiting for department %q: %v", ds.Department, ctx.Err()).With("department", ds.Department)
	}
	if res.Shared {
		c.m.coalesced.WithLabelValues(ds.Name).Inc()
	}
	if res.Err != nil {
		if apierr.CodeOf(res.Err) == codes.NotFound {
			return query.Result{}, res.Err
		}
		// Stale-if-error: serve the old copy within MaxStale.
		if ok && !cached.notFound && now.Sub(cached.freshTill) <= c.opts.MaxStale {
			c.m.stale.WithLabelValues(ds.Name).Inc()
			c.log.WarnContext(ctx, "serving stale records", "dataset", ds.Name, "age", now.Sub(cached.fetchedAt), "err", res.Err)
			return c.result(ds, cached, v1.Delivery_DELIVERY_STALE)
		}
		return query.Result{}, res.Err
	}
	return c.result(ds, res.Val.(fetched).e, v1.Delivery_DELIVERY_LIVE)
}

// fill makes the one department call for a key and stores the answer. Only a
// successful answer or a not-found is stored; failures leave the cache as it
// was.
func (c *Cache) fill(ctx context.Context, ds *datasets.Dataset, key string, req *v1.FetchRequest) (any, error) {
	resp, err := c.src.Fetch(ctx, req)
	now := c.opts.Now()
	if err != nil {
		if apierr.CodeOf(err) == codes.NotFound && c.opts.NegativeTTL > 0 && c.opts.MaxBytes > 0 {
			c.mem.put(key, &entry{dataset: ds.Name, notFound: true, fetchedAt: now, freshTill: now.Add(c.opts.NegativeTTL), keys: req.GetKeys()})
		}
		return nil, err
	}
	data, err := proto.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("marshalling department response: %w", err)
	}
	e := &entry{dataset: ds.Name, data: data, fetchedAt: now, freshTill: now.Add(c.freshness(ds)), keys: req.GetKeys()}
	for _, r := range resp.GetRecords() {
		e.recordIDs = append(e.recordIDs, r.GetId())
	}
	if c.opts.MaxBytes > 0 {
		c.mem.put(key, e)
	}
	return fetched{e}, nil
}

func (c *Cache) freshness(ds *datasets.Dataset) time.Duration {
	if d, ok := c.opts.Freshness[ds.Name]; ok {
		return d
	}
	return ds.Freshness
}

func (c *Cache) result(ds *datasets.Dataset, e *entry, d v1.Delivery) (query.Result, error) {
	if e.notFound {
		return query.Result{}, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no record of %s matches the request", ds.Name).
			With("dataset", ds.Name).With("department", ds.Department)
	}
	var resp v1.FetchResponse
	if err := proto.Unmarshal(e.data, &resp); err != nil {
		return query.Result{}, fmt.Errorf("decoding cached records: %w", err)
	}
	return query.Result{Records: resp.GetRecords(), NextPageToken: resp.GetNextPageToken(), Delivery: d, FetchedAt: e.fetchedAt}, nil
}

// Invalidate evicts every cached answer of dataset that holds the record
// recordID or was looked up by one of keys. It returns how many entries were
// evicted.
func (c *Cache) Invalidate(ev *v1.ChangeEvent) int {
	n := c.mem.removeIf(func(_ string, e *entry) bool {
		if e.dataset != ev.GetDataset() {
			return false
		}
		for _, id := range e.recordIDs {
			if id == ev.GetRecordId() {
				return true
			}
		}
		for k, v := range ev.GetKeys() {
			if e.keys[k] == v {
				return true
			}
		}
		return false
	})
	if n > 0 {
		c.m.evictions.WithLabelValues(ev.GetDataset()).Add(float64(n))
	}
	return n
}

// Bytes reports the size of the in-process tier.
func (c *Cache) Bytes() int64 { return c.mem.bytes() }


type cacheMetrics struct {
	hits, misses, stale, coalesced, evictions *prometheus.CounterVec
}

func newCacheMetrics(reg prometheus.Registerer) *cacheMetrics {
	mk := func(name, help string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"dataset"})
		reg.MustRegister(v)
		return v
	}
	return &cacheMetrics{
		hits:      mk("tongban_cache_hits_total", "Queries answered from the cache."),
		misses:    mk("tongban_cache_misses_total", "Queries that went to the department."),
		stale:     mk("tongban_cache_stale_serves_total", "Stale copies served because the department failed."),
		coalesced: mk("tongban_cache_coalesced_total", "Queries that shared another query's department call."),
		evictions: mk("tongban_cache_evictions_total", "Entries evicted for size or by change events."),
	}
}
