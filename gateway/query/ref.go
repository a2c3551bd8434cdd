package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
	"sync"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// RefPrefix starts every opaque record reference, so that a client can tell
// one from a department record id.
const RefPrefix = "ref:"

// refBytes is how much of the HMAC-SHA256 a reference keeps: 128 bits.
const refBytes = 16

// MinRecordRefKey is the shortest key NewRecordRefs accepts, in bytes.
const MinRecordRefKey = 32

// RecordRefs decides what a caller is told of a department record id (the
// id in provenance, change notices and auto-fill sources). The id is the
// value of the dataset's key field(s), so it is released only where the
// request's own decision (the one covering the fields asked for, all when
// none are named, and the fields selected by) shows every key field of
// that record unmasked; otherwise the caller gets an opaque reference:
// RefPrefix followed by the unpadded base64url of the first 16 bytes of
// HMAC-SHA256 over the dataset name and the id, keyed by a node secret. A reference is stable (the same record
// gives the same reference in every answer and change notice, so clients
// can correlate them), differs between datasets, and reveals nothing of the
// id to whoever lacks the key.
//
// A nil *RecordRefs has no key: where the id may not be released it gives
// "" (the id is omitted, never leaked). RecordRefs is safe for concurrent
// use.
type RecordRefs struct {
	macs sync.Pool // of *refMAC
}

// refMAC is an HMAC-SHA256 under the key with its buffers, reused.
type refMAC struct {
	mac hash.Hash
	in  []byte
	sum []byte
}

// NewRecordRefs returns RecordRefs keyed by key, a secret of at least
// MinRecordRefKey bytes (random, or derived from another node secret with
// HKDF under a label of its own). Nodes that serve the same consumers should
// share the key, so that a record has the same reference on every node.
func NewRecordRefs(key []byte) (*RecordRefs, error) {
	if len(key) < MinRecordRefKey {
		return nil, fmt.Errorf("record reference key: %d bytes, want at least %d", len(key), MinRecordRefKey)
	}
	k := slices.Clone(key)
	r := &RecordRefs{}
	r.macs.New = func() any {
		return &refMAC{mac: hmac.New(sha256.New, k), in: make([]byte, 0, 128), sum: make([]byte, 0, sha256.Size)}
	}
	return r, nil
}

// Ref returns the opaque reference of record id of dataset, whatever the
// caller may see: "" when id is empty or r is nil.
func (r *RecordRefs) Ref(dataset, id string) string {
	if r == nil || id == "" {
		return ""
	}
	m := r.macs.Get().(*refMAC)
	defer func() {
		if cap(m.in) <= 1<<10 { // an odd huge id does not stay pooled
			r.macs.Put(m)
		}
	}()
	m.mac.Reset()
	m.in = binary.AppendUvarint(m.in[:0], uint64(len(dataset)))
	m.in = append(m.in, dataset...)
	m.in = binary.AppendUvarint(m.in, uint64(len(id)))
	m.in = append(m.in, id...)
	m.mac.Write(m.in)
	m.sum = m.mac.Sum(m.sum[:0])
	var out [len(RefPrefix) + (refBytes*8+5)/6]byte
	copy(out[:], RefPrefix)
	base64.RawURLEncoding.Encode(out[len(RefPrefix):], m.sum[:refBytes])
	return string(out[:])
}

// Release returns what a caller whose decision on ds is dec may be told of
// the id of a record whose region field holds region: the id itself when
// IDVisible, else its opaque reference (Ref), or "" without a key. Callers
// outside the query pipeline (change notices, auto-fill) pass the decision
// of the request itself, the one its fields are shaped by: the id is shown
// only when that request asked for (or selected by) every key field of ds,
// and a request naming no fields asks for all. There is no second decision
// for the key fields alone. A nil decision treats the id as not visible.
func (r *RecordRefs) Release(dec *policy.Decision, ds *datasets.Dataset, region, id string) string {
	if id == "" {
		return ""
	}
	if IDVisible(dec, ds, region) {
		return id
	}
	return r.Ref(ds.Name, id)
}

// IDVisible reports whether dec lets a record of ds whose region field holds
// region show every key field of ds unmasked: the same per-record test
// (jurisdiction, then masks) the record's fields are shaped by. A key field
// dec was not asked for is not visible. A dataset with no key fields never
// shows its record ids.
func IDVisible(dec *policy.Decision, ds *datasets.Dataset, region string) bool {
	if dec == nil {
		return false
	}
	return idVisible(dec, ds, region, dec.FieldsFor(region))
}

// idVisible is IDVisible with dec.FieldsFor(region) already computed.
func idVisible(dec *policy.Decision, ds *datasets.Dataset, region string, fields []string) bool {
	if dec == nil || len(ds.Keys) == 0 || fields == nil {
		return false
	}
	for _, k := range ds.Keys {
		if !slices.Contains(fields, k) || dec.MaskFor(region, k) != v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return false
		}
	}
	return true
}
