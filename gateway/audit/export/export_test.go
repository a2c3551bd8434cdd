package export

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/merkle"
)

const testOrigin = "tongban.test/node-1"

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// broker runs a kfake Kafka-protocol broker on a fixed loopback port with
// its data on disk, so that it can be stopped and restarted.
type broker struct {
	t    *testing.T
	port int
	dir  string
	c    *kfake.Cluster
}

func startBroker(t *testing.T) *broker {
	b := &broker{t: t, port: freePort(t), dir: t.TempDir()}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	var err error
	// The port may linger briefly after a stop: retry a bounded number of
	// times.
	for range 50 {
		b.c, err = kfake.NewCluster(kfake.Ports(b.port), kfake.DataDir(b.dir), kfake.SyncWrites(),
			kfake.SeedTopics(3, DefaultEntriesTopic), kfake.SeedTopics(1, DefaultCheckpointsTopic))
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("starting broker on port %d: %v", b.port, err)
}

func (b *broker) stop() {
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func openLog(t *testing.T, dir string, opts ...audit.Option) (*audit.Log, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "skey")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), audit.Config{Dir: dir, Origin: testOrigin, SigningKeyFile: keyFile, CheckpointInterval: time.Hour},
		append([]audit.Option{audit.WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return l, vkey
}

func appendN(t *testing.T, l *audit.Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		_, err := l.AppendEntry(context.Background(), audit.Entry{
			Time: time.Date(2026, 3, 1, 8, 0, 0, i, time.UTC), RequestID: fmt.Sprintf("req-%d", i), Node: "node-1",
			Kind: audit.KindExchange, Consumer: "c", Datasets: []string{"market.enterprises"}, Decision: audit.DecisionPermit,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond every 20 ms for at most a minute; the bound only
// stops a broken test, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 3000 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// consume reads every message of topic from the broker with kafka-go and
// returns the values by key, failing on a key seen with two values.
func consume(t *testing.T, addr, topic string) (map[string][]byte, int, map[string][]kafka.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]byte{}
	headers := map[string][]kafka.Header{}
	total := 0
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("reading %s/%d: %v", topic, p.ID, err)
			}
			total++
			k := string(m.Key)
			if v, seen := values[k]; seen && !bytes.Equal(v, m.Value) {
				t.Errorf("key %s published with two different values", k)
			}
			values[k] = m.Value
			headers[k] = m.Headers
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return values, total, headers
}

func header(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestExportSurvivesBrokerOutage appends entries before, during and after a
// broker outage, and after an exporter restart, and checks that every entry
// and checkpoint ends up in Kafka under its stable key.
func TestExportSurvivesBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka-protocol broker")
	}
	b := startBroker(t)
	cursorFile := filepath.Join(t.TempDir(), "export.cursor")
	cfg := Config{Brokers: []string{b.addr()}, Node: "node-1", CursorFile: cursorFile, BatchSize: 16,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, WriteTimeout: 2 * time.Second}
	reg := prometheus.NewRegistry()
	x, err := New(cfg, Options{Registry: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, vkey := openLog(t, dir, audit.WithSink(x))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx, l) }()

	appendN(t, l, 0, 40) // before
	cpBefore, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first 40 entries and their checkpoint", func() bool { return x.Cursor() == Cursor{Entries: 40, Checkpoint: 40} })

	b.stop()
	appendN(t, l, 40, 40) // during: the log accepts them, the exporter keeps them
	waitFor(t, "export errors while the broker is down", func() bool { return testutil.ToFloat64(x.errs) > 0 })
	if got := x.Cursor().Entries; got != 40 {
		t.Fatalf("cursor moved to %d while the broker was down", got)
	}
	if lag := gaugeValue(t, reg, "tongban_audit_export_lag_entries"); lag != 40 {
		t.Errorf("lag metric %v, want 40", lag)
	}

	b.start()
	appendN(t, l, 80, 40) // after
	cpAfter, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all 120 entries after the restart", func() bool { return x.Cursor() == Cursor{Entries: 120, Checkpoint: 120} })
	if x.Lag() != 0 {
		t.Errorf("lag %d after catching up", x.Lag())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}

	// A restarted exporter resumes from its cursor.
	appendN(t, l, 120, 10)
	x2, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := x2.Cursor(); got != (Cursor{Entries: 120, Checkpoint: 120}) {
		t.Fatalf("restarted exporter at %+v", got)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- x2.Run(ctx2, l) }()
	waitFor(t, "the 10 entries appended while no exporter ran", func() bool { return x2.Cursor().Entries == 130 })
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	x2.Close()

	values, total, headers := consume(t, b.addr(), DefaultEntriesTopic)
	if len(values) != 130 {
		t.Errorf("%d distinct entries in Kafka, want 130 (%d messages)", len(values), total)
	}
	for i := range uint64(130) {
		data, err := l.Entry(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		k := EntryKey("node-1", i)
		if !bytes.Equal(values[k], data) {
			t.Errorf("entry %d: Kafka holds %q, want %q", i, values[k], data)
			continue
		}
		leaf := merkle.HashLeaf(data)
		if header(headers[k], HeaderLeafHash) != hex.EncodeToString(leaf[:]) || header(headers[k], HeaderIndex) != fmt.Sprint(i) {
			t.Errorf("entry %d headers %v", i, headers[k])
		}
	}
	t.Logf("%d messages for 130 entries (at-least-once: %d resent)", total, total-len(values))

	cps, _, _ := consume(t, b.addr(), DefaultCheckpointsTopic)
	for _, want := range []audit.Checkpoint{cpBefore, cpAfter} {
		got := cps[CheckpointKey("node-1", want.Size)]
		if string(got) != want.Note {
			t.Errorf("checkpoint %d: Kafka holds %q", want.Size, got)
			continue
		}
		if _, err := audit.OpenCheckpoint(string(got), vkey); err != nil {
			t.Errorf("checkpoint %d from Kafka: %v", want.Size, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// gaugeValue returns the value of the single gauge name in reg.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

func TestCursorFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cursor")
	if c, err := ReadCursor(path); err != nil || c != (Cursor{}) {
		t.Fatalf("missing cursor: %+v %v", c, err)
	}
	want := Cursor{Entries: 12345, Checkpoint: 12000}
	if err := WriteCursor(path, want); err != nil {
		t.Fatal(err)
	}
	if c, err := ReadCursor(path); err != nil || c != want {
		t.Fatalf("read %+v %v, want %+v", c, err, want)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	for name, content := range map[string]string{
		"empty":     "",
		"torn":      "tongban-audit-export-cursor v1 entries=12",
		"garbage":   "hello\n",
		"negative":  "tongban-audit-export-cursor v1 entries=-1 checkpoint=0\n",
		"trailing":  "tongban-audit-export-cursor v1 entries=1 checkpoint=0\nx",
		"leading 0": "tongban-audit-export-cursor v1 entries=01 checkpoint=0\n",
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if c, err := ReadCursor(path); err == nil {
				t.Errorf("damaged cursor read as %+v", c)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Brokers: []string{"127.0.0.1:9092"}, Node: "n1", CursorFile: "/tmp/c"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Config){
		"no brokers":  func(c *Config) { c.Brokers = nil },
		"no node":     func(c *Config) { c.Node = "" },
		"slash node":  func(c *Config) { c.Node = "a/b" },
		"no cursor":   func(c *Config) { c.CursorFile = "" },
		"same topics": func(c *Config) { c.CheckpointsTopic = DefaultEntriesTopic },
		"bad batch":   func(c *Config) { c.BatchSize = -1 },
		"bad backoff": func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond },
		"bad timeout": func(c *Config) { c.WriteTimeout = -time.Second },
	}
	for name, mut := range cases {
		t.Run(name, func(t *testing.T) {
			c := good
			mut(&c)
			if err := c.Validate(); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestRunRejectsCursorBeyondLog(t *testing.T) {
	cursorFile := filepath.Join(t.TempDir(), "cursor")
	if err := WriteCursor(cursorFile, Cursor{Entries: 5}); err != nil {
		t.Fatal(err)
	}
	x, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Node: "n1", CursorFile: cursorFile}, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	l, _ := openLog(t, t.TempDir())
	defer l.Close()
	if err := x.Run(context.Background(), l); err == nil || !strings.Contains(err.Error(), "cursor") {
		t.Fatalf("Run with a cursor beyond the log: %v", err)
	}
}
