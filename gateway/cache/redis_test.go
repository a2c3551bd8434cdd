package cache

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

// Personal data the department returns; none of it may appear in Redis.
const (
	residentID  = "130102199003071237"
	holderName  = "王秀英"
	companyName = "石家庄市长安区恒信建材经营部"
)

// piiSource returns one licence per credit code carrying personal data.
type piiSource struct {
	calls atomic.Int64
	gate  chan struct{}
	err   atomic.Pointer[error]
}

func (s *piiSource) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	s.calls.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if e := s.err.Load(); e != nil {
		return nil, *e
	}
	code := req.GetKeys()["credit_code"]
	if code == "missing" {
		return nil, apierr.New(codes.NotFound, apierr.ReasonNotFound, "no such licence")
	}
	fields, _ := structpb.NewStruct(map[string]any{
		"credit_code":      code,
		"name":             companyName,
		"legal_rep":        holderName,
		"legal_rep_id_no":  residentID,
		"registered_place": "河北省石家庄市长安区建设北大街",
	})
	return &v1.FetchResponse{Records: []*v1.SourceRecord{{Id: "LIC-" + code, Fields: fields}}}, nil
}

type node struct {
	*Cache
	reg *prometheus.Registry
}

type cluster struct {
	redis *testenv.Process
	src   *piiSource
	clk   *clock
	ring  *Keyring
	ds    *datasets.Dataset
	rdb   *redis.Client
}

func newCluster(t *testing.T) *cluster { return newClusterB(t) }

func newClusterB(t testing.TB) *cluster {
	t.Helper()
	ring, err := NewRandomKeyring("k1")
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr})
	t.Cleanup(func() { rdb.Close() })
	ds, _ := datasets.Default().Dataset("market.business_licences")
	return &cluster{
		redis: p, src: &piiSource{}, ring: ring, ds: ds, rdb: rdb,
		clk: &clock{t: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)},
	}
}

// node starts one "gateway node": its own cache (own memory, own metrics)
// sharing the cluster's Redis, source and clock.
func (cl *cluster) node(t *testing.T, cooldown time.Duration) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := New(cl.src, Options{
		MaxBytes: 1 << 20, MaxStale: time.Hour, NegativeTTL: time.Minute, Now: cl.clk.now,
		Registry: reg, Logger: slog.New(slog.DiscardHandler),
		Redis: &RedisOptions{Addrs: []string{cl.redis.Addr}, Keyring: cl.ring, KeyPrefix: "tb:", Cooldown: cooldown, Timeout: 5 * time.Second},
	})
	t.Cleanup(func() { c.Close() })
	return &node{Cache: c, reg: reg}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func fetchName(t *testing.T, n *node, ds *datasets.Dataset, code string) v1.Delivery {
	t.Helper()
	r, err := n.Fetch(context.Background(), ds, req(code))
	if err != nil {
		t.Fatalf("fetch %s: %v", code, err)
	}
	if got := r.Records[0].GetFields().GetFields()["legal_rep"].GetStringValue(); got != holderName {
		t.Fatalf("fetch %s: legal_rep = %q, want %q", code, got, holderName)
	}
	return r.Delivery
}

func TestTwoNodesShareRedis(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, time.Hour), cl.node(t, time.Hour)
	if d := fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_LIVE {
		t.Fatalf("fill on a: delivery %v", d)
	}
	if d := fetchName(t, b, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("b after a's fill: delivery %v, want cache", d)
	}
	if d := fetchName(t, b, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("b again: delivery %v, want cache", d)
	}
	if n := cl.src.calls.Load(); n != 1 {
		t.Fatalf("department calls = %d, want 1", n)
	}
	if got := counter(t, b.reg, "tongban_cache_hits_total", "tier", "redis"); got != 1 {
		t.Fatalf("b redis hits = %v, want 1", got)
	}
	if got := counter(t, b.reg, "tongban_cache_hits_total", "tier", "memory"); got != 1 {
		t.Fatalf("b memory hits = %v, want 1 (the redis hit filled memory)", got)
	}

	t.Run("negative answers are shared", func(t *testing.T) {
		before := cl.src.calls.Load()
		for _, n := range []*node{a, b} {
			if _, err := n.Fetch(context.Background(), cl.ds, req("missing")); apierr.CodeOf(err) != codes.NotFound {
				t.Fatalf("err = %v, want NOT_FOUND", err)
			}
		}
		if got := cl.src.calls.Load() - before; got != 1 {
			t.Fatalf("department calls for a missing record on two nodes = %d, want 1", got)
		}
	})
}

func TestRedisHoldsNoPlainText(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(t, time.Hour)
	codes := []string{"91130100MA0G5XKQ2U", "91130102MA0CX1RT7K", "missing"}
	for _, code := range codes[:2] {
		fetchName(t, a, cl.ds, code)
	}
	_, _ = a.Fetch(context.Background(), cl.ds, req("missing"))

	ctx := context.Background()
	keys, err := cl.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 3 {
		t.Fatalf("redis holds %d keys, want the values and their indexes: %v", len(keys), keys)
	}
	secrets := append([]string{residentID, holderName, companyName, "LIC-", "河北省"}, codes...)
	values := 0
	for _, k := range keys {
		var blobs []string
		switch typ := cl.rdb.Type(ctx, k).Val(); typ {
		case "string":
			values++
			blobs = []string{cl.rdb.Get(ctx, k).Val()}
			if ttl := cl.rdb.TTL(ctx, k).Val(); ttl <= 0 {
				t.Errorf("value %s has no TTL (%v)", k, ttl)
			}
		case "set":
			blobs = cl.rdb.SMembers(ctx, k).Val()
		default:
			t.Fatalf("unexpected redis type %s of %s", typ, k)
		}
		for _, blob := range append(blobs, k) {
			for _, s := range secrets {
				if strings.Contains(blob, s) {
					t.Errorf("redis key %s holds %q in plain text", k, s)
				}
			}
		}
	}
	if values != 3 {
		t.Fatalf("redis holds %d values, want 3 (two records and one not-found)", values)
	}
}

// valueKeys lists the sealed values in Redis.
func valueKeys(t *testing.T, cl *cluster) []string {
	t.Helper()
	keys, err := cl.rdb.Keys(context.Background(), "tb:v:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestTamperedValueIsAMiss(t *testing.T) {
	for _, offset := range []int{0, 1, 5, 20, -1} {
		t.Run(fmt.Sprint("byte ", offset), func(t *testing.T) {
			cl := newCluster(t)
			a := cl.node(t, time.Hour)
			fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U")
			keys := valueKeys(t, cl)
			if len(keys) != 1 {
				t.Fatalf("values in redis: %v", keys)
			}
			ctx := context.Background()
			b, err := cl.rdb.Get(ctx, keys[0]).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			i := offset
			if i < 0 {
				i = len(b) + i
			}
			b[i] ^= 0x01
			if err := cl.rdb.Set(ctx, keys[0], b, redis.KeepTTL).Err(); err != nil {
				t.Fatal(err)
			}
			fresh := cl.node(t, time.Hour) // nothing in memory
			if d := fetchName(t, fresh, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_LIVE {
				t.Fatalf("after tampering: delivery %v, want live (a miss)", d)
			}
			if n := cl.src.calls.Load(); n != 2 {
				t.Fatalf("department calls = %d, want 2", n)
			}
			if got := counter(t, fresh.reg, "tongban_cache_redis_rejected_total"); got != 1 {
				t.Fatalf("rejected values = %v, want 1", got)
			}
			// The refill replaced the bad value: a third node hits again.
			third := cl.node(t, time.Hour)
			if d := fetchName(t, third, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_CACHE {
				t.Fatalf("after refill: delivery %v, want cache", d)
			}
		})
	}
}

func TestValueMovedToAnotherKeyDoesNotOpen(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(t, time.Hour)
	fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U")
	fetchName(t, a, cl.ds, "91130102MA0CX1RT7K")
	keys := valueKeys(t, cl)
	if len(keys) != 2 {
		t.Fatalf("values: %v", keys)
	}
	ctx := context.Background()
	v0 := cl.rdb.Get(ctx, keys[0]).Val()
	if err := cl.rdb.Set(ctx, keys[1], v0, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := cl.node(t, time.Hour)
	fetchName(t, fresh, cl.ds, "91130100MA0G5XKQ2U")
	fetchName(t, fresh, cl.ds, "91130102MA0CX1RT7K")
	if got := counter(t, fresh.reg, "tongban_cache_redis_rejected_total"); got != 1 {
		t.Fatalf("rejected = %v, want 1 (the moved value)", got)
	}
	if n := cl.src.calls.Load(); n != 3 {
		t.Fatalf("department calls = %d, want 3", n)
	}
}

func TestCoalescingWithRedis(t *testing.T) {
	cl := newCluster(t)
	cl.src.gate = make(chan struct{})
	a := cl.node(t, time.Hour)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Fetch(context.Background(), cl.ds, req("91130100MA0G5XKQ2U"))
			errs <- err
		}()
	}
	// Release the department once every caller waits on the one call
	// (coalesced callers are counted when the call returns, so wait on the
	// call having started and then give the rest a bounded while to join).
	deadline := time.Now().Add(10 * time.Second)
	for cl.src.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(cl.src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := cl.src.calls.Load(); got != 1 {
		t.Fatalf("department calls = %d for %d concurrent misses, want 1", got, n)
	}
	b := cl.node(t, time.Hour)
	if d := fetchName(t, b, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("other node: %v, want cache", d)
	}
}

func TestStaleIfErrorAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node(t, time.Hour), cl.node(t, time.Hour)
	fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U")
	cl.clk.add(cl.ds.Freshness + time.Minute)
	var down error = apierr.Unavailable("market", errors.New("connection refused"))
	cl.src.err.Store(&down)
	// b never saw the record: its stale copy comes from Redis.
	if d := fetchName(t, b, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_STALE {
		t.Fatalf("b with department down: %v, want stale", d)
	}
	cl.clk.add(2 * time.Hour)
	if _, err := b.Fetch(context.Background(), cl.ds, req("91130100MA0G5XKQ2U")); apierr.CodeOf(err) != codes.Unavailable {
		t.Fatalf("beyond max_stale: %v, want UNAVAILABLE", err)
	}
}

func TestRedisOutageDegradesAndRecovers(t *testing.T) {
	cl := newCluster(t)
	// A long cooldown: only Healthy (the /readyz probe) closes the circuit,
	// so the test does not depend on timing.
	a, b := cl.node(t, time.Hour), cl.node(t, time.Hour)
	ctx := context.Background()
	fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U")
	port := cl.redis.Addr[strings.LastIndex(cl.redis.Addr, ":")+1:]
	cl.redis.Stop()

	// a serves from memory; b, which never saw the record, from the
	// department. Neither returns an error.
	if d := fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U"); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("a during outage: %v", d)
	}
	for i := 0; i < 10; i++ {
		fetchName(t, b, cl.ds, "91130100MA0G5XKQ2U")
		fetchName(t, b, cl.ds, fmt.Sprintf("9113010%dMA0G5XKQ2U", i))
	}
	if got := counter(t, b.reg, "tongban_cache_redis_errors_total"); got != 1 {
		t.Fatalf("b redis errors = %v, want 1 (the circuit skips Redis after the first)", got)
	}
	if err := b.Healthy(ctx); err == nil {
		t.Fatal("Healthy with Redis down = nil")
	}
	if got := testutil.ToFloat64(b.m.redisUp); got != 0 {
		t.Fatalf("redis_up = %v during outage", got)
	}
	// An invalidation during the outage is held and applied on recovery.
	if _, err := a.InvalidateContext(ctx, &v1.ChangeEvent{Dataset: cl.ds.Name, RecordId: "LIC-91130100MA0G5XKQ2U"}); err == nil {
		t.Fatal("invalidation during outage reported no Redis error")
	}
	if a.redis.pendingCount() != 1 {
		t.Fatalf("pending invalidations = %d, want 1", a.redis.pendingCount())
	}

	var p int
	fmt.Sscan(port, &p)
	cl.redis = testenv.RedisAt(t, p)
	for _, n := range []*node{a, b} {
		if err := n.Healthy(ctx); err != nil {
			t.Fatalf("Healthy after restart: %v", err)
		}
	}
	if a.redis.pendingCount() != 0 {
		t.Fatalf("pending invalidations after recovery = %d", a.redis.pendingCount())
	}
	// Redis is used again: a fill on b is a hit on a.
	calls := cl.src.calls.Load()
	fetchName(t, b, cl.ds, "91130199MA0RECOVER")
	if d := fetchName(t, a, cl.ds, "91130199MA0RECOVER"); d != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("a after recovery: %v, want cache from redis; errors a=%v b=%v", d, counter(t, a.reg, "tongban_cache_redis_errors_total"), counter(t, b.reg, "tongban_cache_redis_errors_total"))
	}
	if got := cl.src.calls.Load() - calls; got != 1 {
		t.Fatalf("department calls after recovery = %d, want 1", got)
	}
}

func TestCircuitProbesAfterCooldown(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(t, 20*time.Millisecond)
	port := cl.redis.Addr[strings.LastIndex(cl.redis.Addr, ":")+1:]
	cl.redis.Stop()
	fetchName(t, a, cl.ds, "91130100MA0G5XKQ2U")
	if !a.redis.brk.isOpen() {
		t.Fatal("circuit closed after a Redis error")
	}
	var p int
	fmt.Sscan(port, &p)
	cl.redis = testenv.RedisAt(t, p)
	// Requests alone (no Healthy) close the circuit once the cooldown has
	// passed: bounded in count and time.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; a.redis.brk.isOpen(); i++ {
		if time.Now().After(deadline) || i > 10000 {
			t.Fatal("circuit never closed after Redis came back")
		}
		time.Sleep(5 * time.Millisecond)
		fetchName(t, a, cl.ds, fmt.Sprintf("probe-%d", i))
	}
	if n, _ := cl.rdb.Keys(context.Background(), "tb:v:*").Result(); len(n) == 0 {
		t.Fatal("nothing written to Redis after recovery")
	}
}

func TestKeyring(t *testing.T) {
	s1, s2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	k1, err := NewKeyring("k1", map[string][]byte{"k1": s1})
	if err != nil {
		t.Fatal(err)
	}
	k2only, _ := NewKeyring("k2", map[string][]byte{"k2": s2})
	// Rotation: a ring sealing with k2 that still opens k1's values.
	rotated, err := NewKeyring("k2", map[string][]byte{"k1": s1, "k2": s2})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k1.Seal([]byte("secret record"), []byte("ds|abc"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("sealed value holds the plain text")
	}
	tests := []struct {
		name    string
		ring    *Keyring
		aad     string
		wantErr bool
	}{
		{"same ring", k1, "ds|abc", false},
		{"rotated ring opens the old key", rotated, "ds|abc", false},
		{"ring without the key", k2only, "ds|abc", true},
		{"other cache key", k1, "ds|abd", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := tc.ring.Open(sealed, []byte(tc.aad))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Open err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && string(pt) != "secret record" {
				t.Fatalf("Open = %q", pt)
			}
		})
	}
	out, _ := rotated.Seal([]byte("x"), nil)
	if out[1] != 2 || string(out[2:4]) != "k2" {
		t.Fatalf("rotated ring sealed with key id %q, want k2", out[2:2+out[1]])
	}
	if _, err := k1.Open(out, nil); err == nil {
		t.Fatal("a ring without k2 opened a k2 value")
	}
	if d := rotated.nameDigests("x"); len(d) != 2 || d[0] != k2only.currentDigest("x") || d[1] != k1.currentDigest("x") {
		t.Fatalf("name digests of the rotated ring = %v", d)
	}
}

func TestParseKeyring(t *testing.T) {
	key := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	tests := []struct {
		spec    string
		current string
		wantErr bool
	}{
		{"k2:" + key(32) + ", k1:" + key(32), "k2", false},
		{"", "", true},
		{"k1:" + key(16), "", true},
		{"k1", "", true},
		{"bad id:" + key(32), "", true},
		{"k1:" + key(32) + ",k1:" + key(32), "", true},
		{"k1:not base64!", "", true},
	}
	for _, tc := range tests {
		k, err := ParseKeyring(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Fatalf("ParseKeyring(%q) err = %v, wantErr %v", tc.spec, err, tc.wantErr)
		}
		if err == nil && k.CurrentID() != tc.current {
			t.Fatalf("current = %q, want %q", k.CurrentID(), tc.current)
		}
		if err != nil && strings.Contains(err.Error(), key(32)) {
			t.Fatalf("error leaks the key: %v", err)
		}
	}
}

func TestEntryEncoding(t *testing.T) {
	now := time.Unix(1700000000, 123)
	tests := []*entry{
		{dataset: "d", data: []byte("xyz"), fetchedAt: now, freshTill: now.Add(time.Minute), recordIDs: []string{"a", "b"}, keys: map[string]string{"k": "v", "k2": ""}},
		{dataset: "d", notFound: true, fetchedAt: now, freshTill: now},
	}
	for i, e := range tests {
		got, err := decodeEntry("d", encodeEntry(e))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !got.fetchedAt.Equal(e.fetchedAt) || !got.freshTill.Equal(e.freshTill) || got.notFound != e.notFound ||
			!bytes.Equal(got.data, e.data) || fmt.Sprint(got.recordIDs) != fmt.Sprint(e.recordIDs) || fmt.Sprint(got.keys) != fmt.Sprint(e.keys) {
			t.Fatalf("%d: round trip = %+v, want %+v", i, got, e)
		}
		enc := encodeEntry(e)
		for cut := 0; cut < len(enc); cut++ {
			if _, err := decodeEntry("d", enc[:cut]); err == nil {
				t.Fatalf("%d: truncated at %d decoded", i, cut)
			}
		}
	}
}

// quietRedis silences go-redis's own dial-failure prints during the outage
// tests; the cache logs and counts those failures itself.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// TestRedisFillRacingInvalidationIsNotKept: a value read from Redis just
// before a change event evicts it must not be copied into memory, where it
// would outlive the invalidation.
func TestRedisFillRacingInvalidationIsNotKept(t *testing.T) {
	cl := newCluster(t)
	a := cl.node(t, time.Hour)
	const code = "91130100MA0G5XKQ2U"
	if d := fetchName(t, a, cl.ds, code); d != v1.Delivery_DELIVERY_LIVE {
		t.Fatalf("fill on a: delivery %v", d)
	}
	var (
		b     *Cache
		calls atomic.Int64
		armed atomic.Bool
	)
	// The clock of b invalidates the record on its second reading during
	// the armed fetch: after the Redis read, before the copy into memory.
	now := func() time.Time {
		if armed.Load() && calls.Add(1) == 2 {
			b.Invalidate(&v1.ChangeEvent{Dataset: cl.ds.Name, RecordId: "LIC-" + code})
		}
		return cl.clk.now()
	}
	b = New(cl.src, Options{
		MaxBytes: 1 << 20, MaxStale: time.Hour, NegativeTTL: time.Minute, Now: now,
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
		Redis: &RedisOptions{Addrs: []string{cl.redis.Addr}, Keyring: cl.ring, KeyPrefix: "tb:", Cooldown: time.Hour, Timeout: 5 * time.Second},
	})
	t.Cleanup(func() { b.Close() })
	armed.Store(true)
	if r, err := b.Fetch(context.Background(), cl.ds, req(code)); err != nil || r.Delivery != v1.Delivery_DELIVERY_CACHE {
		t.Fatalf("b's first fetch: delivery %v, err %v; want a redis hit", r.Delivery, err)
	}
	armed.Store(false)
	if calls.Load() < 2 {
		t.Fatalf("clock read %d times; the invalidation did not run", calls.Load())
	}
	before := cl.src.calls.Load()
	r, err := b.Fetch(context.Background(), cl.ds, req(code))
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivery != v1.Delivery_DELIVERY_LIVE || cl.src.calls.Load() != before+1 {
		t.Fatalf("after the invalidation: delivery %v, department calls +%d; want a live fetch", r.Delivery, cl.src.calls.Load()-before)
	}
}
