package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tdproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tongban/tongban/gateway/audit/merkle"
)

const testOrigin = "tongban.test/node-1"

var (
	keyOnce          sync.Once
	testSKey, testVK string
)

func testKeys(t testing.TB) (string, string) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		testSKey, testVK, err = GenerateKey(testOrigin)
		if err != nil {
			panic(err)
		}
	})
	return testSKey, testVK
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t testing.TB, dir string) Config {
	skey, _ := testKeys(t)
	return Config{Dir: dir, Origin: testOrigin, SigningKey: skey, CheckpointInterval: time.Hour}
}

func openTest(t testing.TB, cfg Config, opts ...Option) *Log {
	t.Helper()
	opts = append([]Option{WithLogger(testLogger(t))}, opts...)
	l, err := Open(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func testEntry(i int, subjects ...string) Entry {
	var ss []string
	for _, s := range subjects {
		if s != "" {
			ss = append(ss, s)
		}
	}
	return Entry{
		Time:           time.Date(2026, 3, 1, 8, 0, 0, i*1000, time.UTC),
		RequestID:      fmt.Sprintf("req-%08d", i),
		Node:           "node-1",
		Kind:           KindExchange,
		Consumer:       "sjz-approval-system",
		Datasets:       []string{"market.business_licences"},
		Subjects:       ss,
		Purpose:        "企业开办审批",
		LegalBasis:     []string{"优化营商环境条例 第三十五条"},
		GrantIDs:       []string{"grant-7"},
		Decision:       DecisionPermit,
		FieldsReturned: []string{"name", "legal_rep"},
		Department:     "market",
		Delivery:       DeliveryLive,
		ResponseDigest: Digest([]byte(fmt.Sprint(i))),
	}
}

func mustEncode(t testing.TB, e Entry) []byte {
	t.Helper()
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendN appends n entries from workers goroutines and returns the data by
// index.
func appendN(t *testing.T, l *Log, n, workers int) map[uint64][]byte {
	t.Helper()
	var mu sync.Mutex
	got := make(map[uint64][]byte)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				data := mustEncode(t, testEntry(i, ""))
				r, err := l.Append(context.Background(), data)
				if err != nil {
					t.Errorf("append %d: %v", i, err)
					return
				}
				if r.LeafHash != merkle.HashLeaf(data) {
					t.Errorf("receipt leaf hash of %d wrong", i)
				}
				mu.Lock()
				if _, dup := got[r.Index]; dup {
					t.Errorf("index %d returned twice", r.Index)
				}
				got[r.Index] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

func checkContents(t *testing.T, l *Log, want map[uint64][]byte) {
	t.Helper()
	ctx := context.Background()
	for i, data := range want {
		got, err := l.Entry(ctx, i)
		if err != nil {
			t.Fatalf("Entry(%d): %v", i, err)
		}
		if string(got) != string(data) {
			t.Fatalf("Entry(%d) = %q, want %q", i, got, data)
		}
		h, err := l.LeafHash(i)
		if err != nil || h != merkle.HashLeaf(data) {
			t.Fatalf("LeafHash(%d) = %x, %v", i, h, err)
		}
	}
}

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	l := openTest(t, cfg)
	const n = 500
	data := appendN(t, l, n, 16)
	if len(data) != n || l.Size() != n {
		t.Fatalf("%d receipts, size %d, want %d", len(data), l.Size(), n)
	}
	for i := range uint64(n) {
		if _, ok := data[i]; !ok {
			t.Fatalf("index %d never returned", i)
		}
	}
	checkContents(t, l, data)
	root, _ := l.RootAt(n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), data[0]); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	if _, err := l.Entry(context.Background(), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("entry after close: %v", err)
	}

	l = openTest(t, cfg)
	defer l.Close()
	if l.Size() != n {
		t.Fatalf("reopened size %d", l.Size())
	}
	if r, _ := l.RootAt(n); r != root {
		t.Fatalf("reopened root differs")
	}
	checkContents(t, l, data)
	cps := l.Checkpoints()
	if len(cps) == 0 || cps[len(cps)-1].Size != n || cps[len(cps)-1].Root != root {
		t.Fatalf("final checkpoint missing: %+v", cps)
	}
	// Appending after reopen continues the index sequence.
	r, err := l.AppendEntry(context.Background(), testEntry(n, ""))
	if err != nil || r.Index != n {
		t.Fatalf("append after reopen: %+v, %v", r, err)
	}
}

func TestSegmentsRoll(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.SegmentBytes = 4096
	cfg.MaxBatch = 4
	l := openTest(t, cfg)
	data := appendN(t, l, 300, 4)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	firsts, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(firsts) < 10 {
		t.Fatalf("only %d segments", len(firsts))
	}
	l = openTest(t, cfg)
	checkContents(t, l, data)
	var scanned []uint64
	if err := l.Scan(context.Background(), 290, func(i uint64, b []byte) error {
		if string(b) != string(data[i]) {
			return fmt.Errorf("entry %d differs", i)
		}
		scanned = append(scanned, i)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(scanned) != 10 || scanned[0] != 290 {
		t.Fatalf("scanned %v", scanned)
	}
	l.Close()
	rep, err := VerifyDir(dir, testVKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 300 || rep.Segments != len(firsts) || rep.Unsigned != 0 || rep.TornTail != nil {
		t.Fatalf("report %+v", rep)
	}
}

func testVKey(t testing.TB) string {
	_, vk := testKeys(t)
	return vk
}

func TestProofsAndReceipts(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, testConfig(t, dir))
	defer l.Close()
	ctx := context.Background()
	data := appendN(t, l, 37, 4)
	old, err := l.Checkpoint()
	if err != nil || old.Size != 37 {
		t.Fatalf("checkpoint %+v, %v", old, err)
	}
	for i := 37; i < 100; i++ {
		if _, err := l.AppendEntry(ctx, testEntry(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := l.Checkpoint()
	if err != nil || cp.Size != 100 {
		t.Fatalf("checkpoint %+v, %v", cp, err)
	}
	if again, _ := l.Checkpoint(); again.Note != cp.Note {
		t.Errorf("Checkpoint re-signed without new entries")
	}
	if got, ok := l.CheckpointAt(37); !ok || got.Note != old.Note {
		t.Errorf("CheckpointAt(37) = %+v, %v", got, ok)
	}
	if _, ok := l.CheckpointAt(50); ok {
		t.Errorf("CheckpointAt(50) found a checkpoint that was never signed")
	}
	parsed, err := OpenCheckpoint(cp.Note, testVKey(t))
	if err != nil || parsed.Size != 100 || parsed.Root != cp.Root || parsed.Origin != testOrigin {
		t.Fatalf("OpenCheckpoint: %+v, %v", parsed, err)
	}
	if !strings.HasPrefix(cp.Note, testOrigin+"\n100\n") {
		t.Errorf("note body %q", cp.Note)
	}
	for _, c := range []Checkpoint{old, cp} {
		for i := range c.Size {
			entry, err := l.Entry(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if i < 37 && string(entry) != string(data[i]) {
				t.Fatalf("entry %d differs", i)
			}
			p, err := l.InclusionProof(i, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			pb := merkle.HashesToBytes(p)
			if err := VerifyReceipt(entry, i, pb, c.Note, testVKey(t)); err != nil {
				t.Fatalf("receipt %d in %d: %v", i, c.Size, err)
			}
			leaf := merkle.HashLeaf(entry)
			if err := tdproof.VerifyInclusion(rfc6962.DefaultHasher, i, c.Size, leaf[:], pb, c.Root[:]); err != nil {
				t.Fatalf("library rejects inclusion %d in %d: %v", i, c.Size, err)
			}
		}
	}
	proof, err := l.ConsistencyProof(37, 100)
	if err != nil {
		t.Fatal(err)
	}
	pb := merkle.HashesToBytes(proof)
	if err := VerifyConsistency(old.Note, cp.Note, pb, testVKey(t)); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	if err := tdproof.VerifyConsistency(rfc6962.DefaultHasher, 37, 100, pb, old.Root[:], cp.Root[:]); err != nil {
		t.Fatalf("library rejects consistency: %v", err)
	}

	_, otherVK, _ := GenerateKey(testOrigin)
	entry5, _ := l.Entry(ctx, 5)
	p5, _ := l.InclusionProof(5, 100)
	forged := append([]byte(nil), entry5...)
	forged[len(forged)-3] ^= 1
	bad := []struct {
		name string
		err  error
	}{
		{"receipt other key", VerifyReceipt(entry5, 5, merkle.HashesToBytes(p5), cp.Note, otherVK)},
		{"receipt altered entry", VerifyReceipt(forged, 5, merkle.HashesToBytes(p5), cp.Note, testVKey(t))},
		{"receipt wrong index", VerifyReceipt(entry5, 6, merkle.HashesToBytes(p5), cp.Note, testVKey(t))},
		{"receipt altered note", VerifyReceipt(entry5, 5, merkle.HashesToBytes(p5), strings.Replace(cp.Note, "\n100\n", "\n101\n", 1), testVKey(t))},
		{"receipt short node", VerifyReceipt(entry5, 5, [][]byte{{1, 2}}, cp.Note, testVKey(t))},
		{"consistency swapped", VerifyConsistency(cp.Note, old.Note, pb, testVKey(t))},
		{"consistency other key", VerifyConsistency(old.Note, cp.Note, pb, otherVK)},
		{"consistency bad proof", VerifyConsistency(old.Note, cp.Note, pb[1:], testVKey(t))},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: verified", b.name)
		}
	}
	if _, err := l.InclusionProof(100, 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("proof beyond size: %v", err)
	}
	if _, err := l.ConsistencyProof(10, 101); !errors.Is(err, ErrNotFound) {
		t.Errorf("consistency beyond size: %v", err)
	}
	if _, err := l.Entry(ctx, 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("entry beyond size: %v", err)
	}
}

func TestCheckpointEvery(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.CheckpointEvery = 10
	l := openTest(t, cfg)
	for i := range 35 {
		if _, err := l.AppendEntry(context.Background(), testEntry(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	var sizes []uint64
	for _, cp := range l.Checkpoints() {
		sizes = append(sizes, cp.Size)
	}
	if fmt.Sprint(sizes) != "[10 20 30]" {
		t.Errorf("checkpoint sizes %v, want [10 20 30]", sizes)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyDir(cfg.Dir, testVKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoints != 4 || rep.Latest.Size != 35 {
		t.Errorf("report %+v", rep)
	}
}

func TestCheckpointInterval(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.CheckpointInterval = 5 * time.Millisecond
	l := openTest(t, cfg)
	defer l.Close()
	if _, err := l.AppendEntry(context.Background(), testEntry(0, "")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 30000 && time.Now().Before(deadline); i++ {
		if cps := l.Checkpoints(); len(cps) > 0 && cps[len(cps)-1].Size == 1 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("no checkpoint signed by the interval timer: %+v", l.Checkpoints())
}

func segPath(t *testing.T, dir string, which int) string {
	t.Helper()
	firsts, err := listSegments(dir)
	if err != nil || len(firsts) == 0 {
		t.Fatalf("segments: %v %v", firsts, err)
	}
	if which < 0 {
		which += len(firsts)
	}
	return filepath.Join(dir, segmentName(firsts[which]))
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestTornTail(t *testing.T) {
	full := appendFrame(nil, []byte("\x01{\"kind\":\"exchange\",\"time\":\"2026-01-01T00:00:00Z\"}"))
	badCRC := append([]byte(nil), full...)
	badCRC[len(badCRC)-2] ^= 0xff
	cases := []struct {
		name string
		tail []byte
	}{
		{"partial header", full[:5]},
		{"partial data", full[:len(full)-4]},
		{"bad checksum", badCRC},
		{"zeros", make([]byte, 4096)},
		{"good frame then partial", append(append([]byte(nil), full...), full[:12]...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			l := openTest(t, cfg)
			data := appendN(t, l, 20, 2)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			last := segPath(t, cfg.Dir, -1)
			st, _ := os.Stat(last)
			appendBytes(t, last, c.tail)
			wantSize := uint64(20)
			if strings.HasPrefix(c.name, "good frame") {
				wantSize = 21
			}
			rep, err := VerifyDir(cfg.Dir, testVKey(t))
			if err != nil {
				t.Fatalf("VerifyDir: %v", err)
			}
			if rep.TornTail == nil || rep.TornTail.Index != wantSize || rep.Entries != wantSize {
				t.Fatalf("report %+v, torn %+v", rep, rep.TornTail)
			}
			l = openTest(t, cfg)
			if l.Size() != wantSize {
				t.Fatalf("size after truncation %d, want %d", l.Size(), wantSize)
			}
			checkContents(t, l, data)
			r, err := l.AppendEntry(context.Background(), testEntry(99, ""))
			if err != nil || r.Index != wantSize {
				t.Fatalf("append after truncation: %+v, %v", r, err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			st2, _ := os.Stat(last)
			if wantSize == 20 && st2.Size() <= st.Size() {
				t.Fatalf("segment did not grow after truncation and append")
			}
			if _, err := VerifyDir(cfg.Dir, testVKey(t)); err != nil {
				t.Fatalf("VerifyDir after reopen: %v", err)
			}
		})
	}
}

func TestTornCheckpoint(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openTest(t, cfg)
	appendN(t, l, 5, 1)
	l.Close()
	path := filepath.Join(cfg.Dir, checkpointsFile)
	appendBytes(t, path, []byte{0, 0, 1, 0, 9, 9})
	rep, err := VerifyDir(cfg.Dir, testVKey(t))
	if err != nil || rep.TornCheckpoint == nil || rep.Checkpoints != 1 {
		t.Fatalf("VerifyDir: %+v, %v", rep, err)
	}
	l = openTest(t, cfg)
	appendN(t, l, 5, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyDir(cfg.Dir, testVKey(t))
	if err != nil || rep.TornCheckpoint != nil || rep.Checkpoints != 2 || rep.Latest.Size != 10 {
		t.Fatalf("VerifyDir after reopen: %+v, %v", rep, err)
	}
}

// frameOffset returns the segment file and offset of entry index.
func frameOffset(t *testing.T, dir string, index uint64) (string, int64) {
	t.Helper()
	firsts, _ := listSegments(dir)
	i := sort.Search(len(firsts), func(i int) bool { return firsts[i] > index }) - 1
	var off int64 = -1
	_, err := scanSegment(dir, firsts[i], func(idx uint64, o int64, _ []byte) error {
		if idx == index {
			off = o
		}
		return nil
	})
	if err != nil || off < 0 {
		t.Fatalf("entry %d not found: %v", index, err)
	}
	return filepath.Join(dir, segmentName(firsts[i])), off
}

func patchFile(t *testing.T, path string, off int64, fn func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fn(b[off:])
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTamper(t *testing.T) {
	const n = 120
	cases := []struct {
		name    string
		index   uint64
		tamper  func(t *testing.T, dir string, index uint64)
		wantIdx bool  // a *CorruptError naming index
		wantErr error // otherwise this sentinel
	}{
		{"flip data byte in early segment", 7, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			patchFile(t, p, off+frameHeader+40, func(b []byte) { b[0] ^= 0x20 })
		}, true, nil},
		{"flip data byte in last segment", n - 2, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			patchFile(t, p, off+frameHeader+100, func(b []byte) { b[0] ^= 1 })
		}, true, nil},
		{"flip length byte", 50, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			patchFile(t, p, off+3, func(b []byte) { b[0] ^= 4 })
		}, true, nil},
		{"flip checksum byte", 63, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			patchFile(t, p, off+5, func(b []byte) { b[0] ^= 0x80 })
		}, true, nil},
		{"alter entry and fix checksum", 30, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			patchFile(t, p, off, func(b []byte) {
				n := binary.BigEndian.Uint32(b)
				data := b[frameHeader : frameHeader+int(n)]
				j := strings.Index(string(data), "sjz-approval")
				data[j] = 'x'
				binary.BigEndian.PutUint32(b[4:], crc32.Checksum(data, crcTable))
			})
		}, false, ErrCheckpoint},
		{"remove last frames", n - 3, func(t *testing.T, dir string, i uint64) {
			p, off := frameOffset(t, dir, i)
			if err := os.Truncate(p, off); err != nil {
				t.Fatal(err)
			}
		}, false, ErrCorrupt},
		{"delete a middle segment", 40, func(t *testing.T, dir string, i uint64) {
			p, _ := frameOffset(t, dir, i)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, false, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			cfg.SegmentBytes = 8192
			cfg.MaxBatch = 3
			l := openTest(t, cfg)
			appendN(t, l, n, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyDir(cfg.Dir, testVKey(t)); err != nil {
				t.Fatalf("clean log does not verify: %v", err)
			}
			c.tamper(t, cfg.Dir, c.index)
			_, verr := VerifyDir(cfg.Dir, testVKey(t))
			_, oerr := Open(context.Background(), cfg, WithLogger(testLogger(t)))
			for name, err := range map[string]error{"VerifyDir": verr, "Open": oerr} {
				if err == nil {
					t.Fatalf("%s accepted the tampered log", name)
				}
				t.Logf("%s: %v", name, err)
				if c.wantIdx {
					var ce *CorruptError
					if !errors.As(err, &ce) || ce.Index != c.index {
						t.Errorf("%s: %v; want a CorruptError at entry %d", name, err, c.index)
					}
				} else if !errors.Is(err, c.wantErr) && !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: %v; want %v", name, err, c.wantErr)
				}
			}
		})
	}
}

// faultyFile fails Sync once failAfter syncs have succeeded.
type faultyFile struct {
	file
	syncs     *atomic.Int64
	failAfter int64
}

func (f faultyFile) Sync() error {
	if f.syncs.Add(1) > f.failAfter {
		return errors.New("injected fsync failure")
	}
	return f.file.Sync()
}

func TestFailClosed(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	var syncs atomic.Int64
	l := openTest(t, cfg, func(o *options) {
		o.wrapFile = func(f file) file { return faultyFile{file: f, syncs: &syncs, failAfter: 5} }
	})
	ctx := context.Background()
	acked := map[uint64][]byte{}
	var failedAt int
	for i := range 20 {
		data := mustEncode(t, testEntry(i, ""))
		r, err := l.Append(ctx, data)
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("append error %v does not wrap ErrFailed", err)
			}
			failedAt = i
			break
		}
		acked[r.Index] = data
	}
	if failedAt != 5 || len(acked) != 5 {
		t.Fatalf("failed at %d with %d acknowledged, want 5 and 5", failedAt, len(acked))
	}
	if _, err := l.AppendEntry(ctx, testEntry(100, "")); !errors.Is(err, ErrFailed) {
		t.Fatalf("append after failure: %v", err)
	}
	if l.Size() != 5 {
		t.Fatalf("size %d after failure", l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, cfg)
	defer l.Close()
	if l.Size() != 5 {
		t.Fatalf("reopened size %d, want 5", l.Size())
	}
	checkContents(t, l, acked)
	if _, err := l.AppendEntry(ctx, testEntry(5, "")); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
}

// blockingFile blocks Sync until release is closed.
type blockingFile struct {
	file
	entered chan struct{}
	release chan struct{}
}

func (f blockingFile) Sync() error {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	<-f.release
	return f.file.Sync()
}

func TestBackpressure(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.QueueDepth = 2
	cfg.MaxBatch = 2
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	l := openTest(t, cfg, func(o *options) {
		o.wrapFile = func(f file) file { return blockingFile{file: f, entered: entered, release: release} }
	})
	const n = 40
	var done atomic.Int64
	var wg sync.WaitGroup
	results := make([]Receipt, n)
	for i := range n {
		wg.Go(func() {
			r, err := l.AppendEntry(context.Background(), testEntry(i, ""))
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
			results[i] = r
			done.Add(1)
		})
	}
	<-entered // the writer is inside fsync with the first batch
	// While fsync is blocked nothing can be acknowledged, the queue is
	// bounded, and the other appenders wait.
	if d := done.Load(); d != 0 {
		t.Fatalf("%d appends returned before their fsync", d)
	}
	if q := len(l.queue); q > cfg.QueueDepth {
		t.Fatalf("queue holds %d > %d", q, cfg.QueueDepth)
	}
	// A caller with a deadline gives up instead of waiting forever.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.AppendEntry(ctx, testEntry(999, "")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	close(release)
	wg.Wait()
	if done.Load() != n || l.Size() != n {
		t.Fatalf("%d returned, size %d, want %d", done.Load(), l.Size(), n)
	}
	seen := map[uint64]bool{}
	for _, r := range results {
		seen[r.Index] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct indices", len(seen))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

type recordingSink struct {
	mu  sync.Mutex
	idx []uint64
}

func (s *recordingSink) Appended(index uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := Decode(data); err == nil {
		s.idx = append(s.idx, index)
	}
}

func TestSubjectIndexAndSink(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	sink := &recordingSink{}
	l := openTest(t, cfg, WithSink(sink))
	ctx := context.Background()
	a := SubjectHash(subjectKey, "91130100MA0CXXXX1X")
	b := SubjectHash(subjectKey, "130102199003077777")
	var wantA []uint64
	for i := range 30 {
		ss := []string{b}
		switch {
		case i%5 == 0:
			ss = nil
		case i%3 == 0:
			ss = []string{a}
		case i%7 == 0:
			ss = []string{b, a, b} // several subjects, unsorted, duplicated
		}
		r, err := l.AppendEntry(ctx, testEntry(i, ss...))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ss, a) {
			wantA = append(wantA, r.Index)
		}
	}
	check := func(l *Log) {
		var got []uint64
		from := uint64(0)
		for page := 0; page < 10; page++ {
			recs, next, err := l.EntriesForSubject(ctx, a, 3, from)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !slices.Contains(r.Entry.Subjects, a) || !slices.IsSorted(r.Entry.Subjects) || r.Entry.RequestID != fmt.Sprintf("req-%08d", r.Index) {
					t.Fatalf("record %d: %+v", r.Index, r.Entry)
				}
				got = append(got, r.Index)
			}
			if next == 0 {
				break
			}
			from = next
		}
		if fmt.Sprint(got) != fmt.Sprint(wantA) {
			t.Errorf("subject entries %v, want %v", got, wantA)
		}
		if recs, _, _ := l.EntriesForSubject(ctx, SubjectHash(subjectKey, "nobody"), 10, 0); len(recs) != 0 {
			t.Errorf("unknown subject has %d entries", len(recs))
		}
		if _, _, err := l.EntriesForSubject(ctx, a, 0, 0); err == nil {
			t.Errorf("limit 0 accepted")
		}
	}
	check(l)
	l.Close()
	sink.mu.Lock()
	if len(sink.idx) != 30 || sink.idx[0] != 0 || sink.idx[29] != 29 || !sort.SliceIsSorted(sink.idx, func(i, j int) bool { return sink.idx[i] < sink.idx[j] }) {
		t.Errorf("sink saw %v", sink.idx)
	}
	sink.mu.Unlock()
	l = openTest(t, cfg)
	defer l.Close()
	check(l)
}

func TestAppendRejects(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	l := openTest(t, cfg)
	defer l.Close()
	ctx := context.Background()
	if _, err := l.Append(ctx, []byte("not an entry")); !errors.Is(err, ErrEncoding) {
		t.Errorf("garbage: %v", err)
	}
	if _, err := l.AppendEntry(ctx, Entry{Kind: KindExchange}); !errors.Is(err, ErrEncoding) {
		t.Errorf("entry without time: %v", err)
	}
	big := testEntry(0, "")
	big.Purpose = strings.Repeat("x", MaxEntryBytes)
	if _, err := l.AppendEntry(ctx, big); !errors.Is(err, ErrEncoding) {
		t.Errorf("oversized entry: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.AppendEntry(cctx, testEntry(0, "")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if l.Size() != 0 {
		t.Errorf("rejected appends changed the size to %d", l.Size())
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	l := openTest(t, cfg)
	appendN(t, l, 3, 1)
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Errorf("second Open of a locked directory succeeded")
	}
	l.Close()

	otherSKey, _, _ := GenerateKey(testOrigin)
	other := cfg
	other.SigningKey = otherSKey
	if _, err := Open(context.Background(), other); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("open with another key: %v", err)
	}
	renamed := cfg
	renamed.Origin = "tongban.test/node-2"
	if _, err := Open(context.Background(), renamed); err == nil {
		t.Errorf("origin that is not the key name accepted")
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(cfg.SigningKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := cfg
	fromFile.SigningKey, fromFile.SigningKeyFile = "", keyFile
	l, err := Open(context.Background(), fromFile)
	if err != nil {
		t.Fatalf("open with key file: %v", err)
	}
	if l.VerifierKey() != testVKey(t) || l.Size() != 3 || l.Origin() != testOrigin {
		t.Errorf("verifier key %q size %d", l.VerifierKey(), l.Size())
	}
	l.Close()
	if k, err := LoadKeyFile(keyFile); err != nil || k != cfg.SigningKey {
		t.Errorf("LoadKeyFile: %v", err)
	}
	if err := os.WriteFile(keyFile, []byte("nonsense"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(keyFile); err == nil {
		t.Errorf("LoadKeyFile accepted nonsense")
	}
}

func TestConfigValidate(t *testing.T) {
	skey, _ := testKeys(t)
	good := Config{Dir: "/tmp/x", Origin: testOrigin, SigningKey: skey}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	d := good.WithDefaults()
	if d.CheckpointEvery != DefaultCheckpointEvery || d.SegmentBytes != DefaultSegmentBytes || d.QueueDepth != DefaultQueueDepth || d.MaxBatch != DefaultMaxBatch || d.CheckpointInterval != DefaultCheckpointInterval {
		t.Errorf("defaults %+v", d)
	}
	cases := map[string]func(c *Config){
		"no dir":         func(c *Config) { c.Dir = "" },
		"no origin":      func(c *Config) { c.Origin = "" },
		"no key":         func(c *Config) { c.SigningKey = "" },
		"two keys":       func(c *Config) { c.SigningKeyFile = "/k" },
		"tiny segments":  func(c *Config) { c.SegmentBytes = 100 },
		"negative queue": func(c *Config) { c.QueueDepth = -1 },
		"negative batch": func(c *Config) { c.MaxBatch = -1 },
		"negative every": func(c *Config) { c.CheckpointInterval = -time.Second },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			c := good
			mod(&c)
			if err := c.Validate(); err == nil {
				t.Errorf("accepted")
			}
		})
	}
}

func TestVerifierKey(t *testing.T) {
	skey, vkey := testKeys(t)
	got, err := VerifierKey(skey)
	if err != nil || got != vkey {
		t.Fatalf("VerifierKey = %q, %v; want %q", got, err, vkey)
	}
	// Keys whose base64 text contains '+' once broke the parser: try many.
	for range 64 {
		sk, vk, err := GenerateKey(testOrigin)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := VerifierKey(sk); err != nil || got != vk {
			t.Fatalf("VerifierKey(%q) = %q, %v; want %q", sk, got, err, vk)
		}
	}
	if _, err := VerifierKey(vkey); err == nil {
		t.Errorf("a verifier key was accepted as a signing key")
	}
}

// cpSink records checkpoint notifications and replayed or new entries.
type cpSink struct {
	recordingSink
	cmu   sync.Mutex
	sizes []uint64
}

func (s *cpSink) CheckpointSigned(cp Checkpoint) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.sizes = append(s.sizes, cp.Size)
}

func TestCheckpointSinkAndQueries(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	ctx := context.Background()
	s := &cpSink{}
	l := openTest(t, cfg, WithSink(s))
	if _, ok := l.LatestCheckpoint(); ok {
		t.Fatal("an empty new log has a checkpoint")
	}
	for i := range 6 {
		if _, err := l.AppendEntry(ctx, testEntry(i)); err != nil {
			t.Fatal(err)
		}
		if i == 1 || i == 4 {
			if _, err := l.Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cp, ok := l.LatestCheckpoint(); !ok || cp.Size != 5 {
		t.Fatalf("latest checkpoint %v %v, want size 5", cp.Size, ok)
	}
	sizes := func(cps []Checkpoint) (out []uint64) {
		for _, c := range cps {
			out = append(out, c.Size)
		}
		return out
	}
	for from, want := range map[uint64]string{0: "[2 5]", 1: "[2 5]", 2: "[5]", 4: "[5]", 5: "[]", 99: "[]"} {
		if got := fmt.Sprint(sizes(l.CheckpointsAfter(from))); got != want {
			t.Errorf("CheckpointsAfter(%d) = %s, want %s", from, got, want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s.cmu.Lock()
	if got := fmt.Sprint(s.sizes); got != "[2 5 6]" {
		t.Errorf("checkpoint notifications %s, want [2 5 6] (the last on Close)", got)
	}
	s.cmu.Unlock()

	// A plain replay sink sees the stored entries on Open, then new ones.
	r := &recordingSink{}
	l = openTest(t, cfg, WithReplaySink(r))
	defer l.Close()
	if _, err := l.AppendEntry(ctx, testEntry(6)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := fmt.Sprint(r.idx); got != "[0 1 2 3 4 5 6]" {
		t.Errorf("replay sink saw %s", got)
	}
}

// TestCommitsCountBatches checks Commits: sequential appends commit one by
// one; concurrent ones are all counted, in at most as many commits.
func TestCommitsCountBatches(t *testing.T) {
	l := openTest(t, testConfig(t, t.TempDir()))
	defer l.Close()
	ctx := context.Background()
	for i := range 5 {
		if _, err := l.AppendEntry(ctx, testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if c, n := l.Commits(); c != 5 || n != 5 {
		t.Fatalf("after 5 sequential appends: %d commits of %d entries, want 5 of 5", c, n)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.AppendEntry(ctx, testEntry(100+i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if c, n := l.Commits(); n != 69 || c < 6 || c > 69 {
		t.Fatalf("after 64 concurrent appends more: %d commits of %d entries, want 69 entries in 6..69 commits", c, n)
	}
}
