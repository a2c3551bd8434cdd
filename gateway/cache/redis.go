package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// RedisOptions configure the shared tier: a Redis server (standalone,
// Sentinel or Cluster) that every gateway node reads and fills, holding only
// sealed values.
type RedisOptions struct {
	// Addrs are the Redis addresses: one for a standalone server, the seed
	// nodes of a Cluster, or the Sentinels when MasterName is set.
	Addrs []string
	// MasterName selects Sentinel mode: the name of the monitored master.
	MasterName string
	// Cluster selects Cluster mode even when Addrs holds one seed address
	// (several addresses without MasterName always mean Cluster).
	Cluster bool
	// Username and Password authenticate to Redis (ACL user or requirepass).
	Username string
	Password string
	// DB selects the database of a standalone or Sentinel server.
	DB int
	// KeyPrefix starts every key the cache writes; default "tongban:cache:".
	KeyPrefix string
	// Keyring seals values and derives key names. Required.
	Keyring *Keyring
	// Timeout bounds dialling and each read or write; default 500ms.
	Timeout time.Duration
	// Cooldown is how long Redis is skipped after an error before one
	// request probes it again; default 5s.
	Cooldown time.Duration
	// Client, when set, is used instead of dialling Addrs (for sharing one
	// connection pool, e.g. with the quota limiter). The cache does not close
	// a client it was given.
	Client redis.UniversalClient
}

// Validate reports what is missing from the options.
func (o *RedisOptions) Validate() error {
	if o.Keyring == nil {
		return errors.New("cache.redis: a keyring (encryption keys) is required: Redis never holds plain values")
	}
	if o.Client == nil && len(o.Addrs) == 0 {
		return errors.New("cache.redis: addrs is empty")
	}
	return nil
}

// NewRedisClient returns the go-redis universal client for o: a plain
// client, a Sentinel failover client or a Cluster client.
func NewRedisClient(o RedisOptions) redis.UniversalClient {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         o.Addrs,
		MasterName:    o.MasterName,
		IsClusterMode: o.Cluster,
		Username:      o.Username,
		Password:      o.Password,
		DB:            o.DB,
		DialTimeout:   timeout,
		ReadTimeout:   timeout,
		WriteTimeout:  timeout,
		PoolTimeout:   timeout,
		MaxRetries:    1,
		DialerRetries: 1,
	})
}

// redisTier is the shared tier. Every failure degrades to a miss: it is
// logged and counted, opens the circuit, and never reaches a caller.
type redisTier struct {
	client redis.UniversalClient
	owned  bool
	prefix string
	ring   *Keyring
	brk    *circuit
	m      *cacheMetrics
	log    *slog.Logger

	mu      sync.Mutex
	pending []*v1.ChangeEvent // invalidations not yet applied to Redis
}

// maxPending bounds the invalidations remembered while Redis is down.
const maxPending = 10000

func newRedisTier(o RedisOptions, m *cacheMetrics, log *slog.Logger) *redisTier {
	t := &redisTier{client: o.Client, prefix: o.KeyPrefix, ring: o.Keyring, m: m, log: log}
	if t.client == nil {
		t.client, t.owned = NewRedisClient(o), true
	}
	if t.prefix == "" {
		t.prefix = "tongban:cache:"
	}
	cool := o.Cooldown
	if cool <= 0 {
		cool = 5 * time.Second
	}
	t.brk = &circuit{cooldown: cool}
	m.redisUp.Set(1)
	return t
}

func (t *redisTier) valueKey(dataset, key string) string {
	return t.prefix + "v:" + dataset + ":" + t.ring.currentDigest(key)
}

func indexNames(ev *v1.ChangeEvent) []string {
	var out []string
	if ev.GetRecordId() != "" {
		out = append(out, ev.GetDataset()+"\x00r\x00"+ev.GetRecordId())
	}
	for k, v := range ev.GetKeys() {
		out = append(out, ev.GetDataset()+"\x00k\x00"+k+"\x00"+v)
	}
	return out
}

func (t *redisTier) indexKey(digest string) string { return t.prefix + "i:" + digest }

// failed records a Redis failure: counted, logged, circuit opened.
func (t *redisTier) failed(ctx context.Context, dataset, op string, err error) {
	t.m.redisErrors.WithLabelValues(dataset).Inc()
	if t.brk.failure() {
		t.m.redisUp.Set(0)
		t.log.WarnContext(ctx, "redis cache tier unavailable; serving from memory and departments", "op", op, "dataset", dataset, "err", err, "retry_after", t.brk.cooldown)
	} else {
		t.log.DebugContext(ctx, "redis cache tier error", "op", op, "dataset", dataset, "err", err)
	}
}

func (t *redisTier) succeeded(ctx context.Context) {
	if t.brk.success() {
		t.m.redisUp.Set(1)
		t.log.InfoContext(ctx, "redis cache tier recovered")
		t.flushPending(ctx)
	}
}

// get returns the entry stored under key, or false on a miss, an error or a
// value that cannot be opened.
func (t *redisTier) get(ctx context.Context, dataset, key string) (*entry, bool) {
	if !t.brk.allow() {
		return nil, false
	}
	name := t.valueKey(dataset, key)
	b, err := t.client.Get(ctx, name).Bytes()
	if errors.Is(err, redis.Nil) {
		t.succeeded(ctx)
		return nil, false
	}
	if err != nil {
		t.failed(ctx, dataset, "get", err)
		return nil, false
	}
	t.succeeded(ctx)
	pt, err := t.ring.Open(b, []byte(key))
	var e *entry
	if err == nil {
		e, err = decodeEntry(dataset, pt)
	}
	if err != nil {
		// Never log the value: only where it was and why it was refused.
		t.m.rejected.WithLabelValues(dataset).Inc()
		t.log.WarnContext(ctx, "cache value in redis rejected; treating as a miss", "dataset", dataset, "redis_key", name, "err", err)
		if derr := t.client.Del(ctx, name).Err(); derr != nil {
			t.failed(ctx, dataset, "del", derr)
		}
		return nil, false
	}
	return e, true
}

// put stores e under key for ttl and indexes it by its record ids and keys
// so that change events can find it.
func (t *redisTier) put(ctx context.Context, key string, e *entry, ttl time.Duration) {
	if ttl < time.Millisecond || !t.brk.allow() {
		return
	}
	sealed, err := t.ring.Seal(encodeEntry(e), []byte(key))
	if err != nil {
		t.log.ErrorContext(ctx, "sealing cache value", "dataset", e.dataset, "err", err)
		return
	}
	name := t.valueKey(e.dataset, key)
	idx := indexNames(&v1.ChangeEvent{Dataset: e.dataset, Keys: e.keys})
	for _, id := range e.recordIDs {
		idx = append(idx, indexNames(&v1.ChangeEvent{Dataset: e.dataset, RecordId: id})...)
	}
	_, err = t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, name, sealed, ttl)
		for _, s := range idx {
			ik := t.indexKey(t.ring.currentDigest(s))
			p.SAdd(ctx, ik, name)
			// NX sets a TTL on a new set; GT only ever extends it, so the
			// index outlives every value it points at.
			p.ExpireNX(ctx, ik, ttl)
			p.ExpireGT(ctx, ik, ttl)
		}
		return nil
	})
	if err != nil {
		t.failed(ctx, e.dataset, "set", err)
		return
	}
	t.succeeded(ctx)
}

// invalidate deletes every value indexed under the event's record id or
// keys, under every key of the ring. When Redis cannot be reached the event
// is kept and applied when Redis is back.
func (t *redisTier) invalidate(ctx context.Context, ev *v1.ChangeEvent) (int, error) {
	if !t.brk.allow() {
		t.remember(ev)
		return 0, errors.New("redis circuit open")
	}
	n, err := t.apply(ctx, ev)
	if err != nil {
		t.failed(ctx, ev.GetDataset(), "invalidate", err)
		t.remember(ev)
		return 0, err
	}
	t.succeeded(ctx)
	return n, nil
}

func (t *redisTier) apply(ctx context.Context, ev *v1.ChangeEvent) (int, error) {
	var idx []string
	for _, s := range indexNames(ev) {
		for _, d := range t.ring.nameDigests(s) {
			idx = append(idx, t.indexKey(d))
		}
	}
	if len(idx) == 0 {
		return 0, nil
	}
	cmds := make([]*redis.StringSliceCmd, len(idx))
	if _, err := t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range idx {
			cmds[i] = p.SMembers(ctx, k)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("reading cache index: %w", err)
	}
	seen := map[string]bool{}
	var names []string
	for _, c := range cmds {
		for _, n := range c.Val() {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	var dels []*redis.IntCmd
	if _, err := t.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		// One key per DEL: Cluster mode forbids multi-key commands across
		// slots.
		for _, n := range names {
			dels = append(dels, p.Del(ctx, n))
		}
		for _, k := range idx {
			p.Del(ctx, k)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("deleting cached values: %w", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

func (t *redisTier) remember(ev *v1.ChangeEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) >= maxPending {
		t.pending = t.pending[1:]
		t.log.Error("redis cache tier: too many invalidations pending while Redis is down; the oldest was dropped")
	}
	t.pending = append(t.pending, ev)
}

// flushPending applies the invalidations that arrived while Redis was down.
func (t *redisTier) flushPending(ctx context.Context) {
	t.mu.Lock()
	todo := t.pending
	t.pending = nil
	t.mu.Unlock()
	for i, ev := range todo {
		if _, err := t.apply(ctx, ev); err != nil {
			t.mu.Lock()
			t.pending = append(todo[i:], t.pending...)
			t.mu.Unlock()
			t.failed(ctx, ev.GetDataset(), "invalidate", err)
			return
		}
	}
	if len(todo) > 0 {
		t.log.InfoContext(ctx, "applied invalidations held while Redis was down", "count", len(todo))
	}
}

func (t *redisTier) pendingCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// healthy pings Redis (whatever the circuit says) and feeds the result to the
// circuit, so that a health check also ends an outage.
func (t *redisTier) healthy(ctx context.Context) error {
	if err := t.client.Ping(ctx).Err(); err != nil {
		t.failed(ctx, "", "ping", err)
		return fmt.Errorf("redis cache tier: %w", err)
	}
	t.succeeded(ctx)
	return nil
}

func (t *redisTier) close() error {
	if t.owned {
		return t.client.Close()
	}
	return nil
}

// circuit keeps a dead Redis from adding its timeout to every request: after
// a failure Redis is skipped for cooldown, then one request probes it; a
// success closes the circuit.
type circuit struct {
	cooldown time.Duration

	mu      sync.Mutex
	open    bool
	until   time.Time
	probing bool
}

// allow reports whether a Redis call may be made now.
func (c *circuit) allow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return true
	}
	if c.probing || time.Now().Before(c.until) {
		return false
	}
	c.probing = true
	return true
}

// success closes the circuit; it reports whether it was open.
func (c *circuit) success() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.open
	c.open, c.probing = false, false
	return was
}

// failure opens the circuit for cooldown; it reports whether it was closed.
func (c *circuit) failure() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.open
	c.open, c.probing, c.until = true, false, time.Now().Add(c.cooldown)
	return !was
}

func (c *circuit) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}
