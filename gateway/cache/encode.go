package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// entryVersion is the first byte of an encoded entry (inside the seal).
const entryVersion = 1

// encodeEntry serialises an entry for the shared tier. The freshness
// deadline travels inside the (sealed) value, so every node agrees when a
// copy turns stale whatever the Redis TTL.
func encodeEntry(e *entry) []byte {
	b := make([]byte, 0, 64+len(e.data))
	b = append(b, entryVersion)
	flags := byte(0)
	if e.notFound {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.fetchedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.freshTill.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(e.recordIDs)))
	for _, id := range e.recordIDs {
		b = appendBytes(b, []byte(id))
	}
	keys := make([]string, 0, len(e.keys))
	for k := range e.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, []byte(e.keys[k]))
	}
	return appendBytes(b, e.data)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBadEntry = errors.New("malformed cache entry")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errBadEntry
		return nil
	}
	out := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return out
}

func (d *decoder) count() int {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)) { // each item takes at least a byte
		d.err = errBadEntry
		return 0
	}
	d.b = d.b[k:]
	return int(n)
}

// decodeEntry parses what encodeEntry made.
func decodeEntry(dataset string, b []byte) (*entry, error) {
	if len(b) < 18 || b[0] != entryVersion {
		return nil, fmt.Errorf("%w: unknown version or too short", errBadEntry)
	}
	e := &entry{dataset: dataset, notFound: b[1]&1 != 0}
	e.fetchedAt = time.Unix(0, int64(binary.BigEndian.Uint64(b[2:10])))
	e.freshTill = time.Unix(0, int64(binary.BigEndian.Uint64(b[10:18])))
	d := &decoder{b: b[18:]}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		e.recordIDs = append(e.recordIDs, string(d.bytes()))
	}
	if n := d.count(); n > 0 {
		e.keys = make(map[string]string, n)
		for ; n > 0 && d.err == nil; n-- {
			k := string(d.bytes())
			e.keys[k] = string(d.bytes())
		}
	}
	e.data = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errBadEntry)
	}
	return e, nil
}
