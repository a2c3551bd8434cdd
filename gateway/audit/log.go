// Package audit is the whole-process record (全过程记录): a durable,
// append-only, tamper-evident log of every exchange, auto-fill and grant
// transition made by one gateway node.
//
// Entries (see Entry and Encode) are Merkle tree leaves hashed as in RFC
// 6962 / RFC 9162 (package merkle). The log writes them to segment files
// with group commit: Append returns only once the entry is on disk
// (fsync'd), and a failed write fails that append and every later one (fail
// closed), so a caller that cannot record an exchange refuses it. Under load
// appenders block; entries are never dropped.
//
// Every CheckpointEvery entries, every CheckpointInterval and on Close the
// log signs a checkpoint (C2SP tlog-checkpoint in a C2SP signed note, Ed25519)
// and keeps it in the directory. Inclusion proofs tie an entry to any
// checkpoint; consistency proofs tie checkpoints together. VerifyDir,
// VerifyReceipt and VerifyConsistency check all of it offline with the
// public key alone.
//
// An entry names its data subjects only by keyed hashes (SubjectHash); the
// log indexes them so that EntriesForSubject serves the data-subject access
// log. Sinks registered with WithSink see every durable entry (and, for a
// CheckpointSink, every checkpoint): Stats keeps the published aggregates
// and package export publishes the log to Kafka. See docs/audit.md.
package audit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tongban/tongban/gateway/audit/merkle"
)

// maxBatchBytes bounds the bytes written by one group commit.
const maxBatchBytes = 8 << 20

// Errors returned by a Log.
var (
	// ErrClosed is returned by calls on a closed log.
	ErrClosed = errors.New("audit log closed")
	// ErrFailed is returned by appends after a write or fsync failed. The
	// log must be reopened.
	ErrFailed = errors.New("audit log failed")
	// ErrNotFound is returned for an index or tree size beyond the log.
	ErrNotFound = errors.New("audit entry not found")
)

// Receipt identifies a durable entry: its leaf index and RFC 6962 leaf hash.
type Receipt struct {
	Index    uint64
	LeafHash merkle.Hash
}

// Sink receives every entry once it is durable, in index order, from the
// log's writer goroutine. Appended must not block: an exporter hands the
// entry off (or just notes the index and reads entries later with Scan).
// data is only valid during the call.
type Sink interface {
	Appended(index uint64, data []byte)
}

// EntrySink is a Sink that takes the decoded entry as well, which the log
// has at hand: the writer calls AppendedEntry instead of Appended, sparing
// a decode on its goroutine. e must not be retained or modified.
type EntrySink interface {
	Sink
	AppendedEntry(index uint64, e *Entry)
}

// CheckpointSink is a Sink that is also told of every checkpoint once it
// is stored. CheckpointSigned must not block.
type CheckpointSink interface {
	Sink
	CheckpointSigned(cp Checkpoint)
}

// Record is a decoded entry with its index.
type Record struct {
	Index uint64
	Entry Entry
}

// Option customises Open.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	sinks    []Sink
	replay   []Sink
	wrapFile func(file) file
}

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithSink registers a Sink called after every durable append. It may be
// given several times; sinks are called in the order given.
func WithSink(s Sink) Option { return func(o *options) { o.sinks = append(o.sinks, s) } }

// WithReplaySink registers a Sink like WithSink that, in addition, receives
// every entry already in the log, in order, while Open loads it, before
// any new entry. In-memory indexes built from the whole log (such as
// Stats) use it, so that no entry is missed or counted twice.
func WithReplaySink(s Sink) Option {
	return func(o *options) {
		o.sinks = append(o.sinks, s)
		o.replay = append(o.replay, s)
	}
}

// file is the part of *os.File the log writes segments through.
type file interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

type segment struct {
	first   uint64
	name    string
	f       file
	offsets []uint32 // frame offset of each entry
}

// request is one append on its way to the writer. Requests are pooled
// (see getRequest): the appender owns a request until it is queued, the
// writer from then until it sends the result on done, and the appender
// again once it has received the result. An appender that stops waiting
// (its context ended) never gets it back and leaves it to the garbage
// collector, since the writer may still be using it.
type request struct {
	frame []byte // frame header and entry
	leaf  merkle.Hash
	entry Entry
	done  chan result // buffered: the writer never waits on it
}

// requests holds idle requests.
var requests = sync.Pool{New: func() any { return &request{done: make(chan result, 1)} }}

// Frame buffer sizes: a new frame has room for a typical entry; a pooled
// request keeps its frame unless it grew beyond maxPooledFrame.
const (
	newFrameCap    = 1280
	maxPooledFrame = 64 << 10
)

// getRequest returns an idle request whose frame has room for the frame
// header and nothing after it.
func getRequest() *request {
	req := requests.Get().(*request)
	if cap(req.frame) < newFrameCap {
		req.frame = make([]byte, frameHeader, newFrameCap)
	}
	req.frame = req.frame[:frameHeader]
	return req
}

// putRequest makes req idle. Only its owner may call it: the appender of a
// request that was never queued or whose result it received.
func putRequest(req *request) {
	req.entry = Entry{} // drop the caller's strings
	if cap(req.frame) > maxPooledFrame {
		req.frame = nil
	}
	requests.Put(req)
}

type result struct {
	r   Receipt
	err error
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	cfg      Config
	logger   *slog.Logger
	sinks    []Sink
	replay   []Sink
	wrapFile func(file) file
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	lock     *os.File

	appendMu sync.RWMutex // held for reading while enqueueing
	closed   bool
	queue    chan *request

	mu       sync.RWMutex // guards everything below until the writer fields
	tree     merkle.Tree
	segs     []*segment
	subjects map[string][]uint64
	failed   error
	shut     bool // files closed

	// hasFailed is set, under mu, when failed is: appenders test it
	// without taking mu.
	hasFailed atomic.Bool

	// Owned by the writer goroutine.
	active     *segment
	activeSize int64
	buf        []byte
	offs       []uint32

	cpMu     sync.Mutex // serialises checkpoint signing and guards below
	cps      []Checkpoint
	cpFile   *os.File
	cpSize   int64
	cpBroken error

	batches  atomic.Uint64 // group commits written since Open
	appended atomic.Uint64 // entries appended since Open

	stop       chan struct{}
	writerDone chan struct{}
	tickerDone chan struct{}
}

// Open opens (or creates) the log in cfg.Dir. It scans every segment,
// truncates a torn tail of the last segment left by a crash, rebuilds the
// Merkle tree and the subject index, and checks every stored checkpoint's
// signature and root against the rebuilt tree. A damaged frame anywhere
// else, or a frame covered by a checkpoint, is an error naming the entry
// (a *CorruptError); a checkpoint that does not match is an error wrapping
// ErrCheckpoint.
func Open(ctx context.Context, cfg Config, opts ...Option) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	o := options{logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	skey := cfg.SigningKey
	if cfg.SigningKeyFile != "" {
		k, err := LoadKeyFile(cfg.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		skey = k
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("audit: signing key: %w", err)
	}
	if signer.Name() != cfg.Origin {
		return nil, fmt.Errorf("audit: signing key is named %q, origin is %q", signer.Name(), cfg.Origin)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: creating %s: %w", cfg.Dir, err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{
		cfg:        cfg,
		logger:     o.logger.With("component", "audit", "dir", cfg.Dir),
		sinks:      o.sinks,
		replay:     o.replay,
		wrapFile:   o.wrapFile,
		signer:     signer,
		verifier:   verifier,
		vkey:       vkey,
		lock:       lock,
		queue:      make(chan *request, cfg.QueueDepth),
		subjects:   make(map[string][]uint64),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		tickerDone: make(chan struct{}),
	}
	if err := l.load(ctx); err != nil {
		l.closeFiles()
		lock.Close()
		return nil, fmt.Errorf("audit: opening %s: %w", cfg.Dir, err)
	}
	go l.run()
	go l.tick()
	l.logger.Info("audit log open", "entries", l.tree.Size(), "segments", len(l.segs), "checkpoints", len(l.cps))
	return l, nil
}

func (l *Log) wrap(f *os.File) file {
	if l.wrapFile != nil {
		return l.wrapFile(dataSyncFile{f})
	}
	return dataSyncFile{f}
}

// dataSyncFile is a segment file whose Sync commits what appends need
// (syncData) rather than everything fsync commits.
type dataSyncFile struct{ *os.File }

func (f dataSyncFile) Sync() error { return syncData(f.File) }

// load reads the checkpoints and segments and rebuilds the in-memory state.
func (l *Log) load(ctx context.Context) error {
	dir := l.cfg.Dir
	if tmps, err := filepath.Glob(filepath.Join(dir, "*.tmp")); err == nil {
		for _, t := range tmps {
			l.logger.Warn("removing unfinished segment file", "file", filepath.Base(t))
			if err := os.Remove(t); err != nil {
				return fmt.Errorf("removing %s: %w", t, err)
			}
		}
	}
	if err := l.loadCheckpoints(); err != nil {
		return err
	}
	var signed uint64
	if n := len(l.cps); n > 0 {
		signed = l.cps[n-1].Size
	}

	firsts, err := listSegments(dir)
	if err != nil {
		return err
	}
	for i, first := range firsts {
		if first != l.tree.Size() {
			return &CorruptError{Segment: segmentName(first), Index: l.tree.Size(), Offset: 0,
				Reason: fmt.Sprintf("segment starts at entry %d, expected %d (missing or extra segment)", first, l.tree.Size())}
		}
		seg := &segment{first: first, name: segmentName(first)}
		r, err := scanSegment(dir, first, func(index uint64, off int64, data []byte) error {
			if index%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			subjects, err := subjectsOf(data)
			if err != nil {
				return &CorruptError{Segment: seg.name, Index: index, Offset: off, Reason: err.Error()}
			}
			l.tree.AppendLeafHash(merkle.HashLeaf(data))
			seg.offsets = append(seg.offsets, uint32(off))
			for _, s := range subjects {
				l.subjects[s] = append(l.subjects[s], index)
			}
			if err := l.replayEntry(index, data); err != nil {
				return &CorruptError{Segment: seg.name, Index: index, Offset: off, Reason: err.Error()}
			}
			return nil
		})
		if err != nil {
			return err
		}
		last := i == len(firsts)-1
		if r.corrupt != nil {
			if !last {
				return r.corrupt
			}
			if r.corrupt.Index < signed {
				r.corrupt.Reason += fmt.Sprintf(" (entry is covered by the signed checkpoint of size %d)", signed)
				return r.corrupt
			}
			if !r.torn {
				r.corrupt.Reason += " (more data follows: not a torn tail, acknowledged entries would be lost)"
				return r.corrupt
			}
			if err := l.truncateTail(seg, r); err != nil {
				return err
			}
		}
		mode := os.O_RDONLY
		if last {
			mode = os.O_RDWR
		}
		f, err := os.OpenFile(filepath.Join(dir, seg.name), mode, 0)
		if err != nil {
			return fmt.Errorf("opening segment %s: %w", seg.name, err)
		}
		if last {
			if _, err := f.Seek(r.end, io.SeekStart); err != nil {
				f.Close()
				return fmt.Errorf("seeking segment %s: %w", seg.name, err)
			}
			l.active, l.activeSize = seg, r.end
		}
		seg.f = l.wrap(f)
		l.segs = append(l.segs, seg)
	}
	if len(l.segs) == 0 {
		if err := l.roll(); err != nil {
			return err
		}
	}
	size := l.tree.Size()
	for i, cp := range l.cps {
		if cp.Size > size {
			return fmt.Errorf("%w: checkpoint %d signs size %d but the log holds %d entries: entries were removed", ErrCorrupt, i, cp.Size, size)
		}
		root, err := l.tree.RootAt(cp.Size)
		if err != nil {
			return err
		}
		if root != cp.Root {
			return fmt.Errorf("%w: checkpoint %d of size %d has root %x but the entries hash to %x: the log was altered", ErrCheckpoint, i, cp.Size, cp.Root, root)
		}
	}
	return nil
}

// replayEntry gives an entry read by Open to the replay sinks.
func (l *Log) replayEntry(index uint64, data []byte) error {
	var e *Entry
	for _, s := range l.replay {
		if es, ok := s.(EntrySink); ok {
			if e == nil {
				d, err := Decode(data)
				if err != nil {
					return err
				}
				e = &d
			}
			es.AppendedEntry(index, e)
			continue
		}
		s.Appended(index, data)
	}
	return nil
}

// truncateTail cuts a torn or damaged tail off the last segment.
func (l *Log) truncateTail(seg *segment, r scanResult) error {
	path := filepath.Join(l.cfg.Dir, seg.name)
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("truncating %s: %w", seg.name, err)
	}
	l.logger.Warn("truncating torn tail of audit log",
		"segment", seg.name, "first_lost_index", r.corrupt.Index, "offset", r.end,
		"bytes_cut", st.Size()-r.end, "reason", r.corrupt.Reason)
	if err := os.Truncate(path, r.end); err != nil {
		return fmt.Errorf("truncating %s: %w", seg.name, err)
	}
	return syncPath(path)
}

// loadCheckpoints reads and verifies the checkpoints file and opens it for
// appending.
func (l *Log) loadCheckpoints() error {
	path := filepath.Join(l.cfg.Dir, checkpointsFile)
	frames, end, corrupt, torn, err := readFrames(path)
	if err != nil {
		return err
	}
	if corrupt != nil {
		if !torn {
			return corrupt
		}
		l.logger.Warn("truncating torn tail of checkpoints file", "offset", end, "reason", corrupt.Reason)
		if err := os.Truncate(path, end); err != nil {
			return fmt.Errorf("truncating %s: %w", checkpointsFile, err)
		}
	}
	for i, fr := range frames {
		cp, err := openCheckpoint(string(fr), l.verifier)
		if err != nil {
			return fmt.Errorf("checkpoint %d in %s: %w", i, checkpointsFile, err)
		}
		if cp.Origin != l.cfg.Origin {
			return fmt.Errorf("%w: checkpoint %d has origin %q, want %q", ErrCheckpoint, i, cp.Origin, l.cfg.Origin)
		}
		if i > 0 && cp.Size < l.cps[i-1].Size {
			return fmt.Errorf("%w: checkpoint %d has size %d, below the previous %d", ErrCheckpoint, i, cp.Size, l.cps[i-1].Size)
		}
		l.cps = append(l.cps, cp)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", checkpointsFile, err)
	}
	l.cpFile, l.cpSize = f, end
	return syncPath(l.cfg.Dir)
}

// subjectsOf extracts the subjects of an entry encoding cheaply.
func subjectsOf(data []byte) ([]string, error) {
	if len(data) < 2 || data[0] != EntryVersion {
		return nil, errors.New("not an audit entry encoding")
	}
	var s struct {
		Subjects []string `json:"subjects"`
	}
	if err := json.Unmarshal(data[1:], &s); err != nil {
		return nil, fmt.Errorf("not an audit entry encoding: %v", err)
	}
	return s.Subjects, nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}

// Append records a canonical entry encoding (see Encode) and returns its
// receipt once the entry is durable. It blocks while the writer's queue is
// full. On error the entry must be treated as not recorded and the
// exchange refused; after a write failure every append fails with
// ErrFailed until the log is reopened. If ctx ends after the entry was
// queued, Append returns the context's error although the entry may still
// be recorded.
func (l *Log) Append(ctx context.Context, data []byte) (Receipt, error) {
	e, err := Decode(data)
	if err != nil {
		return Receipt{}, fmt.Errorf("audit append: %w", err)
	}
	req := getRequest()
	req.frame = append(req.frame, data...)
	req.entry = e
	return l.enqueue(ctx, req)
}

// AppendEntry encodes e and appends it like Append.
func (l *Log) AppendEntry(ctx context.Context, e Entry) (Receipt, error) {
	req := getRequest()
	// Encode straight after room for the frame header.
	frame, err := appendEntry(req.frame, &e)
	if err != nil {
		putRequest(req)
		return Receipt{}, fmt.Errorf("audit append: %w", err)
	}
	req.frame = frame
	req.entry = e
	req.entry.Version = EntryVersion
	req.entry.Time = e.Time.UTC()
	req.entry.Subjects = normSubjects(e.Subjects)
	return l.enqueue(ctx, req)
}

// enqueue appends req's entry, framed in req.frame (whose header it fills
// in), and waits for its commit. It takes ownership of req.
func (l *Log) enqueue(ctx context.Context, req *request) (Receipt, error) {
	data := req.frame[frameHeader:]
	if err := ctx.Err(); err != nil {
		putRequest(req)
		return Receipt{}, fmt.Errorf("audit append: %w", err)
	}
	if len(data) > MaxEntryBytes {
		n := len(data)
		putRequest(req)
		return Receipt{}, fmt.Errorf("audit append: %w: entry of %d bytes exceeds %d", ErrEncoding, n, MaxEntryBytes)
	}
	if l.hasFailed.Load() {
		putRequest(req)
		l.mu.RLock()
		failed := l.failed
		l.mu.RUnlock()
		return Receipt{}, fmt.Errorf("audit append: %w: %v", ErrFailed, failed)
	}
	putFrameHeader(req.frame)
	req.leaf = merkle.HashLeaf(data)
	l.appendMu.RLock()
	if l.closed {
		l.appendMu.RUnlock()
		putRequest(req)
		return Receipt{}, fmt.Errorf("audit append: %w", ErrClosed)
	}
	// Queue without a select when there is room (the common case).
	select {
	case l.queue <- req:
		l.appendMu.RUnlock()
	default:
		select {
		case l.queue <- req:
			l.appendMu.RUnlock()
		case <-ctx.Done():
			l.appendMu.RUnlock()
			putRequest(req) // never queued
			return Receipt{}, fmt.Errorf("audit append: waiting for queue: %w", ctx.Err())
		}
	}
	select {
	case res := <-req.done:
		putRequest(req) // the writer is done with it
		return res.r, res.err
	case <-ctx.Done():
		// The writer still holds req and will send its result: req must
		// not be reused.
		return Receipt{}, fmt.Errorf("audit append: waiting for durability: %w", ctx.Err())
	}
}

// run is the writer goroutine: it batches queued appends into one write and
// one fsync (group commit).
func (l *Log) run() {
	defer close(l.writerDone)
	batch := make([]*request, 0, l.cfg.MaxBatch)
	for {
		req, ok := <-l.queue
		if !ok {
			return
		}
		batch = append(batch[:0], req)
		bytes := len(req.frame)
		open := true
		// Gather: take what is queued, then yield the processor and take
		// what the goroutines that ran meanwhile queued, for as long as
		// yielding brings more. On an idle node no other goroutine is
		// runnable, Gosched returns at once and the entry is committed
		// without delay; on a busy one, the requests already running
		// reach their append during the yield and share this fsync
		// instead of each paying for one.
		for round := 0; open && round <= gatherRounds && len(batch) < l.cfg.MaxBatch && bytes < maxBatchBytes; round++ {
			if round > 0 {
				runtime.Gosched()
			}
			before := len(batch)
		fill:
			for len(batch) < l.cfg.MaxBatch && bytes < maxBatchBytes {
				select {
				case r, ok := <-l.queue:
					if !ok {
						open = false
						break fill
					}
					batch = append(batch, r)
					bytes += len(r.frame)
				default:
					break fill
				}
			}
			if round > 0 && len(batch) == before {
				break
			}
		}
		l.commit(batch)
		clear(batch)
	}
}

// gatherRounds bounds how many times the writer yields the processor to
// let more appends arrive before it commits a batch.
const gatherRounds = 8

func (l *Log) commit(batch []*request) {
	reply := func(err error) {
		for _, r := range batch {
			r.done <- result{err: err}
		}
	}
	l.mu.RLock()
	failed := l.failed
	l.mu.RUnlock()
	if failed != nil {
		reply(fmt.Errorf("audit append: %w: %v", ErrFailed, failed))
		return
	}
	if l.activeSize >= l.cfg.SegmentBytes && len(l.active.offsets) > 0 {
		if err := l.roll(); err != nil {
			reply(l.fail(err))
			return
		}
	}
	l.buf = l.buf[:0]
	offs := l.offs[:0]
	for _, r := range batch {
		offs = append(offs, uint32(l.activeSize+int64(len(l.buf))))
		l.buf = append(l.buf, r.frame...)
	}
	l.offs = offs
	if _, err := l.active.f.Write(l.buf); err != nil {
		reply(l.failWrite(fmt.Errorf("writing segment %s: %w", l.active.name, err)))
		return
	}
	if err := l.active.f.Sync(); err != nil {
		reply(l.failWrite(fmt.Errorf("syncing segment %s: %w", l.active.name, err)))
		return
	}
	l.activeSize += int64(len(l.buf))
	l.batches.Add(1)
	l.appended.Add(uint64(len(batch)))
	if cap(l.buf) > maxBatchBytes {
		l.buf = nil
	}

	l.mu.Lock()
	first := l.tree.Size()
	for i, r := range batch {
		l.tree.AppendLeafHash(r.leaf)
		l.active.offsets = append(l.active.offsets, offs[i])
		for _, s := range r.entry.Subjects {
			l.subjects[s] = append(l.subjects[s], first+uint64(i))
		}
	}
	size := l.tree.Size()
	l.mu.Unlock()

	for _, s := range l.sinks {
		es, _ := s.(EntrySink)
		for i, r := range batch {
			if es != nil {
				es.AppendedEntry(first+uint64(i), &r.entry)
			} else {
				s.Appended(first+uint64(i), r.frame[frameHeader:])
			}
		}
	}
	if size-l.signedSize() >= l.cfg.CheckpointEvery {
		if _, err := l.checkpoint(); err != nil {
			l.logger.Error("signing checkpoint", "size", size, "err", err)
		}
	}
	for i, r := range batch {
		r.done <- result{r: Receipt{Index: first + uint64(i), LeafHash: r.leaf}}
	}
}

// fail puts the log in the failed state and returns the error to give the
// appenders of the failed batch.
func (l *Log) fail(err error) error {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
		l.hasFailed.Store(true)
	}
	l.mu.Unlock()
	l.logger.Error("audit log failed; refusing further appends until reopened", "err", err)
	return fmt.Errorf("audit append: %w: %v", ErrFailed, err)
}

// failWrite fails the log after a write or fsync error, first trying to cut
// the partial batch off so that it is not mistaken for entries later.
func (l *Log) failWrite(err error) error {
	if terr := l.active.f.Truncate(l.activeSize); terr != nil {
		l.logger.Error("cutting failed batch from segment", "segment", l.active.name, "err", terr)
	}
	return l.fail(err)
}

// roll starts a new segment at the current tree size. The header is written
// to a temporary file that is synced and renamed, so a segment file always
// has a complete header.
func (l *Log) roll() error {
	first := l.tree.Size()
	name := segmentName(first)
	path := filepath.Join(l.cfg.Dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, segmentHeaderBytes(first), 0o600); err != nil {
		return fmt.Errorf("creating segment %s: %w", name, err)
	}
	if err := syncPath(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("creating segment %s: %w", name, err)
	}
	if err := syncPath(l.cfg.Dir); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening segment %s: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return fmt.Errorf("seeking segment %s: %w", name, err)
	}
	seg := &segment{first: first, name: name, f: l.wrap(f)}
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.mu.Unlock()
	if l.active != nil {
		l.logger.Info("audit segment rolled", "segment", name, "previous", l.active.name)
	}
	l.active, l.activeSize = seg, segmentHeader
	return nil
}

// tick signs checkpoints every CheckpointInterval.
func (l *Log) tick() {
	defer close(l.tickerDone)
	t := time.NewTicker(l.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := l.checkpoint(); err != nil {
				l.logger.Error("signing checkpoint", "err", err)
			}
		case <-l.stop:
			return
		}
	}
}

func (l *Log) signedSize() uint64 {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if n := len(l.cps); n > 0 {
		return l.cps[n-1].Size
	}
	return 0
}

// checkpoint signs and stores a checkpoint of the current tree unless the
// latest one already covers it.
func (l *Log) checkpoint() (Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	l.mu.RLock()
	size, root, shut := l.tree.Size(), l.tree.Root(), l.shut
	l.mu.RUnlock()
	if n := len(l.cps); n > 0 && l.cps[n-1].Size == size {
		return l.cps[n-1], nil
	}
	if shut {
		return Checkpoint{}, ErrClosed
	}
	if l.cpBroken != nil {
		return Checkpoint{}, fmt.Errorf("checkpoints file unusable: %w", l.cpBroken)
	}
	cp, err := signCheckpoint(l.signer, l.cfg.Origin, size, root)
	if err != nil {
		return Checkpoint{}, err
	}
	fr := appendFrame(nil, []byte(cp.Note))
	_, err = l.cpFile.Write(fr)
	if err == nil {
		err = l.cpFile.Sync()
	}
	if err != nil {
		if terr := l.cpFile.Truncate(l.cpSize); terr != nil {
			l.cpBroken = terr
		}
		return Checkpoint{}, fmt.Errorf("storing checkpoint of size %d: %w", size, err)
	}
	l.cpSize += int64(len(fr))
	l.cps = append(l.cps, cp)
	l.logger.Debug("checkpoint signed", "size", size)
	for _, s := range l.sinks {
		if cs, ok := s.(CheckpointSink); ok {
			cs.CheckpointSigned(cp)
		}
	}
	return cp, nil
}

// Close stops accepting appends, writes what is queued, signs a final
// checkpoint and releases the directory.
func (l *Log) Close() error {
	l.appendMu.Lock()
	if l.closed {
		l.appendMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue)
	l.appendMu.Unlock()
	<-l.writerDone
	close(l.stop)
	<-l.tickerDone
	var errs []error
	if _, err := l.checkpoint(); err != nil {
		errs = append(errs, fmt.Errorf("audit: final checkpoint: %w", err))
	}
	l.mu.Lock()
	l.shut = true
	l.mu.Unlock()
	errs = append(errs, l.closeFiles())
	if l.lock != nil {
		errs = append(errs, l.lock.Close())
	}
	return errors.Join(errs...)
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segs {
		if s.f != nil {
			errs = append(errs, s.f.Close())
		}
	}
	if l.cpFile != nil {
		errs = append(errs, l.cpFile.Close())
	}
	return errors.Join(errs...)
}

// Size returns the number of durable entries.
func (l *Log) Size() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.tree.Size()
}

// Commits returns the number of group commits (one write and one fsync
// each) and the number of entries they appended since the log was opened.
// Their ratio is the mean batch size.
func (l *Log) Commits() (commits, entries uint64) {
	return l.batches.Load(), l.appended.Load()
}

// VerifierKey returns the public key that verifies this log's checkpoints,
// in the signed-note verifier key text format.
func (l *Log) VerifierKey() string { return l.vkey }

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.cfg.Origin }

// Checkpoint returns the latest checkpoint, signing a new one first if
// entries were appended since the last.
func (l *Log) Checkpoint() (Checkpoint, error) {
	cp, err := l.checkpoint()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	return cp, nil
}

// Checkpoints returns every stored checkpoint, oldest first.
func (l *Log) Checkpoints() []Checkpoint {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	return append([]Checkpoint(nil), l.cps...)
}

// LatestCheckpoint returns the latest stored checkpoint without signing a
// new one; ok is false when none was signed yet.
func (l *Log) LatestCheckpoint() (cp Checkpoint, ok bool) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if n := len(l.cps); n > 0 {
		return l.cps[n-1], true
	}
	return Checkpoint{}, false
}

// CheckpointsAfter returns the stored checkpoints of more than size
// entries, oldest first.
func (l *Log) CheckpointsAfter(size uint64) []Checkpoint {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	i := sort.Search(len(l.cps), func(i int) bool { return l.cps[i].Size > size })
	return append([]Checkpoint(nil), l.cps[i:]...)
}

// CheckpointAt returns the stored checkpoint of the given tree size.
func (l *Log) CheckpointAt(size uint64) (Checkpoint, bool) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	i := sort.Search(len(l.cps), func(i int) bool { return l.cps[i].Size >= size })
	if i < len(l.cps) && l.cps[i].Size == size {
		return l.cps[i], true
	}
	return Checkpoint{}, false
}

// LeafHash returns the leaf hash of entry index.
func (l *Log) LeafHash(index uint64) (merkle.Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	h, err := l.tree.LeafHash(index)
	if err != nil {
		return h, fmt.Errorf("audit: %w: %v", ErrNotFound, err)
	}
	return h, nil
}

// RootAt returns the root hash of the first size entries.
func (l *Log) RootAt(size uint64) (merkle.Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	h, err := l.tree.RootAt(size)
	if err != nil {
		return h, fmt.Errorf("audit: %w: %v", ErrNotFound, err)
	}
	return h, nil
}

// InclusionProof returns the RFC 9162 inclusion proof of entry index in the
// tree of treeSize entries (e.g. a checkpoint's size).
func (l *Log) InclusionProof(index, treeSize uint64) ([]merkle.Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p, err := l.tree.InclusionProof(index, treeSize)
	if err != nil {
		return nil, fmt.Errorf("audit: %w: %v", ErrNotFound, err)
	}
	return p, nil
}

// ConsistencyProof returns the RFC 9162 proof that the tree of size to
// extends the tree of size from.
func (l *Log) ConsistencyProof(from, to uint64) ([]merkle.Hash, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	p, err := l.tree.ConsistencyProof(from, to)
	if err != nil {
		return nil, fmt.Errorf("audit: %w: %v", ErrNotFound, err)
	}
	return p, nil
}

// Entry reads the encoding of entry index from disk, checking its CRC.
func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.RLock()
	if l.shut {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	if index >= l.tree.Size() {
		size := l.tree.Size()
		l.mu.RUnlock()
		return nil, fmt.Errorf("audit: %w: entry %d, log size %d", ErrNotFound, index, size)
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > index }) - 1
	seg := l.segs[i]
	off := int64(seg.offsets[index-seg.first])
	l.mu.RUnlock()
	return readFrameAt(seg, index, off)
}

func readFrameAt(seg *segment, index uint64, off int64) ([]byte, error) {
	var h [frameHeader]byte
	if _, err := seg.f.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("audit: reading entry %d from %s: %w", index, seg.name, err)
	}
	n := binary.BigEndian.Uint32(h[0:4])
	if n == 0 || n > MaxEntryBytes {
		return nil, &CorruptError{Segment: seg.name, Index: index, Offset: off, Reason: fmt.Sprintf("frame length %d out of range", n)}
	}
	data := make([]byte, n)
	if _, err := seg.f.ReadAt(data, off+frameHeader); err != nil {
		return nil, fmt.Errorf("audit: reading entry %d from %s: %w", index, seg.name, err)
	}
	if crc32.Checksum(data, crcTable) != binary.BigEndian.Uint32(h[4:8]) {
		return nil, &CorruptError{Segment: seg.name, Index: index, Offset: off, Reason: "checksum mismatch"}
	}
	return data, nil
}

// Scan calls fn for entries from index from up to the log size at the time
// of the call, in order, reading them from disk. It is the seam for
// exporters that catch up from a stored offset. fn's error stops the scan
// and is returned.
func (l *Log) Scan(ctx context.Context, from uint64, fn func(index uint64, data []byte) error) error {
	end := l.Size()
	for i := from; i < end; i++ {
		data, err := l.Entry(ctx, i)
		if err != nil {
			return err
		}
		if err := fn(i, data); err != nil {
			return err
		}
	}
	return nil
}

// EntriesForSubject returns, oldest first, up to limit entries whose
// Subjects include hash (see SubjectHash), starting at the first such entry with
// index >= from. next is the from to pass for the following page, or 0 when
// there are no more.
func (l *Log) EntriesForSubject(ctx context.Context, hash string, limit int, from uint64) (records []Record, next uint64, err error) {
	if limit <= 0 {
		return nil, 0, fmt.Errorf("audit: limit %d must be positive", limit)
	}
	hash = strings.ToLower(hash)
	l.mu.RLock()
	all := l.subjects[hash]
	start := sort.Search(len(all), func(i int) bool { return all[i] >= from })
	end := min(start+limit, len(all))
	idx := append([]uint64(nil), all[start:end]...)
	if end < len(all) {
		next = all[end]
	}
	l.mu.RUnlock()
	for _, i := range idx {
		data, err := l.Entry(ctx, i)
		if err != nil {
			return nil, 0, err
		}
		e, err := Decode(data)
		if err != nil {
			return nil, 0, fmt.Errorf("audit: entry %d: %w", i, err)
		}
		records = append(records, Record{Index: i, Entry: e})
	}
	return records, next, nil
}
