// Package cache keeps unshaped department records so that the gateway stays
// fast and keeps serving when a department is slow or down. It never holds a
// policy's view of a record: the query pipeline decides and shapes on every
// request, cached or not.
//
// Guarantees: concurrent misses on one key make one department call
// (coalescing); a failed department call never changes what is cached; a
// not-found answer is cached briefly (negative caching); when the department
// fails, a copy within MaxStale past its freshness is served marked stale.
//
// Two tiers: an in-process LRU bounded by bytes and, when configured, Redis
// shared by every gateway node. Lookups go memory, then Redis, then the
// department; a Redis hit fills memory. Values in Redis are sealed with
// AES-256-GCM (see Keyring) and bound to their cache key; Redis failures
// degrade to memory and the departments and never reach a caller.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/telemetry"
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
	// MaxBytes bounds the in-process tier; 0 disables that tier (requests
	// then go to Redis when configured, else to the department, still
	// coalesced).
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
	// Redis, when set, adds the shared tier that all gateway nodes read and
	// fill. Check it with Options.Validate: without a keyring the shared
	// tier is disabled.
	Redis *RedisOptions
	// Registry receives the cache metrics (a private registry when nil).
	Registry prometheus.Registerer
	// Logger receives degradations and rejected values (slog.Default when
	// nil).
	Logger *slog.Logger
	// Now is the clock of freshness decisions (time.Now when nil).
	Now func() time.Time
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if o.MaxBytes < 0 || o.MaxStale < 0 || o.NegativeTTL < 0 || o.FetchTimeout < 0 {
		return errors.New("cache: sizes and durations must not be negative")
	}
	if o.Redis != nil {
		return o.Redis.Validate()
	}
	return nil
}

// Cache is a read-through cache in front of a Source, with an in-process
// tier and an optional shared Redis tier. It implements query.Fetcher.
type Cache struct {
	src   Source
	opts  Options
	mem   *lru
	redis *redisTier
	group singleflight.Group
	m     *cacheMetrics
	log   *slog.Logger

	genMu sync.Mutex
	gens  map[string]uint64 // per dataset: bumped by every invalidation
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

	// The decoded records, made once: hits share them read-only (the query
	// pipeline builds new records when it shapes, it never changes these).
	decodeOnce sync.Once
	resp       *v1.FetchResponse
	decodeErr  error
}

// size estimates the memory an entry holds: its bytes and their decoded form.
func (e *entry) size() int64 { return 3*int64(len(e.data)) + 256 }

// records returns the decoded records of a positive entry.
func (e *entry) records() (*v1.FetchResponse, error) {
	e.decodeOnce.Do(func() {
		if e.resp != nil {
			return
		}
		var r v1.FetchResponse
		if err := proto.Unmarshal(e.data, &r); err != nil {
			e.decodeErr = fmt.Errorf("decoding cached records: %w", err)
			return
		}
		e.resp = &r
	})
	return e.resp, e.decodeErr
}

// Tiers named in the hits metric.
const (
	tierMemory = "memory"
	tierRedis  = "redis"
)

// New returns a cache in front of src. When opts.Redis is set but invalid
// (see Options.Validate) the shared tier is left out and the error logged.
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
	c := &Cache{src: src, opts: opts, m: newCacheMetrics(opts.Registry), log: opts.Logger, gens: map[string]uint64{}}
	c.mem = newLRU(opts.MaxBytes, func(key string) { c.m.evictions.WithLabelValues(datasetOf(key)).Inc() })
	if opts.Redis != nil {
		if err := opts.Redis.Validate(); err != nil {
			c.log.Error("shared cache tier disabled", "err", err)
		} else {
			c.redis = newRedisTier(*opts.Redis, c.m, c.log)
		}
	}
	return c
}

// Key returns the cache key of a fetch: the dataset and a digest of a
// canonical form of the request. Lookups by keys, filters and pages (the
// common case) are written out directly (lookupForm); a request with a
// bounding box or a geometry is deterministically marshalled instead. The
// two forms cannot coincide: the direct one starts with a zero byte, which
// no protobuf encoding does (field number 0 does not exist).
func Key(req *v1.FetchRequest) (string, error) {
	var sum [sha256.Size]byte
	if req.GetBbox() == nil && req.GetGeometry() == nil {
		bp := keyBufs.Get().(*[]byte)
		b := lookupForm((*bp)[:0], req)
		sum = sha256.Sum256(b)
		if cap(b) <= 64<<10 {
			*bp = b
			keyBufs.Put(bp)
		}
	} else {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
		if err != nil {
			return "", fmt.Errorf("marshalling fetch request: %w", err)
		}
		sum = sha256.Sum256(b)
	}
	return req.GetDataset() + "|" + hex.EncodeToString(sum[:16]), nil
}

// keyBufs holds the buffers Key writes lookupForm into.
var keyBufs = sync.Pool{New: func() any { return new([]byte) }}

// lookupForm appends the canonical form of a request without bbox or
// geometry: a zero byte, then the dataset, the keys and the filter (each
// map's entries in key order) and the page token, every string
// length-prefixed and every map preceded by its size, then the page size.
// TestKeyCoversEveryField fails when FetchRequest gains a field this form
// does not cover.
func lookupForm(b []byte, req *v1.FetchRequest) []byte {
	b = append(b, 0)
	b = appendKeyString(b, req.GetDataset())
	for _, m := range [...]map[string]string{req.GetKeys(), req.GetFilter()} {
		var arr [16]string
		names := arr[:0]
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		b = binary.AppendUvarint(b, uint64(len(names)))
		for _, k := range names {
			b = appendKeyString(appendKeyString(b, k), m[k])
		}
	}
	b = appendKeyString(b, req.GetPageToken())
	return binary.AppendVarint(b, int64(req.GetPageSize()))
}

func appendKeyString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func datasetOf(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '|' {
			return key[:i]
		}
	}
	return key
}

// loaded is the outcome of one coalesced load.
type loaded struct {
	e        *entry
	delivery v1.Delivery
	// stale is an expired copy found in Redis, for stale-if-error.
	stale *entry
}

// Fetch returns the records for req from the cache or the department:
// memory, then Redis, then one coalesced department call. Within a traced
// request it is span "cache.fetch", telling the tier that answered and
// whether the lookup was coalesced with another.
func (c *Cache) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	ctx, span := telemetry.Start(ctx, "cache.fetch")
	if !span.IsRecording() {
		res, _, err := c.fetch(ctx, ds, req)
		return res, err
	}
	defer span.End()
	res, how, err := c.fetch(ctx, ds, req)
	span.SetAttributes(
		attribute.String(telemetry.AttrDataset, ds.Name),
		attribute.String(telemetry.AttrTier, how.tier),
		attribute.Bool(telemetry.AttrCoalesced, how.coalesced),
	)
	if err == nil {
		span.SetAttributes(attribute.String(telemetry.AttrDelivery, strings.ToLower(strings.TrimPrefix(res.Delivery.String(), "DELIVERY_"))))
	} else {
		span.SetAttributes(attribute.String(telemetry.AttrReason, apierr.From(err).Reason))
		if apierr.CodeOf(err) != codes.NotFound {
			span.SetStatus(otelcodes.Error, "fetch failed")
		}
	}
	return res, err
}

// answered tells how a fetch was answered, for its span.
type answered struct {
	tier      string // tierMemory, tierRedis or tierMiss
	coalesced bool
}

// tierMiss names, in spans, a fetch that no cache tier answered fresh.
const tierMiss = "miss"

func (c *Cache) fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, answered, error) {
	how := answered{tier: tierMiss}
	key, err := Key(req)
	if err != nil {
		return query.Result{}, how, err
	}
	now := c.opts.Now()
	cached, ok := c.mem.get(key)
	if ok && now.Before(cached.freshTill) {
		c.m.hit.Get(hitLabels{ds.Name, tierMemory}).Inc()
		how.tier = tierMemory
		res, err := c.result(ds, cached, v1.Delivery_DELIVERY_CACHE)
		return res, how, err
	}

	ch := c.group.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
		defer cancel()
		return c.load(fctx, ds, key, req)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		code, reason := codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded
		if errors.Is(ctx.Err(), context.Canceled) {
			code, reason = codes.Canceled, apierr.ReasonCanceled
		}
		return query.Result{}, how, apierr.Newf(code, reason,
			"waiting for department %q: %v", ds.Department, ctx.Err()).With("department", ds.Department)
	}
	if res.Shared {
		c.m.coalesced.WithLabelValues(ds.Name).Inc()
		how.coalesced = true
	}
	l, _ := res.Val.(loaded)
	if res.Err == nil && l.delivery == v1.Delivery_DELIVERY_CACHE {
		c.m.hit.Get(hitLabels{ds.Name, tierRedis}).Inc()
		how.tier = tierRedis
		r, err := c.result(ds, l.e, l.delivery)
		return r, how, err
	}
	c.m.misses.WithLabelValues(ds.Name).Inc()
	if res.Err != nil {
		if apierr.CodeOf(res.Err) == codes.NotFound {
			return query.Result{}, how, res.Err
		}
		// Stale-if-error: serve the freshest old copy within MaxStale.
		var stale *entry
		if ok && !cached.notFound {
			stale = cached
		}
		if l.stale != nil && (stale == nil || l.stale.freshTill.After(stale.freshTill)) {
			stale = l.stale
		}
		if stale != nil && now.Sub(stale.freshTill) <= c.opts.MaxStale {
			c.m.stale.WithLabelValues(ds.Name).Inc()
			c.log.WarnContext(ctx, "serving stale records", "dataset", ds.Name, "age", now.Sub(stale.fetchedAt), "err", res.Err)
			r, err := c.result(ds, stale, v1.Delivery_DELIVERY_STALE)
			return r, how, err
		}
		return query.Result{}, how, res.Err
	}
	r, err := c.result(ds, l.e, l.delivery)
	return r, how, err
}

// load is the one coalesced lookup behind a memory miss: Redis, then the
// department. Only a successful answer or a not-found is stored; failures
// leave the cache as it was.
func (c *Cache) load(ctx context.Context, ds *datasets.Dataset, key string, req *v1.FetchRequest) (any, error) {
	var stale *entry
	// The generation is read before Redis: a value read there may predate
	// an invalidation that happens before it is copied into memory.
	gen := c.generation(ds.Name)
	if c.redis != nil {
		if e, ok := c.redis.get(ctx, ds.Name, key); ok {
			if c.opts.Now().Before(e.freshTill) {
				if c.opts.MaxBytes > 0 && c.generation(ds.Name) == gen {
					c.mem.put(key, e)
				}
				return loaded{e: e, delivery: v1.Delivery_DELIVERY_CACHE}, nil
			}
			if !e.notFound {
				stale = e
			}
		}
	}
	resp, err := c.src.Fetch(ctx, req)
	now := c.opts.Now()
	if err != nil {
		if apierr.CodeOf(err) == codes.NotFound && c.opts.NegativeTTL > 0 {
			e := &entry{dataset: ds.Name, notFound: true, fetchedAt: now, freshTill: now.Add(c.opts.NegativeTTL), keys: req.GetKeys()}
			c.store(ctx, ds, key, e, gen, c.opts.NegativeTTL)
		}
		return loaded{stale: stale}, err
	}
	data, err := proto.Marshal(resp)
	if err != nil {
		return loaded{stale: stale}, fmt.Errorf("marshalling department response: %w", err)
	}
	fresh := c.freshness(ds)
	e := &entry{dataset: ds.Name, data: data, fetchedAt: now, freshTill: now.Add(fresh), keys: req.GetKeys(), resp: resp}
	for _, r := range resp.GetRecords() {
		e.recordIDs = append(e.recordIDs, r.GetId())
	}
	c.store(ctx, ds, key, e, gen, fresh+c.opts.MaxStale)
	return loaded{e: e, delivery: v1.Delivery_DELIVERY_LIVE}, nil
}

// store puts e in both tiers unless an invalidation of its dataset happened
// since the department call began (the answer may predate the change).
func (c *Cache) store(ctx context.Context, ds *datasets.Dataset, key string, e *entry, gen uint64, redisTTL time.Duration) {
	if c.generation(ds.Name) != gen {
		return
	}
	if c.opts.MaxBytes > 0 {
		c.mem.put(key, e)
	}
	if c.redis != nil {
		c.redis.put(ctx, key, e, redisTTL)
	}
}

func (c *Cache) generation(dataset string) uint64 {
	c.genMu.Lock()
	defer c.genMu.Unlock()
	return c.gens[dataset]
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
	resp, err := e.records()
	if err != nil {
		return query.Result{}, err
	}
	// Every answer drawn from e shares its decoded records.
	return query.Result{Records: resp.GetRecords(), NextPageToken: resp.GetNextPageToken(), Delivery: d, FetchedAt: e.fetchedAt, Shared: true}, nil
}

// Invalidate evicts every cached answer of the event's dataset that holds the
// record ev.RecordId or was looked up by one of ev.Keys, from memory and from
// Redis. It returns how many in-process entries were evicted. When Redis
// cannot be reached the Redis part is retried once Redis is back.
func (c *Cache) Invalidate(ev *v1.ChangeEvent) int {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.FetchTimeout)
	defer cancel()
	n, _ := c.InvalidateContext(ctx, ev)
	return n
}

// InvalidateContext is Invalidate with a context for the Redis part. It
// returns the number of in-process entries evicted and the Redis error, if
// any (the memory eviction has happened either way).
func (c *Cache) InvalidateContext(ctx context.Context, ev *v1.ChangeEvent) (int, error) {
	defer c.m.changes.WithLabelValues(ev.GetDataset()).Inc()
	c.genMu.Lock()
	c.gens[ev.GetDataset()]++
	c.genMu.Unlock()
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
	if c.redis == nil {
		return n, nil
	}
	rn, err := c.redis.invalidate(ctx, ev)
	if rn > 0 {
		c.m.evictions.WithLabelValues(ev.GetDataset()).Add(float64(rn))
	}
	if err != nil {
		return n, fmt.Errorf("invalidating %s in redis: %w", ev.GetDataset(), err)
	}
	return n, nil
}

// Bytes reports the size of the in-process tier.
func (c *Cache) Bytes() int64 { return c.mem.bytes() }

// Healthy reports whether the shared tier answers; nil when none is
// configured. Redis is not critical (the cache degrades to memory and the
// departments), so /readyz shows this as detail rather than failing.
func (c *Cache) Healthy(ctx context.Context) error {
	if c.redis == nil {
		return nil
	}
	return c.redis.healthy(ctx)
}

// Close releases the Redis connections the cache opened.
func (c *Cache) Close() error {
	if c.redis == nil {
		return nil
	}
	return c.redis.close()
}

type cacheMetrics struct {
	hits, misses, stale, coalesced, evictions, redisErrors, rejected, changes *prometheus.CounterVec
	redisUp                                                                   prometheus.Gauge
	// hit holds the hits counter of each dataset and tier.
	hit telemetry.Series[hitLabels, prometheus.Counter]
}

type hitLabels struct{ dataset, tier string }

func newCacheMetrics(reg prometheus.Registerer) *cacheMetrics {
	mk := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"dataset"}, labels...))
		reg.MustRegister(v)
		return v
	}
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tongban_cache_redis_up", Help: "1 while the shared Redis tier is in use, 0 while it is skipped after errors."})
	reg.MustRegister(up)
	m := &cacheMetrics{
		hits:        mk("tongban_cache_hits_total", "Queries answered from the cache, by tier (memory or redis).", "tier"),
		misses:      mk("tongban_cache_misses_total", "Queries that no cache tier answered fresh."),
		stale:       mk("tongban_cache_stale_serves_total", "Stale copies served because the department failed."),
		coalesced:   mk("tongban_cache_coalesced_total", "Queries that shared another query's lookup."),
		evictions:   mk("tongban_cache_evictions_total", "Entries evicted for size or by change events."),
		redisErrors: mk("tongban_cache_redis_errors_total", "Failed Redis operations (the cache degraded to memory and departments)."),
		rejected:    mk("tongban_cache_redis_rejected_total", "Values in Redis that could not be opened (tampered, unknown key) and were treated as misses."),
		changes:     mk("tongban_cache_change_events_total", "Change events applied (invalidations)."),
		redisUp:     up,
	}
	m.hit.New = func(l hitLabels) prometheus.Counter { return m.hits.WithLabelValues(l.dataset, l.tier) }
	return m
}
