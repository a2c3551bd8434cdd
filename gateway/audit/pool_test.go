package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/audit/merkle"
)

// frameSink checks, on the writer goroutine, that every durable entry's
// frame and decoded entry agree, and keeps a copy of each frame.
type frameSink struct {
	t    *testing.T
	mu   sync.Mutex
	data map[uint64][]byte
}

func (s *frameSink) Appended(index uint64, data []byte) {
	_, err := Decode(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.t.Errorf("sink: entry %d does not decode: %v", index, err)
		return
	}
	if _, dup := s.data[index]; dup {
		s.t.Errorf("sink: entry %d seen twice", index)
	}
	s.data[index] = bytes.Clone(data)
}

// poolEntry is entry i of worker w, of a size that varies with i so that
// pooled frames are reused by entries larger and smaller than before.
func poolEntry(w, i int) Entry {
	e := testEntry(w*100000+i, SubjectHash(subjectKey, fmt.Sprint(w, i)))
	e.Purpose = fmt.Sprintf("worker %d entry %d %s", w, i, bytes.Repeat([]byte("长"), (i*37)%700))
	return e
}

// TestPooledRequestsWithCancellation appends from many goroutines whose
// contexts end at random points: before queueing, while queued or while
// waiting for durability. Requests are pooled; one whose appender gave up
// must not be reused while the writer holds it. Every acknowledged entry
// must be on disk, byte for byte, at its receipt's index, every entry on
// disk must be one that was appended, and none twice.
func TestPooledRequestsWithCancellation(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.QueueDepth = 8
	cfg.MaxBatch = 16
	sink := &frameSink{t: t, data: map[uint64][]byte{}}
	l := openTest(t, cfg, WithSink(sink))
	const workers, perWorker = 16, 120
	type acked struct {
		r    Receipt
		want []byte
	}
	var mu sync.Mutex
	var ok []acked
	wanted := map[string][]byte{} // by request id: every entry tried
	var cancelled int
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				e := poolEntry(w, i)
				want := mustEncode(t, e)
				mu.Lock()
				wanted[e.RequestID] = want
				mu.Unlock()
				ctx, cancel := context.WithCancel(context.Background())
				var timer *time.Timer
				switch rng.IntN(4) {
				case 0: // runs to the end
				case 1:
					cancel()
				default:
					timer = time.AfterFunc(time.Duration(rng.IntN(3000))*time.Microsecond, cancel)
				}
				r, err := l.AppendEntry(ctx, e)
				if timer != nil {
					timer.Stop()
				}
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					ok = append(ok, acked{r, want})
				case errors.Is(err, context.Canceled):
					cancelled++
				default:
					t.Errorf("append %s: %v", e.RequestID, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledged, %d cancelled, %d entries written", len(ok), cancelled, len(sink.data))
	if len(ok) == 0 {
		t.Fatal("no append succeeded")
	}
	l = openTest(t, cfg)
	defer l.Close()
	ctx := context.Background()
	for _, a := range ok {
		got, err := l.Entry(ctx, a.r.Index)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, a.want) {
			t.Fatalf("entry %d:\n got %q\nwant %q", a.r.Index, got, a.want)
		}
		if merkle.HashLeaf(got) != a.r.LeafHash {
			t.Fatalf("entry %d: receipt leaf hash does not match", a.r.Index)
		}
	}
	seen := map[string]bool{}
	if err := l.Scan(ctx, 0, func(i uint64, data []byte) error {
		e, err := Decode(data)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if seen[e.RequestID] {
			return fmt.Errorf("entry %d: %s written twice", i, e.RequestID)
		}
		seen[e.RequestID] = true
		if !bytes.Equal(data, wanted[e.RequestID]) {
			return fmt.Errorf("entry %d of %s is not what was appended:\n got %q\nwant %q", i, e.RequestID, data, wanted[e.RequestID])
		}
		if !bytes.Equal(sink.data[i], data) {
			return fmt.Errorf("entry %d: the sink saw %q", i, sink.data[i])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if uint64(len(sink.data)) != l.Size() {
		t.Fatalf("sink saw %d entries, log holds %d", len(sink.data), l.Size())
	}
}

// TestAbandonedRequestsAreNotReused holds the writer inside fsync, lets
// appenders give up while their entries are queued or being written, has
// the same goroutines append again (taking requests from the pool), and
// then checks that every entry, the abandoned ones included, was written
// as appended.
func TestAbandonedRequestsAreNotReused(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.QueueDepth = 64
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	l := openTest(t, cfg, func(o *options) {
		o.wrapFile = func(f file) file { return blockingFile{file: f, entered: entered, release: release} }
	})
	const n = 24
	// A first entry gets the writer into the blocked fsync.
	first := make(chan error, 1)
	go func() {
		_, err := l.AppendEntry(context.Background(), poolEntry(0, 0))
		first <- err
	}()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = l.AppendEntry(ctx, poolEntry(1, i)) })
	}
	// Wait until all n are queued, then give up on them.
	for range 10000 {
		if len(l.queue) == n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if q := len(l.queue); q != n {
		t.Fatalf("%d queued, want %d", q, n)
	}
	cancel()
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("append %d: %v, want context.Canceled", i, err)
		}
	}
	// New appends, with requests from the pool, while the abandoned ones
	// are still queued.
	for i := range n {
		wg.Go(func() {
			if _, err := l.AppendEntry(context.Background(), poolEntry(2, i)); err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		})
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got := l.Size(); got != 1+2*n {
		t.Fatalf("log holds %d entries, want %d", got, 1+2*n)
	}
	want := map[string][]byte{}
	want[poolEntry(0, 0).RequestID] = mustEncode(t, poolEntry(0, 0))
	for w := 1; w <= 2; w++ {
		for i := range n {
			e := poolEntry(w, i)
			want[e.RequestID] = mustEncode(t, e)
		}
	}
	if err := l.Scan(context.Background(), 0, func(i uint64, data []byte) error {
		e, err := Decode(data)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if !bytes.Equal(data, want[e.RequestID]) {
			return fmt.Errorf("entry %d of %s is not what was appended", i, e.RequestID)
		}
		delete(want, e.RequestID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) != 0 {
		t.Fatalf("%d entries missing", len(want))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSubjectHashKeys hashes with several keys from many goroutines:
// pooled keyed states must never hash with another key's state.
func TestSubjectHashKeys(t *testing.T) {
	keys := [][]byte{subjectKey, []byte("Jefe"), []byte("another key"), bytes.Repeat([]byte("k"), 100)}
	ids := []string{"91130100MA0CXXXX1X", "130102199003077777", "what do ya want for nothing?"}
	want := map[string]string{}
	for _, k := range keys {
		for _, id := range ids {
			want[string(k)+"\x00"+id] = refSubjectHash(k, id)
		}
	}
	if got := want["Jefe\x00what do ya want for nothing?"]; got != hmacJefe {
		t.Fatalf("reference HMAC %s, want %s", got, hmacJefe)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				k := keys[(g+i)%len(keys)]
				id := ids[(g*7+i)%len(ids)]
				if got := SubjectHash(k, id); got != want[string(k)+"\x00"+id] {
					t.Errorf("SubjectHash(%q, %q) = %s, want %s", k, id, got, want[string(k)+"\x00"+id])
					return
				}
			}
		})
	}
	wg.Wait()
	// A caller that changes its key slice in place gets the new key's hash.
	k := bytes.Clone(subjectKey)
	before := SubjectHash(k, ids[0])
	k[0] ^= 1
	if after := SubjectHash(k, ids[0]); after == before || after != refSubjectHash(k, ids[0]) {
		t.Fatalf("hash after changing the key in place: %s (before %s)", after, before)
	}
}

// TestStatsDayCache counts entries whose days go back and forth, in two
// time zones: the day kept from the previous entry must be reused only
// for the same calendar day in the statistics' zone.
func TestStatsDayCache(t *testing.T) {
	cst := time.FixedZone("CST", 8*3600)
	for _, loc := range []*time.Location{time.UTC, cst} {
		s := NewStats(loc)
		want := map[string]uint64{}
		base := time.Date(2026, 2, 27, 20, 0, 0, 0, time.UTC)
		for i := range 200 {
			// Hours jump forwards and back across midnights.
			at := base.Add(time.Duration((i*37)%100) * time.Hour).Add(time.Duration(i) * time.Second)
			s.AppendedEntry(uint64(i), &Entry{Time: at, Kind: KindExchange, Consumer: "c", Datasets: []string{"ds"}, Decision: DecisionPermit})
			want[at.In(loc).Format(DayLayout)]++
		}
		ex, _ := s.Counts("", "")
		got := map[string]uint64{}
		for _, c := range ex {
			got[c.Day] += c.Exchanges
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: counts by day %v, want %v", loc, got, want)
		}
	}
}
