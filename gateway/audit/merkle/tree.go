package merkle

import (
	"fmt"
	"math/bits"
)

// cacheFrom is the lowest subtree level whose hashes a Tree stores. Subtrees
// below it (at most 2^cacheFrom-1 leaves) are rehashed from the leaves when
// needed, which costs at most 2^cacheFrom-1 hash operations.
const cacheFrom = 4

// chunkBits sets the size of the chunks hash lists are stored in, so that a
// growing tree never copies its whole leaf list.
const chunkBits = 16

// hashList is an append-only list of hashes stored in fixed-size chunks.
type hashList struct {
	chunks [][]Hash
	n      uint64
}

func (l *hashList) append(h Hash) {
	c := l.n >> chunkBits
	if c == uint64(len(l.chunks)) {
		l.chunks = append(l.chunks, make([]Hash, 0, 1<<chunkBits))
	}
	l.chunks[c] = append(l.chunks[c], h)
	l.n++
}

func (l *hashList) get(i uint64) Hash {
	return l.chunks[i>>chunkBits][i&(1<<chunkBits-1)]
}

// Tree is an in-memory RFC 6962 Merkle tree over an append-only list of
// leaves. It is not safe for concurrent use; callers serialise access.
type Tree struct {
	leaves hashList
	// levels[k] holds the hashes of the complete subtrees at level
	// k+cacheFrom, left to right.
	levels []hashList
	// stack is the compact range of the whole tree: the roots of the
	// complete subtrees along its right edge, largest first.
	stack []stackNode
}

type stackNode struct {
	level uint
	hash  Hash
}

// Size returns the number of leaves in the tree.
func (t *Tree) Size() uint64 { return t.leaves.n }

// AppendLeafHash appends a leaf whose hash is already known and returns its
// index.
func (t *Tree) AppendLeafHash(h Hash) uint64 {
	idx := t.leaves.n
	t.leaves.append(h)
	t.stack = append(t.stack, stackNode{0, h})
	for len(t.stack) >= 2 {
		r := t.stack[len(t.stack)-1]
		l := t.stack[len(t.stack)-2]
		if l.level != r.level {
			break
		}
		n := stackNode{l.level + 1, HashChildren(l.hash, r.hash)}
		t.stack = t.stack[:len(t.stack)-2]
		t.stack = append(t.stack, n)
		if n.level >= cacheFrom {
			k := int(n.level - cacheFrom)
			for len(t.levels) <= k {
				t.levels = append(t.levels, hashList{})
			}
			t.levels[k].append(n.hash)
		}
	}
	return idx
}

// AppendData appends a leaf with the given data and returns its index and
// leaf hash.
func (t *Tree) AppendData(data []byte) (uint64, Hash) {
	h := HashLeaf(data)
	return t.AppendLeafHash(h), h
}

// LeafHash returns the hash of leaf i.
func (t *Tree) LeafHash(i uint64) (Hash, error) {
	if i >= t.leaves.n {
		return Hash{}, fmt.Errorf("leaf %d of tree size %d: %w", i, t.leaves.n, ErrIndex)
	}
	return t.leaves.get(i), nil
}

// Root returns the root hash of the whole tree.
func (t *Tree) Root() Hash {
	if len(t.stack) == 0 {
		return EmptyRoot
	}
	h := t.stack[len(t.stack)-1].hash
	for i := len(t.stack) - 2; i >= 0; i-- {
		h = HashChildren(t.stack[i].hash, h)
	}
	return h
}

// RootAt returns the root hash of the tree formed by the first size leaves.
func (t *Tree) RootAt(size uint64) (Hash, error) {
	if size > t.leaves.n {
		return Hash{}, fmt.Errorf("root of size %d in tree of size %d: %w", size, t.leaves.n, ErrIndex)
	}
	if size == 0 {
		return EmptyRoot, nil
	}
	if size == t.leaves.n {
		return t.Root(), nil
	}
	return t.rangeHash(0, size), nil
}

// node returns the hash of the complete subtree at level whose leftmost
// leaf is index<<level. The subtree must lie within the tree.
func (t *Tree) node(level uint, index uint64) Hash {
	switch {
	case level == 0:
		return t.leaves.get(index)
	case level >= cacheFrom:
		return t.levels[level-cacheFrom].get(index)
	default:
		return HashChildren(t.node(level-1, 2*index), t.node(level-1, 2*index+1))
	}
}

// rangeHash returns MTH(D[lo:hi]) as defined in RFC 9162 section 2.1.1,
// for 0 <= lo < hi <= Size().
func (t *Tree) rangeHash(lo, hi uint64) Hash {
	n := hi - lo
	if n&(n-1) == 0 { // a power of two
		level := uint(bits.Len64(n) - 1)
		if lo&(n-1) == 0 {
			return t.node(level, lo>>level)
		}
	}
	if n == 1 {
		return t.leaves.get(lo)
	}
	k := largestPowerOfTwoBelow(n)
	return HashChildren(t.rangeHash(lo, lo+k), t.rangeHash(lo+k, hi))
}

// InclusionProof returns the audit path PATH(index, D[0:size]) of RFC 9162
// section 2.1.3.1, ordered from the leaf upwards.
func (t *Tree) InclusionProof(index, size uint64) ([]Hash, error) {
	if size > t.leaves.n || index >= size {
		return nil, fmt.Errorf("inclusion proof of leaf %d in tree size %d (log size %d): %w", index, size, t.leaves.n, ErrIndex)
	}
	var proof []Hash
	t.path(&proof, index, 0, size)
	return proof, nil
}

// path appends PATH(m, D[lo:hi]) where m is relative to lo.
func (t *Tree) path(out *[]Hash, m, lo, hi uint64) {
	n := hi - lo
	if n <= 1 {
		return
	}
	k := largestPowerOfTwoBelow(n)
	if m < k {
		t.path(out, m, lo, lo+k)
		*out = append(*out, t.rangeHash(lo+k, hi))
	} else {
		t.path(out, m-k, lo+k, hi)
		*out = append(*out, t.rangeHash(lo, lo+k))
	}
}

// ConsistencyProof returns PROOF(from, D[0:to]) of RFC 9162 section
// 2.1.4.1: the proof that the tree of size to extends the tree of size from.
// The proof is empty when from is 0 or equals to.
func (t *Tree) ConsistencyProof(from, to uint64) ([]Hash, error) {
	if to > t.leaves.n || from > to {
		return nil, fmt.Errorf("consistency proof from size %d to %d (log size %d): %w", from, to, t.leaves.n, ErrIndex)
	}
	var proof []Hash
	if from == 0 || from == to {
		return proof, nil
	}
	t.subproof(&proof, from, 0, to, true)
	return proof, nil
}

// subproof appends SUBPROOF(m, D[lo:hi], b) where m is relative to lo.
func (t *Tree) subproof(out *[]Hash, m, lo, hi uint64, b bool) {
	n := hi - lo
	if m == n {
		if !b {
			*out = append(*out, t.rangeHash(lo, hi))
		}
		return
	}
	k := largestPowerOfTwoBelow(n)
	if m <= k {
		t.subproof(out, m, lo, lo+k, b)
		*out = append(*out, t.rangeHash(lo+k, hi))
	} else {
		t.subproof(out, m-k, lo+k, hi, false)
		*out = append(*out, t.rangeHash(lo, lo+k))
	}
}
