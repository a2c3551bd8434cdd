package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// On-disk format.
//
// A log directory holds segment files named by the index of their first
// entry, in 20 decimal digits with the suffix ".seg", and a file
// "checkpoints".
//
// A segment starts with a 16-byte header: the magic "TBAUDIT1" and the
// index of its first entry (uint64, big-endian). Then come frames, one per
// entry:
//
//	length uint32 big-endian (1 .. MaxEntryBytes)
//	crc    uint32 big-endian, CRC-32C (Castagnoli) of data
//	data   length bytes: the canonical entry encoding (the Merkle leaf)
//
// The checkpoints file is a sequence of frames of the same form whose data
// is a signed checkpoint note, in increasing tree size.
const (
	segmentMagic    = "TBAUDIT1"
	segmentHeader   = 16
	frameHeader     = 8
	segmentSuffix   = ".seg"
	checkpointsFile = "checkpoints"
	lockFile        = "LOCK"
)

// MaxEntryBytes is the largest entry the log accepts.
const MaxEntryBytes = 1 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt reports damaged or altered log data. Errors wrapping it are
// usually a *CorruptError naming the entry.
var ErrCorrupt = errors.New("audit log corrupt")

// CorruptError locates a damaged frame: the segment file, the index of the
// entry whose frame is damaged, and its byte offset in the file.
type CorruptError struct {
	// Segment is the file name of the segment (or checkpoints file).
	Segment string
	// Index is the entry index (for the checkpoints file, the checkpoint's
	// position in the file).
	Index uint64
	// Offset is the byte offset of the frame in the file.
	Offset int64
	// Reason says what is wrong.
	Reason string
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("audit log corrupt: entry %d in %s at offset %d: %s", e.Index, e.Segment, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// putFrameHeader fills in the header of frame, whose entry follows the
// first frameHeader bytes.
func putFrameHeader(frame []byte) {
	data := frame[frameHeader:]
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(data)))
	binary.BigEndian.PutUint32(frame[4:8], crc32.Checksum(data, crcTable))
}

// appendFrame appends the frame of data to dst.
func appendFrame(dst, data []byte) []byte {
	start := len(dst)
	dst = append(append(dst, make([]byte, frameHeader)...), data...)
	putFrameHeader(dst[start:])
	return dst
}

// frameError says why the frame at the start of b is not valid, and
// whether it is merely incomplete (b ends inside it, as a torn write
// leaves it). It returns "" for a valid frame.
func frameError(b []byte) (reason string, short bool) {
	if len(b) < frameHeader {
		return fmt.Sprintf("incomplete frame header (%d bytes)", len(b)), true
	}
	n := binary.BigEndian.Uint32(b[0:4])
	if n == 0 || n > MaxEntryBytes {
		return fmt.Sprintf("frame length %d out of range", n), false
	}
	if uint64(len(b)-frameHeader) < uint64(n) {
		return fmt.Sprintf("incomplete frame: length %d, %d bytes left", n, len(b)-frameHeader), true
	}
	if crc32.Checksum(b[frameHeader:frameHeader+int(n)], crcTable) != binary.BigEndian.Uint32(b[4:8]) {
		return "checksum mismatch", false
	}
	return "", false
}

// segmentName returns the file name of the segment starting at first.
func segmentName(first uint64) string {
	return fmt.Sprintf("%020d%s", first, segmentSuffix)
}

func segmentHeaderBytes(first uint64) []byte {
	b := make([]byte, segmentHeader)
	copy(b, segmentMagic)
	binary.BigEndian.PutUint64(b[8:], first)
	return b
}

// listSegments returns the first indices of the segments in dir, sorted.
func listSegments(dir string) ([]uint64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing audit segments in %s: %w", dir, err)
	}
	var firsts []uint64
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		base := strings.TrimSuffix(name, segmentSuffix)
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != 20 {
			return nil, fmt.Errorf("unexpected segment file name %s in %s", name, dir)
		}
		firsts = append(firsts, first)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	return firsts, nil
}

// scanResult is what scanSegment found.
type scanResult struct {
	count   uint64        // valid entries
	end     int64         // offset just after the last valid frame
	corrupt *CorruptError // first invalid frame, or nil
	short   bool          // the invalid frame is incomplete at end of file
	// torn says the invalid frame is the last thing in the file (it is
	// incomplete, only zeros follow, or it ends exactly at the end of the
	// file), as a crash while appending leaves it. Damage followed by more
	// data is not a torn tail: the entries after it were acknowledged.
	torn bool
}

// scanSegment reads the segment starting at first and calls fn for each
// valid frame in order, stopping at the first invalid one. A bad header is
// returned as an error.
func scanSegment(dir string, first uint64, fn func(index uint64, off int64, data []byte) error) (scanResult, error) {
	name := segmentName(first)
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return scanResult{}, fmt.Errorf("reading audit segment %s: %w", name, err)
	}
	if len(b) < segmentHeader || !bytes.Equal(b[:8], []byte(segmentMagic)) {
		return scanResult{}, &CorruptError{Segment: name, Index: first, Offset: 0, Reason: "bad segment header"}
	}
	if got := binary.BigEndian.Uint64(b[8:16]); got != first {
		return scanResult{}, &CorruptError{Segment: name, Index: first, Offset: 0, Reason: fmt.Sprintf("header names first entry %d", got)}
	}
	off := int64(segmentHeader)
	var r scanResult
	for int(off) < len(b) {
		idx := first + r.count
		if reason, short := frameError(b[off:]); reason != "" {
			r.corrupt = &CorruptError{Segment: name, Index: idx, Offset: off, Reason: reason}
			r.short = short
			r.torn = tornAt(b[off:], short)
			break
		}
		n := int64(binary.BigEndian.Uint32(b[off : off+4]))
		if fn != nil {
			if err := fn(idx, off, b[off+frameHeader:off+frameHeader+n]); err != nil {
				return r, err
			}
		}
		off += frameHeader + n
		r.count++
	}
	r.end = off
	return r, nil
}

// readFrames reads a file of frames (the checkpoints file). It returns the
// frames' data, the end of the last valid frame and the first invalid
// frame, if any. torn says whether the invalid frame is the last thing in
// the file (it reaches the end of the file, or only zeros follow), as a
// crash while appending leaves it.
func readFrames(path string) (frames [][]byte, end int64, corrupt *CorruptError, torn bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, false, nil
	}
	if err != nil {
		return nil, 0, nil, false, fmt.Errorf("reading %s: %w", path, err)
	}
	var off int64
	for int(off) < len(b) {
		if reason, short := frameError(b[off:]); reason != "" {
			torn = tornAt(b[off:], short)
			return frames, off, &CorruptError{Segment: filepath.Base(path), Index: uint64(len(frames)), Offset: off, Reason: reason}, torn, nil
		}
		n := int64(binary.BigEndian.Uint32(b[off : off+4]))
		frames = append(frames, b[off+frameHeader:off+frameHeader+n])
		off += frameHeader + n
	}
	return frames, off, nil, false, nil
}

// tornAt says whether the invalid frame at the start of rest (the file from
// that frame to its end) is a torn tail: incomplete, followed only by
// zeros, or a whole frame that ends exactly at the end of the file.
func tornAt(rest []byte, short bool) bool {
	if short || allZero(rest) {
		return true
	}
	n := uint64(binary.BigEndian.Uint32(rest[0:4]))
	return frameHeader+n == uint64(len(rest))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
