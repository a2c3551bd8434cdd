package api

import (
	"fmt"
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
