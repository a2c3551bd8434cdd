package merkle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	tdproof "github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

type hexHash Hash

func (h *hexHash) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil || len(v) != Size {
		return fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], v)
	return nil
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vectors struct {
	Leaves     []hexBytes `json:"leaves"`
	EmptyRoot  hexHash    `json:"empty_root"`
	LeafHashes []hexHash  `json:"leaf_hashes"`
	Roots      []hexHash  `json:"roots"`
	Inclusion  []struct {
		Index uint64    `json:"index"`
		Size  uint64    `json:"size"`
		Proof []hexHash `json:"proof"`
	} `json:"inclusion"`
	Consistency []struct {
		From  uint64    `json:"from"`
		To    uint64    `json:"to"`
		Proof []hexHash `json:"proof"`
	} `json:"consistency"`
}

func hashes(in []hexHash) []Hash {
	out := make([]Hash, len(in))
	for i := range in {
		out[i] = Hash(in[i])
	}
	return out
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/rfc9162_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Leaves) != 8 || len(v.Roots) != 8 || len(v.Inclusion) == 0 || len(v.Consistency) == 0 {
		t.Fatalf("incomplete vectors: %d leaves, %d roots", len(v.Leaves), len(v.Roots))
	}
	return v
}

func TestRFC9162Vectors(t *testing.T) {
	v := loadVectors(t)
	if EmptyRoot != Hash(v.EmptyRoot) {
		t.Errorf("empty root %x, want %x", EmptyRoot, v.EmptyRoot)
	}
	var tr Tree
	if tr.Root() != EmptyRoot {
		t.Errorf("empty tree root %x", tr.Root())
	}
	for i, leaf := range v.Leaves {
		idx, h := tr.AppendData(leaf)
		if idx != uint64(i) {
			t.Fatalf("index %d, want %d", idx, i)
		}
		if h != Hash(v.LeafHashes[i]) {
			t.Errorf("leaf %d hash %x, want %x", i, h, v.LeafHashes[i])
		}
		if got := tr.Root(); got != Hash(v.Roots[i]) {
			t.Errorf("root of size %d = %x, want %x", i+1, got, v.Roots[i])
		}
	}
	for size := uint64(1); size <= 8; size++ {
		got, err := tr.RootAt(size)
		if err != nil || got != Hash(v.Roots[size-1]) {
			t.Errorf("RootAt(%d) = %x, %v; want %x", size, got, err, v.Roots[size-1])
		}
	}
	for _, c := range v.Inclusion {
		t.Run(fmt.Sprintf("inclusion/%d-%d", c.Index, c.Size), func(t *testing.T) {
			want := hashes(c.Proof)
			got, err := tr.InclusionProof(c.Index, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("proof %x, want %x", got, want)
			}
			leaf := Hash(v.LeafHashes[c.Index])
			if err := VerifyInclusion(c.Index, c.Size, leaf, want, Hash(v.Roots[c.Size-1])); err != nil {
				t.Errorf("vector does not verify: %v", err)
			}
		})
	}
	for _, c := range v.Consistency {
		t.Run(fmt.Sprintf("consistency/%d-%d", c.From, c.To), func(t *testing.T) {
			want := hashes(c.Proof)
			got, err := tr.ConsistencyProof(c.From, c.To)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("proof %x, want %x", got, want)
			}
			if err := VerifyConsistency(c.From, c.To, want, Hash(v.Roots[c.From-1]), Hash(v.Roots[c.To-1])); err != nil {
				t.Errorf("vector does not verify: %v", err)
			}
		})
	}
}

func leafData(i int) []byte { return []byte(fmt.Sprintf("entry-%d", i)) }

func toBytes(p []Hash) [][]byte { return HashesToBytes(p) }

// TestCrossCheck compares roots and proofs with the independent
// implementation in github.com/transparency-dev/merkle for every index and
// pair of sizes of small trees and random ones of larger trees.
func TestCrossCheck(t *testing.T) {
	const n = 300
	th := rfc6962.DefaultHasher
	ref := testonly.New(th)
	var tr Tree
	for i := range n {
		ref.AppendData(leafData(i))
		tr.AppendData(leafData(i))
	}
	check := func(size uint64) {
		root, err := tr.RootAt(size)
		if err != nil {
			t.Fatalf("RootAt(%d): %v", size, err)
		}
		if want := ref.HashAt(size); string(root[:]) != string(want) {
			t.Fatalf("root of size %d = %x, want %x", size, root, want)
		}
	}
	for size := uint64(0); size <= n; size++ {
		check(size)
	}
	inclusion := func(index, size uint64) {
		got, err := tr.InclusionProof(index, size)
		if err != nil {
			t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
		}
		want, err := ref.InclusionProof(index, size)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%x", toBytes(got)) != fmt.Sprintf("%x", want) {
			t.Fatalf("inclusion(%d, %d) = %x, want %x", index, size, toBytes(got), want)
		}
		root, _ := tr.RootAt(size)
		leaf, _ := tr.LeafHash(index)
		if err := tdproof.VerifyInclusion(th, index, size, leaf[:], toBytes(got), root[:]); err != nil {
			t.Fatalf("library rejects our inclusion(%d, %d): %v", index, size, err)
		}
		wantH, _ := HashesFromBytes(want)
		if err := VerifyInclusion(index, size, leaf, wantH, root); err != nil {
			t.Fatalf("we reject the library's inclusion(%d, %d): %v", index, size, err)
		}
	}
	consistency := func(from, to uint64) {
		got, err := tr.ConsistencyProof(from, to)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d): %v", from, to, err)
		}
		want, err := ref.ConsistencyProof(from, to)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprintf("%x", toBytes(got)) != fmt.Sprintf("%x", want) {
			t.Fatalf("consistency(%d, %d) = %x, want %x", from, to, toBytes(got), want)
		}
		r1, _ := tr.RootAt(from)
		r2, _ := tr.RootAt(to)
		if err := tdproof.VerifyConsistency(th, from, to, toBytes(got), r1[:], r2[:]); err != nil {
			t.Fatalf("library rejects our consistency(%d, %d): %v", from, to, err)
		}
		wantH, _ := HashesFromBytes(want)
		if err := VerifyConsistency(from, to, wantH, r1, r2); err != nil {
			t.Fatalf("we reject the library's consistency(%d, %d): %v", from, to, err)
		}
	}
	for size := uint64(1); size <= 70; size++ {
		for index := range size {
			inclusion(index, size)
		}
		for from := uint64(0); from <= size; from++ {
			consistency(from, size)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		size := 1 + rng.Uint64N(n)
		inclusion(rng.Uint64N(size), size)
		consistency(rng.Uint64N(size+1), size)
	}
}

func TestProofsRejected(t *testing.T) {
	var tr Tree
	for i := range 37 {
		tr.AppendData(leafData(i))
	}
	root, _ := tr.RootAt(37)
	root20, _ := tr.RootAt(20)
	leaf, _ := tr.LeafHash(11)
	incl, _ := tr.InclusionProof(11, 37)
	cons, _ := tr.ConsistencyProof(20, 37)
	if err := VerifyInclusion(11, 37, leaf, incl, root); err != nil {
		t.Fatalf("good inclusion proof rejected: %v", err)
	}
	if err := VerifyConsistency(20, 37, cons, root20, root); err != nil {
		t.Fatalf("good consistency proof rejected: %v", err)
	}
	flip := func(p []Hash, i int) []Hash {
		q := append([]Hash(nil), p...)
		q[i][0] ^= 1
		return q
	}
	otherLeaf := HashLeaf([]byte("forged"))
	inclusionCases := []struct {
		name        string
		index, size uint64
		leaf        Hash
		proof       []Hash
		root        Hash
	}{
		{"flipped node", 11, 37, leaf, flip(incl, 1), root},
		{"other leaf", 11, 37, otherLeaf, incl, root},
		{"wrong index", 10, 37, leaf, incl, root},
		{"wrong size", 11, 16, leaf, incl, root},
		{"short proof", 11, 37, leaf, incl[:len(incl)-1], root},
		{"long proof", 11, 37, leaf, append(append([]Hash(nil), incl...), root), root},
		{"index beyond size", 37, 37, leaf, incl, root},
		{"wrong root", 11, 37, leaf, incl, root20},
	}
	for _, c := range inclusionCases {
		t.Run("inclusion/"+c.name, func(t *testing.T) {
			err := VerifyInclusion(c.index, c.size, c.leaf, c.proof, c.root)
			if !errors.Is(err, ErrProof) && !errors.Is(err, ErrIndex) {
				t.Errorf("got %v, want a proof error", err)
			}
		})
	}
	consistencyCases := []struct {
		name         string
		from, to     uint64
		proof        []Hash
		root1, root2 Hash
	}{
		{"flipped node", 20, 37, flip(cons, 0), root20, root},
		{"swapped roots", 20, 37, cons, root, root20},
		{"wrong from", 21, 37, cons, root20, root},
		{"empty proof", 20, 37, nil, root20, root},
		{"from beyond to", 38, 37, cons, root20, root},
		{"equal sizes different roots", 37, 37, nil, root20, root},
		{"equal sizes with proof", 37, 37, cons, root, root},
		{"empty tree bad root", 0, 37, nil, root, root},
	}
	for _, c := range consistencyCases {
		t.Run("consistency/"+c.name, func(t *testing.T) {
			err := VerifyConsistency(c.from, c.to, c.proof, c.root1, c.root2)
			if !errors.Is(err, ErrProof) && !errors.Is(err, ErrIndex) {
				t.Errorf("got %v, want a proof error", err)
			}
		})
	}
	if _, err := tr.InclusionProof(37, 37); !errors.Is(err, ErrIndex) {
		t.Errorf("inclusion beyond size: %v", err)
	}
	if _, err := tr.ConsistencyProof(3, 38); !errors.Is(err, ErrIndex) {
		t.Errorf("consistency beyond size: %v", err)
	}
	if _, err := tr.RootAt(38); !errors.Is(err, ErrIndex) {
		t.Errorf("root beyond size: %v", err)
	}
	if _, err := HashesFromBytes([][]byte{make([]byte, 31)}); !errors.Is(err, ErrProof) {
		t.Errorf("short node accepted: %v", err)
	}
}

func TestHashPrefixes(t *testing.T) {
	data := []byte("abc")
	if got, want := HashLeaf(data), sha256.Sum256(append([]byte{0}, data...)); got != want {
		t.Errorf("leaf hash %x, want %x", got, want)
	}
	a, b := HashLeaf([]byte("a")), HashLeaf([]byte("b"))
	want := sha256.Sum256(append(append([]byte{1}, a[:]...), b[:]...))
	if got := HashChildren(a, b); got != want {
		t.Errorf("node hash %x, want %x", got, want)
	}
}

// TestLargeTree checks a tree that spans several storage chunks and cached
// levels against the library's reference tree at scattered sizes.
func TestLargeTree(t *testing.T) {
	if testing.Short() {
		t.Skip("large tree")
	}
	const n = 1<<chunkBits + 1234
	ref := testonly.New(rfc6962.DefaultHasher)
	var tr Tree
	for i := range n {
		ref.AppendData(leafData(i))
		tr.AppendData(leafData(i))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		size := 1 + rng.Uint64N(n)
		root, _ := tr.RootAt(size)
		if want := ref.HashAt(size); string(root[:]) != string(want) {
			t.Fatalf("root of size %d differs", size)
		}
		index := rng.Uint64N(size)
		got, _ := tr.InclusionProof(index, size)
		want, _ := ref.InclusionProof(index, size)
		if fmt.Sprintf("%x", toBytes(got)) != fmt.Sprintf("%x", want) {
			t.Fatalf("inclusion(%d, %d) differs", index, size)
		}
		from := rng.Uint64N(size + 1)
		gotC, _ := tr.ConsistencyProof(from, size)
		wantC, _ := ref.ConsistencyProof(from, size)
		if fmt.Sprintf("%x", toBytes(gotC)) != fmt.Sprintf("%x", wantC) {
			t.Fatalf("consistency(%d, %d) differs", from, size)
		}
	}
	if tr.Root() != Hash(ref.Hash()) {
		t.Fatal("final root differs")
	}
}

func BenchmarkAppend(b *testing.B) {
	var tr Tree
	h := HashLeaf([]byte("x"))
	for b.Loop() {
		tr.AppendLeafHash(h)
	}
}

func BenchmarkInclusionProof(b *testing.B) {
	var tr Tree
	for i := range 1 << 20 {
		tr.AppendLeafHash(HashLeaf(leafData(i)))
	}
	i := uint64(0)
	for b.Loop() {
		if _, err := tr.InclusionProof(i%(1<<20), 1<<20-7); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
