package query

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/pbjson"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// A rendering is what shaping one shared source record under one decision
// shape produces, apart from the provenance of the answer it goes into:
// the projected and masked fields, the record id as released, and that
// record's share of the answer's JSON and digest. It is immutable once
// made; answers share its fields and masked list read-only.
//
// A cache hit hands the pipeline the very records it handed the previous
// hit of the same cached copy (Result.Shared), and most callers ask with
// the same grants for the same fields, so the same rendering serves them
// all until the copy is replaced or the policy changes, either of which
// changes the key.
type rendering struct {
	// The key: the source record, its dataset, and the shape (shapeSig).
	src *v1.SourceRecord
	ds  *datasets.Dataset
	sig string

	fields   *structpb.Struct
	masked   []string
	recordID string
	// fieldsJSON is fields as pbjson.AppendStruct writes it; nil when it
	// refuses (a non-finite number), and the answer's encoder falls back.
	fieldsJSON []byte
	// canon is the canonical form of the masked list and the fields, the
	// part of the record's digest input that follows its provenance.
	canon []byte
	// subject is the value of the dataset's subject field, "" if none.
	subject string
	// sole is the digest of an answer of this rendering alone, with the
	// provenance it was computed for; an answer whose provenance differs
	// (another delivery) computes its own and keeps that instead.
	sole atomic.Pointer[soleDigest]
}

// soleDigest is the digest of a one-record answer and the provenance it
// covers besides the rendering.
type soleDigest struct {
	department, dataset, recordID string
	delivery                      v1.Delivery
	value                         string
}

// soleDigest returns digest([]*v1.Record{rec}, []*rendering{r}) for a
// record rec of this rendering, computing it only when rec's provenance is
// not the one of the digest kept.
func (r *rendering) soleDigest(rec *v1.Record) (string, error) {
	p := rec.GetProvenance()
	if d := r.sole.Load(); d != nil && d.department == p.GetDepartment() && d.dataset == p.GetDataset() &&
		d.recordID == p.GetRecordId() && d.delivery == p.GetDelivery() {
		return d.value, nil
	}
	v, err := digestOf([]*v1.Record{rec}, []*rendering{r})
	if err != nil {
		return "", err
	}
	r.sole.Store(&soleDigest{department: p.GetDepartment(), dataset: p.GetDataset(), recordID: p.GetRecordId(), delivery: p.GetDelivery(), value: v})
	return v, nil
}

// renderSlots is the number of renderings a pipeline keeps: about 4 KiB
// each for a licence record, so at most ≈ 16 MiB.
const renderSlots = 4096

// renderings is a two-way set-associative table of renderings: a key has
// two slots, a pair of neighbours, and a rendering is stored in the first
// that is free or holds its key, else in the second. With one slot a key,
// a few of even a handful of hot records shared a slot and displaced each
// other on every hit. Lookups and stores are single atomic operations, so
// concurrent queries never wait for each other; a collision only costs
// the shaping the table saves.
type renderings struct {
	seed  maphash.Seed
	slots [renderSlots]atomic.Pointer[rendering]
}

func newRenderings() *renderings { return &renderings{seed: maphash.MakeSeed()} }

type renderKey struct {
	src *v1.SourceRecord
	ds  *datasets.Dataset
}

// pair returns the two slots of a key.
func (t *renderings) pair(src *v1.SourceRecord, ds *datasets.Dataset, sig []byte) (*atomic.Pointer[rendering], *atomic.Pointer[rendering]) {
	h := (maphash.Comparable(t.seed, renderKey{src, ds}) ^ maphash.Bytes(t.seed, sig)) % renderSlots
	return &t.slots[h], &t.slots[h^1]
}

func (r *rendering) is(src *v1.SourceRecord, ds *datasets.Dataset, sig []byte) bool {
	return r != nil && r.src == src && r.ds == ds && r.sig == string(sig)
}

// get returns the rendering of src in dataset ds under shape sig, if kept.
func (t *renderings) get(src *v1.SourceRecord, ds *datasets.Dataset, sig []byte) *rendering {
	a, b := t.pair(src, ds, sig)
	if r := a.Load(); r.is(src, ds, sig) {
		return r
	}
	if r := b.Load(); r.is(src, ds, sig) {
		return r
	}
	return nil
}

func (t *renderings) put(r *rendering) {
	a, b := t.pair(r.src, r.ds, []byte(r.sig))
	if cur := a.Load(); cur == nil || cur.is(r.src, r.ds, []byte(r.sig)) {
		a.Store(r)
		return
	}
	b.Store(r)
}

// shapeSig appends the signature of a record's shape: every field the
// decision returns, in order, with its mask (masks is aligned with
// fields), and whether the record id is hidden. Two shapings of the same
// source record with the same signature produce the same fields, masked
// list and record id. Fields the record lacks are in the signature too:
// the record is part of the key, so leaving them out would not tell any
// two shapes of it apart, and finding them out costs a lookup a field.
func shapeSig(b []byte, fields []string, masks []v1.MaskKind, hideID bool) []byte {
	if hideID {
		b = append(b, 'h')
	} else {
		b = append(b, 'i')
	}
	for i, f := range fields {
		b = append(append(b, f...), 0)
		b = binary.AppendUvarint(b, uint64(masks[i]))
	}
	return b
}

// render completes r (its key, fields, masked list and record id set) with
// its JSON and canonical digest form.
func (r *rendering) render() {
	if b, ok := pbjson.AppendStruct(nil, r.fields); ok {
		r.fieldsJSON = b
	}
	var canon []byte
	for _, m := range r.masked {
		canon = appendStr(canon, m)
	}
	if c, err := appendCanonStruct(canon, r.fields); err == nil {
		r.canon = c
	}
}
