package api

import (
	"hash/maphash"
	"strings"
	"sync/atomic"

	"github.com/tongban/tongban/gateway/audit"
)

// subjectSlots is the number of identifiers a subjectMemo keeps.
const subjectSlots = 1024

// subjectMemo keeps the hashes of recently recorded subject identifiers.
// Cached records are asked for again and again, and the keyed hash of a
// record's subject costs more than the rest of its entry's encoding. It is
// a direct-mapped table of atomic pointers, so recorders never wait for
// each other; a collision costs one hash. The identifiers it holds are
// those of records the node has just served, which the cache holds too.
type subjectMemo struct {
	slots [subjectSlots]atomic.Pointer[subjectHash]
}

type subjectHash struct{ id, hash string }

var subjectSeed = maphash.MakeSeed()

// hashes returns audit.SubjectHashes(key, ids). The memo serves one key:
// its Recorder's.
func (m *subjectMemo) hashes(key []byte, ids []string) []string {
	if len(ids) != 1 || strings.TrimSpace(ids[0]) == "" {
		return audit.SubjectHashes(key, ids)
	}
	id := ids[0]
	slot := &m.slots[maphash.String(subjectSeed, id)%subjectSlots]
	if h := slot.Load(); h != nil && h.id == id {
		return []string{h.hash}
	}
	hs := audit.SubjectHashes(key, ids)
	slot.Store(&subjectHash{id: id, hash: hs[0]})
	return hs
}
