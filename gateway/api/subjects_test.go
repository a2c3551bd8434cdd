package api

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/query"
)

// TestExchangeEntrySubjectsKept: the subject hashes of entries are
// audit.SubjectHashes of the exchange's identifiers, however often and in
// whatever order identifiers recur, with more distinct identifiers than
// the memo has slots (so they collide) and under another key.
func TestExchangeEntrySubjectsKept(t *testing.T) {
	var ids []string
	for i := range 3 * subjectSlots {
		ids = append(ids, fmt.Sprintf("91130104MA%08dX", i))
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, key := range [][]byte{auditTestSubjectKey, []byte("another subject key of 32 bytes!")} {
		rec := &Recorder{SubjectKey: key}
		for range 20000 {
			var subjects []string
			switch r.IntN(8) {
			case 0: // none
			case 1: // two
				subjects = []string{ids[r.IntN(len(ids))], ids[r.IntN(len(ids))]}
			case 2: // blank
				subjects = []string{" "}
			default: // mostly the first few, as a hot cache
				subjects = []string{ids[r.IntN(len(ids))>>r.IntN(12)]}
			}
			got := rec.ExchangeEntry(query.Exchange{Subjects: subjects}).Subjects
			if want := audit.SubjectHashes(key, subjects); !slices.Equal(got, want) {
				t.Fatalf("subjects %q: hashes %q, want %q", subjects, got, want)
			}
		}
	}
}

// TestSubjectMemoKeepsCollidingIDs: two identifiers whose hashes share a
// slot are both kept.
func TestSubjectMemoKeepsCollidingIDs(t *testing.T) {
	var m subjectMemo
	seen := map[uint64]string{}
	var first, second string
	for i := 0; first == ""; i++ {
		id := fmt.Sprintf("91130104MA%08dX", i)
		h := maphash.String(subjectSeed, id) % subjectSlots
		if other, ok := seen[h]; ok {
			first, second = other, id
		}
		seen[h] = id
	}
	m.hashes(auditTestSubjectKey, []string{first})
	m.hashes(auditTestSubjectKey, []string{second})
	h := maphash.String(subjectSeed, first) % subjectSlots
	kept := map[string]bool{}
	for _, s := range []uint64{h, h ^ 1} {
		if k := m.slots[s].Load(); k != nil {
			kept[k.id] = true
		}
	}
	if !kept[first] || !kept[second] {
		t.Fatalf("kept %v, want both %s and %s", kept, first, second)
	}
}
