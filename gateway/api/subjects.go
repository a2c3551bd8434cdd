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
// a two-way set-associative table of atomic pointers (an identifier has
// two neighbouring slots, as query's kept renderings do), so recorders
// never wait for each other and a collision costs one hash. The
// identifiers it holds are those of records the node has just served,
// which the cache holds too.
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
	h := maphash.String(subjectSeed, id) % subjectSlots
	a, b := &m.slots[h], &m.slots[h^1]
	for _, s := range [2]*atomic.Pointer[subjectHash]{a, b} {
		if kept := s.Load(); kept != nil && kept.id == id {
			return []string{kept.hash}
		}
	}
	hs := audit.SubjectHashes(key, ids)
	kept := &subjectHash{id: id, hash: hs[0]}
	if cur := a.Load(); cur == nil || cur.id == id {
		a.Store(kept)
	} else {
		b.Store(kept)
	}
	return hs
}
