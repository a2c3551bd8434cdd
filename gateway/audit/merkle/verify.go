package merkle

import (
	"fmt"
)

// RootFromInclusionProof returns the root hash implied by an inclusion proof
// of the leaf with hash leaf at index in a tree of size, following RFC 9162
// section 2.1.3.2.
func RootFromInclusionProof(index, size uint64, leaf Hash, proof []Hash) (Hash, error) {
	if index >= size {
		return Hash{}, fmt.Errorf("leaf %d not in tree of size %d: %w", index, size, ErrIndex)
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return Hash{}, fmt.Errorf("inclusion proof of leaf %d in size %d has too many nodes: %w", index, size, ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = HashChildren(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = HashChildren(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return Hash{}, fmt.Errorf("inclusion proof of leaf %d in size %d has too few nodes: %w", index, size, ErrProof)
	}
	return r, nil
}

// VerifyInclusion checks that proof shows the leaf with hash leaf at index
// in the tree of size whose root hash is root.
func VerifyInclusion(index, size uint64, leaf Hash, proof []Hash, root Hash) error {
	got, err := RootFromInclusionProof(index, size, leaf, proof)
	if err != nil {
		return err
	}
	if got != root {
		return fmt.Errorf("inclusion proof of leaf %d in size %d: computed root %x, want %x: %w", index, size, got, root, ErrProof)
	}
	return nil
}

// VerifyConsistency checks that proof shows the tree of size2 with root2
// extends the tree of size1 with root1, following RFC 9162 section 2.1.4.2.
// Equal sizes need an empty proof and equal roots; size1 0 needs an empty
// proof.
func VerifyConsistency(size1, size2 uint64, proof []Hash, root1, root2 Hash) error {
	switch {
	case size1 > size2:
		return fmt.Errorf("consistency from size %d to smaller size %d: %w", size1, size2, ErrIndex)
	case size1 == size2:
		if len(proof) != 0 {
			return fmt.Errorf("consistency between equal sizes %d needs an empty proof: %w", size1, ErrProof)
		}
		if root1 != root2 {
			return fmt.Errorf("trees of equal size %d have different roots %x and %x: %w", size1, root1, root2, ErrProof)
		}
		return nil
	case size1 == 0:
		if len(proof) != 0 {
			return fmt.Errorf("consistency from the empty tree needs an empty proof: %w", ErrProof)
		}
		if root1 != EmptyRoot {
			return fmt.Errorf("tree of size 0 has root %x, want the empty root: %w", root1, ErrProof)
		}
		return nil
	case len(proof) == 0:
		return fmt.Errorf("consistency from size %d to %d: empty proof: %w", size1, size2, ErrProof)
	}
	path := proof
	if size1&(size1-1) == 0 {
		path = append([]Hash{root1}, proof...)
	}
	fn, sn := size1-1, size2-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return fmt.Errorf("consistency proof from %d to %d has too many nodes: %w", size1, size2, ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			fr = HashChildren(c, fr)
			sr = HashChildren(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = HashChildren(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("consistency proof from %d to %d has too few nodes: %w", size1, size2, ErrProof)
	}
	if fr != root1 {
		return fmt.Errorf("consistency proof from %d to %d: computed old root %x, want %x: %w", size1, size2, fr, root1, ErrProof)
	}
	if sr != root2 {
		return fmt.Errorf("consistency proof from %d to %d: computed new root %x, want %x: %w", size1, size2, sr, root2, ErrProof)
	}
	return nil
}

// HashesFromBytes converts a proof given as byte slices (as in the API and
// in JSON) into hashes, checking every element has the right length.
func HashesFromBytes(in [][]byte) ([]Hash, error) {
	out := make([]Hash, len(in))
	for i, b := range in {
		if len(b) != Size {
			return nil, fmt.Errorf("proof node %d has %d bytes, want %d: %w", i, len(b), Size, ErrProof)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// HashesToBytes converts hashes into byte slices.
func HashesToBytes(in []Hash) [][]byte {
	out := make([][]byte, len(in))
	for i := range in {
		out[i] = append([]byte(nil), in[i][:]...)
	}
	return out
}
