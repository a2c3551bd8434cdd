// Package export publishes a node's audit log to Kafka: every entry to the
// entries topic ("tongban.audit") and every checkpoint to the checkpoints
// topic ("tongban.checkpoints"), with github.com/segmentio/kafka-go.
//
// Nothing is lost: the log itself is the spool. The exporter keeps a
// durable cursor file holding how many entries (and up to which checkpoint
// size) Kafka has acknowledged with acks=all; it writes the cursor, with
// fsync, only after the acknowledgement, and it reads entries from the
// log's segment files with audit.Log.Scan. When Kafka is down it retries
// with exponential backoff and catches up from the cursor when Kafka is
// back, and after a restart of the gateway it resumes from the cursor.
//
// Delivery is at least once: a batch acknowledged by Kafka but not yet in
// the cursor (a crash in between, or a failed batch that Kafka partly
// accepted) is sent again. Every message carries a stable key,
// "<node>/<index>" for entries and "<node>/cp/<size>" for checkpoints, and
// a resent message has the same key and value, so downstream consumers
// de-duplicate by key (or use a compacted topic).
//
// A checkpoint is published only after every entry it covers has been
// acknowledged, so a consumer holding a checkpoint from the topic can
// verify it against the entries in the topic.
package export

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/merkle"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultEntriesTopic     = "tongban.audit"
	DefaultCheckpointsTopic = "tongban.checkpoints"
	DefaultBatchSize        = 500
	DefaultRetryMin         = 200 * time.Millisecond
	DefaultRetryMax         = 30 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
)

// Message headers.
const (
	HeaderNode     = "tongban-node"
	HeaderIndex    = "tongban-index"
	HeaderLeafHash = "tongban-leaf-hash" // lowercase hex of the RFC 6962 leaf hash
	HeaderSize     = "tongban-tree-size"
	HeaderRoot     = "tongban-root-hash" // lowercase hex
)

// Config configures an Exporter.
type Config struct {
	// Brokers are the Kafka bootstrap addresses (host:port).
	Brokers []string `yaml:"brokers"`
	// Node names this gateway node in message keys; it must not contain
	// "/".
	Node string `yaml:"node"`
	// EntriesTopic receives every entry.
	EntriesTopic string `yaml:"entries_topic"`
	// CheckpointsTopic receives every checkpoint note.
	CheckpointsTopic string `yaml:"checkpoints_topic"`
	// CursorFile is where the exporter keeps its position. It must be on
	// durable storage, conventionally inside the log directory's parent,
	// not inside the log directory itself.
	CursorFile string `yaml:"cursor_file"`
	// BatchSize is the most entries sent (and acknowledged) at once.
	BatchSize int `yaml:"batch_size"`
	// RetryMin and RetryMax bound the exponential backoff after a failure.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// WriteTimeout bounds one batch, acknowledgement included.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// WithDefaults returns c with every zero field that has a default set.
func (c Config) WithDefaults() Config {
	if c.EntriesTopic == "" {
		c.EntriesTopic = DefaultEntriesTopic
	}
	if c.CheckpointsTopic == "" {
		c.CheckpointsTopic = DefaultCheckpointsTopic
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Validate reports the problems of c after defaults are applied.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("audit export: brokers are required"))
	}
	if c.Node == "" || strings.Contains(c.Node, "/") {
		errs = append(errs, fmt.Errorf("audit export: node %q must be non-empty and without \"/\"", c.Node))
	}
	if c.CursorFile == "" {
		errs = append(errs, errors.New("audit export: cursor_file is required"))
	}
	if c.EntriesTopic == c.CheckpointsTopic {
		errs = append(errs, errors.New("audit export: entries and checkpoints topics must differ"))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("audit export: batch_size %d is below 1", c.BatchSize))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("audit export: need 0 < retry_min (%v) <= retry_max (%v)", c.RetryMin, c.RetryMax))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("audit export: write_timeout %v must be positive", c.WriteTimeout))
	}
	return errors.Join(errs...)
}

// Options holds the optional collaborators of an Exporter.
type Options struct {
	// Registry receives the exporter's metrics (a private registry when
	// nil).
	Registry prometheus.Registerer
	// Logger receives failures and recoveries (slog.Default when nil).
	Logger *slog.Logger
}

// Cursor is the exporter's durable position.
type Cursor struct {
	// Entries is the number of entries Kafka acknowledged: entries
	// 0..Entries-1 are in the entries topic.
	Entries uint64
	// Checkpoint is the size of the last checkpoint Kafka acknowledged.
	Checkpoint uint64
}

// Exporter publishes an audit log to Kafka. Register it with the log by
// audit.WithSink (it implements audit.CheckpointSink: appends and
// checkpoints only wake it), then call Run with the opened log.
type Exporter struct {
	cfg    Config
	logger *slog.Logger
	w      *kafka.Writer
	tr     *kafka.Transport

	wake chan struct{}
	size atomic.Uint64 // log size as last seen

	mu     sync.Mutex // guards cursor
	cursor Cursor

	exported atomic.Uint64 // cursor.Entries, readable without mu
	errs     prometheus.Counter
	sent     prometheus.Counter
}

var _ audit.CheckpointSink = (*Exporter)(nil)

// New returns an exporter positioned at its cursor file (at the start of
// the log when the file does not exist yet).
func New(cfg Config, opts Options) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	cur, err := ReadCursor(cfg.CursorFile)
	if err != nil {
		return nil, err
	}
	tr := &kafka.Transport{DialTimeout: 5 * time.Second, MetadataTTL: 30 * time.Second, ClientID: "tongban-audit-" + cfg.Node}
	x := &Exporter{
		cfg:    cfg,
		logger: opts.Logger.With("component", "audit-export", "node", cfg.Node),
		tr:     tr,
		w: &kafka.Writer{
			Addr:         kafka.TCP(cfg.Brokers...),
			Balancer:     &kafka.Hash{},
			RequiredAcks: kafka.RequireAll,
			MaxAttempts:  1, // retries are the exporter's, with its own backoff
			BatchSize:    cfg.BatchSize,
			BatchBytes:   4 * audit.MaxEntryBytes,
			BatchTimeout: time.Millisecond,
			WriteTimeout: cfg.WriteTimeout,
			ReadTimeout:  cfg.WriteTimeout,
			Transport:    tr,
		},
		wake:   make(chan struct{}, 1),
		cursor: cur,
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tongban_audit_export_errors_total",
			Help: "Failed attempts to publish audit entries or checkpoints to Kafka (each is retried).",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tongban_audit_export_entries_total",
			Help: "Audit entries acknowledged by Kafka (resends after a failure included).",
		}),
	}
	x.exported.Store(cur.Entries)
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tongban_audit_export_lag_entries",
		Help: "Audit entries durable in the log but not yet acknowledged by Kafka.",
	}, func() float64 { return float64(x.Lag()) })
	for _, c := range []prometheus.Collector{x.errs, x.sent, lag} {
		if err := opts.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("audit export: registering metrics: %w", err)
		}
	}
	return x, nil
}

// Appended implements audit.Sink: it notes the log's size and wakes Run.
func (x *Exporter) Appended(index uint64, _ []byte) {
	x.noteSize(index + 1)
	x.poke()
}

// CheckpointSigned implements audit.CheckpointSink: it wakes Run.
func (x *Exporter) CheckpointSigned(audit.Checkpoint) { x.poke() }

func (x *Exporter) poke() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

func (x *Exporter) noteSize(n uint64) {
	for {
		old := x.size.Load()
		if n <= old || x.size.CompareAndSwap(old, n) {
			return
		}
	}
}

// Cursor returns the exporter's current durable position.
func (x *Exporter) Cursor() Cursor {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cursor
}

// Lag returns how many entries known to be in the log Kafka has not yet
// acknowledged.
func (x *Exporter) Lag() uint64 {
	size, done := x.size.Load(), x.exported.Load()
	if size < done {
		return 0
	}
	return size - done
}

// Run publishes l until ctx ends, then returns nil. It drains everything
// from the cursor on, then waits for the log's notifications. Failures are
// logged, counted and retried with backoff; Run returns an error only when
// the cursor is inconsistent with the log (it is beyond the log's end) or
// cannot be written.
func (x *Exporter) Run(ctx context.Context, l *audit.Log) error {
	x.noteSize(l.Size())
	if c := x.Cursor(); c.Entries > l.Size() {
		return fmt.Errorf("audit export: cursor %s is at entry %d but the log holds %d entries", x.cfg.CursorFile, c.Entries, l.Size())
	}
	backoff := x.cfg.RetryMin
	failing := false
	for {
		err := x.drain(ctx, l)
		if ctx.Err() != nil {
			return nil
		}
		var ce *cursorError
		if errors.As(err, &ce) {
			return err
		}
		if err != nil {
			x.errs.Inc()
			if !failing {
				x.logger.Warn("publishing audit log to Kafka failed; retrying (entries wait in the log)", "err", err, "lag", x.Lag())
			} else {
				x.logger.Debug("publishing audit log to Kafka failed again", "err", err, "lag", x.Lag(), "backoff", backoff)
			}
			failing = true
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, x.cfg.RetryMax)
			continue
		}
		if failing {
			x.logger.Info("publishing audit log to Kafka recovered", "exported", x.Cursor().Entries)
			failing = false
		}
		backoff = x.cfg.RetryMin
		select {
		case <-ctx.Done():
			return nil
		case <-x.wake:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errBatchFull stops a Scan once a batch is full.
var errBatchFull = errors.New("batch full")

// drain publishes every entry from the cursor to the log's current end,
// then every checkpoint not yet published that those entries cover.
func (x *Exporter) drain(ctx context.Context, l *audit.Log) error {
	for {
		size := l.Size()
		x.noteSize(size)
		cur := x.Cursor()
		if cur.Entries >= size {
			break
		}
		msgs := make([]kafka.Message, 0, min(uint64(x.cfg.BatchSize), size-cur.Entries))
		err := l.Scan(ctx, cur.Entries, func(index uint64, data []byte) error {
			msgs = append(msgs, x.entryMessage(index, data))
			if len(msgs) == x.cfg.BatchSize {
				return errBatchFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errBatchFull) {
			return fmt.Errorf("reading entries from %d: %w", cur.Entries, err)
		}
		if len(msgs) == 0 {
			break
		}
		if err := x.write(ctx, msgs); err != nil {
			return fmt.Errorf("publishing entries %d..%d: %w", cur.Entries, cur.Entries+uint64(len(msgs))-1, err)
		}
		x.sent.Add(float64(len(msgs)))
		cur.Entries += uint64(len(msgs))
		if err := x.store(cur); err != nil {
			return err
		}
	}
	cur := x.Cursor()
	for _, cp := range l.CheckpointsAfter(cur.Checkpoint) {
		if cp.Size > cur.Entries {
			break
		}
		if err := x.write(ctx, []kafka.Message{x.checkpointMessage(cp)}); err != nil {
			return fmt.Errorf("publishing checkpoint of size %d: %w", cp.Size, err)
		}
		cur.Checkpoint = cp.Size
		if err := x.store(cur); err != nil {
			return err
		}
	}
	return nil
}

func (x *Exporter) write(ctx context.Context, msgs []kafka.Message) error {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.WriteTimeout)
	defer cancel()
	return x.w.WriteMessages(ctx, msgs...)
}

func (x *Exporter) entryMessage(index uint64, data []byte) kafka.Message {
	leaf := merkle.HashLeaf(data)
	return kafka.Message{
		Topic: x.cfg.EntriesTopic,
		Key:   []byte(EntryKey(x.cfg.Node, index)),
		Value: append([]byte(nil), data...),
		Headers: []kafka.Header{
			{Key: HeaderNode, Value: []byte(x.cfg.Node)},
			{Key: HeaderIndex, Value: []byte(strconv.FormatUint(index, 10))},
			{Key: HeaderLeafHash, Value: []byte(hex.EncodeToString(leaf[:]))},
		},
	}
}

func (x *Exporter) checkpointMessage(cp audit.Checkpoint) kafka.Message {
	return kafka.Message{
		Topic: x.cfg.CheckpointsTopic,
		Key:   []byte(CheckpointKey(x.cfg.Node, cp.Size)),
		Value: []byte(cp.Note),
		Headers: []kafka.Header{
			{Key: HeaderNode, Value: []byte(x.cfg.Node)},
			{Key: HeaderSize, Value: []byte(strconv.FormatUint(cp.Size, 10))},
			{Key: HeaderRoot, Value: []byte(hex.EncodeToString(cp.Root[:]))},
		},
	}
}

// EntryKey returns the message key of entry index of node: "<node>/<index>".
func EntryKey(node string, index uint64) string {
	return node + "/" + strconv.FormatUint(index, 10)
}

// CheckpointKey returns the message key of node's checkpoint of size
// entries: "<node>/cp/<size>".
func CheckpointKey(node string, size uint64) string {
	return node + "/cp/" + strconv.FormatUint(size, 10)
}

// store makes cur durable, then adopts it.
func (x *Exporter) store(cur Cursor) error {
	if err := WriteCursor(x.cfg.CursorFile, cur); err != nil {
		return &cursorError{err}
	}
	x.mu.Lock()
	x.cursor = cur
	x.mu.Unlock()
	x.exported.Store(cur.Entries)
	return nil
}

// Close releases the Kafka connections. Call it after Run returned.
func (x *Exporter) Close() error {
	err := x.w.Close()
	x.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("audit export: closing Kafka writer: %w", err)
	}
	return nil
}

// cursorError is a failure to keep the cursor, which stops Run.
type cursorError struct{ err error }

func (e *cursorError) Error() string { return e.err.Error() }
func (e *cursorError) Unwrap() error { return e.err }

// The cursor file is one line of text:
//
//	tongban-audit-export-cursor v1 entries=<n> checkpoint=<size>\n
const cursorPrefix = "tongban-audit-export-cursor v1 "

// ReadCursor reads a cursor file; a missing file is the zero cursor.
func ReadCursor(path string) (Cursor, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("audit export: reading cursor: %w", err)
	}
	var c Cursor
	line, ok := strings.CutPrefix(string(b), cursorPrefix)
	if ok {
		_, err = fmt.Sscanf(line, "entries=%d checkpoint=%d\n", &c.Entries, &c.Checkpoint)
	}
	if !ok || err != nil || string(b) != formatCursor(c) {
		return Cursor{}, fmt.Errorf("audit export: cursor file %s is damaged (%q); move it away to re-export the whole log", path, string(b))
	}
	return c, nil
}

func formatCursor(c Cursor) string {
	return fmt.Sprintf("%sentries=%d checkpoint=%d\n", cursorPrefix, c.Entries, c.Checkpoint)
}

// WriteCursor replaces the cursor file atomically and durably: it writes a
// temporary file, syncs it, renames it over path and syncs the directory.
func WriteCursor(path string, c Cursor) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit export: writing cursor: %w", err)
	}
	_, err = f.WriteString(formatCursor(c))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Dir(path)); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("audit export: writing cursor %s: %w", path, err)
	}
	return nil
}
