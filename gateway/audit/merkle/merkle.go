// Package merkle implements the Merkle tree hashing of RFC 6962 and RFC 9162
// (section 2.1) with SHA-256: leaf and node hashes, tree heads of any prefix
// of a log, inclusion and consistency proofs, and their verification.
//
// Hashes are fixed-size [Size]byte values. A Tree keeps every leaf hash in
// memory (32 bytes per entry) plus the hashes of complete subtrees of 16 or
// more leaves (about 4 bytes per entry), so that appends cost O(1) amortised
// and tree heads and proofs for any tree size cost O(log n) hash operations.
package merkle

import (
	"crypto/sha256"
	"errors"
	"math/bits"
)

// Size is the length of a hash in bytes.
const Size = sha256.Size

// Hash is a SHA-256 Merkle tree hash.
type Hash = [Size]byte

const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// EmptyRoot is the root hash of the empty tree, SHA-256 of the empty string.
var EmptyRoot = Hash(sha256.Sum256(nil))

// HashLeaf returns the RFC 6962 leaf hash SHA-256(0x00 || data).
func HashLeaf(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// HashChildren returns the RFC 6962 interior node hash
// SHA-256(0x01 || left || right).
func HashChildren(left, right Hash) Hash {
	var buf [1 + 2*Size]byte
	buf[0] = nodePrefix
	copy(buf[1:], left[:])
	copy(buf[1+Size:], right[:])
	return sha256.Sum256(buf[:])
}

// ErrIndex reports a leaf index or tree size outside the tree.
var ErrIndex = errors.New("index out of range")

// ErrProof reports a proof that does not verify.
var ErrProof = errors.New("proof does not verify")

// largestPowerOfTwoBelow returns the largest power of two strictly smaller
// than n, for n > 1 (the split point k of RFC 9162 section 2.1.1).
func largestPowerOfTwoBelow(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}
