package audit

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/tongban/tongban/gateway/audit/merkle"
)

// Report summarises an offline verification of a log directory.
type Report struct {
	// Segments is the number of segment files read.
	Segments int
	// Entries is the number of intact entries.
	Entries uint64
	// Root is the root hash of all intact entries.
	Root merkle.Hash
	// Checkpoints is the number of checkpoints verified.
	Checkpoints int
	// Latest is the last verified checkpoint (zero if there is none).
	Latest Checkpoint
	// Unsigned is the number of entries after the latest checkpoint, which
	// no signature covers yet.
	Unsigned uint64
	// TornTail describes damage at the end of the last segment after the
	// latest checkpoint: what a crash while writing leaves, and what Open
	// truncates. It is nil when the log ends cleanly.
	TornTail *CorruptError
	// TornCheckpoint describes an incomplete last record of the checkpoints
	// file, or is nil.
	TornCheckpoint *CorruptError
}

// VerifyDir verifies a log directory offline with only the log's verifier
// key: it reads every segment, checks framing, checksums and entry
// encodings, recomputes the Merkle tree, verifies every stored checkpoint's
// signature and that its root matches the recomputed tree at its size, and
// checks consistency between consecutive checkpoints. It never writes to
// dir. The first problem is returned as an error; a damaged entry is a
// *CorruptError naming its index.
func VerifyDir(dir, verifierKey string) (Report, error) {
	var rep Report
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return rep, fmt.Errorf("audit verify: verifier key: %w", err)
	}
	frames, _, corrupt, torn, err := readFrames(filepath.Join(dir, checkpointsFile))
	if err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	if corrupt != nil {
		if !torn {
			return rep, fmt.Errorf("audit verify: %w", corrupt)
		}
		rep.TornCheckpoint = corrupt
	}
	cps := make([]Checkpoint, 0, len(frames))
	for i, fr := range frames {
		cp, err := openCheckpoint(string(fr), v)
		if err != nil {
			return rep, fmt.Errorf("audit verify: checkpoint %d: %w", i, err)
		}
		if i > 0 && cp.Size < cps[i-1].Size {
			return rep, fmt.Errorf("audit verify: %w: checkpoint %d has size %d, below the previous %d", ErrCheckpoint, i, cp.Size, cps[i-1].Size)
		}
		cps = append(cps, cp)
	}
	var signed uint64
	if len(cps) > 0 {
		signed = cps[len(cps)-1].Size
	}

	if _, err := os.Stat(dir); err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	firsts, err := listSegments(dir)
	if err != nil {
		return rep, fmt.Errorf("audit verify: %w", err)
	}
	var tree merkle.Tree
	for i, first := range firsts {
		rep.Segments++
		if first != tree.Size() {
			return rep, fmt.Errorf("audit verify: %w", &CorruptError{Segment: segmentName(first), Index: tree.Size(),
				Reason: fmt.Sprintf("segment starts at entry %d, expected %d (missing or extra segment)", first, tree.Size())})
		}
		name := segmentName(first)
		r, err := scanSegment(dir, first, func(index uint64, off int64, data []byte) error {
			if _, err := Decode(data); err != nil {
				return &CorruptError{Segment: name, Index: index, Offset: off, Reason: err.Error()}
			}
			tree.AppendLeafHash(merkle.HashLeaf(data))
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("audit verify: %w", err)
		}
		if r.corrupt != nil {
			if i == len(firsts)-1 && r.corrupt.Index >= signed && r.torn {
				rep.TornTail = r.corrupt
			} else {
				return rep, fmt.Errorf("audit verify: %w", r.corrupt)
			}
		}
	}
	rep.Entries = tree.Size()
	rep.Root = tree.Root()

	for i, cp := range cps {
		if cp.Size > tree.Size() {
			return rep, fmt.Errorf("audit verify: %w: checkpoint %d signs size %d but only %d entries are intact: entries were removed", ErrCorrupt, i, cp.Size, tree.Size())
		}
		root, err := tree.RootAt(cp.Size)
		if err != nil {
			return rep, fmt.Errorf("audit verify: %w", err)
		}
		if root != cp.Root {
			var prev uint64
			if i > 0 {
				prev = cps[i-1].Size
			}
			return rep, fmt.Errorf("audit verify: %w: checkpoint %d of size %d has root %x but the entries hash to %x: an entry in [%d, %d) was altered",
				ErrCheckpoint, i, cp.Size, cp.Root, root, prev, cp.Size)
		}
		if i > 0 {
			prev := cps[i-1]
			proof, err := tree.ConsistencyProof(prev.Size, cp.Size)
			if err != nil {
				return rep, fmt.Errorf("audit verify: %w", err)
			}
			if err := merkle.VerifyConsistency(prev.Size, cp.Size, proof, prev.Root, cp.Root); err != nil {
				return rep, fmt.Errorf("audit verify: checkpoints %d and %d: %w", i-1, i, err)
			}
		}
		rep.Checkpoints++
		rep.Latest = cp
	}
	rep.Unsigned = tree.Size() - rep.Latest.Size
	return rep, nil
}

// VerifyReceipt checks that entry is the leaf at index of the tree signed by
// checkpointNote, using the inclusion proof and the verifier key alone.
func VerifyReceipt(entry []byte, index uint64, proof [][]byte, checkpointNote, verifierKey string) error {
	cp, err := OpenCheckpoint(checkpointNote, verifierKey)
	if err != nil {
		return fmt.Errorf("audit verify receipt: %w", err)
	}
	p, err := merkle.HashesFromBytes(proof)
	if err != nil {
		return fmt.Errorf("audit verify receipt: %w", err)
	}
	if err := merkle.VerifyInclusion(index, cp.Size, merkle.HashLeaf(entry), p, cp.Root); err != nil {
		return fmt.Errorf("audit verify receipt: entry %d against checkpoint of size %d: %w", index, cp.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the log signed by newNote extends the one
// signed by oldNote, using the consistency proof and the verifier key alone.
func VerifyConsistency(oldNote, newNote string, proof [][]byte, verifierKey string) error {
	oldCP, err := OpenCheckpoint(oldNote, verifierKey)
	if err != nil {
		return fmt.Errorf("audit verify consistency: old checkpoint: %w", err)
	}
	newCP, err := OpenCheckpoint(newNote, verifierKey)
	if err != nil {
		return fmt.Errorf("audit verify consistency: new checkpoint: %w", err)
	}
	if oldCP.Origin != newCP.Origin {
		return fmt.Errorf("audit verify consistency: %w: origins %q and %q differ", ErrCheckpoint, oldCP.Origin, newCP.Origin)
	}
	p, err := merkle.HashesFromBytes(proof)
	if err != nil {
		return fmt.Errorf("audit verify consistency: %w", err)
	}
	if err := merkle.VerifyConsistency(oldCP.Size, newCP.Size, p, oldCP.Root, newCP.Root); err != nil {
		return fmt.Errorf("audit verify consistency: %w", err)
	}
	return nil
}
