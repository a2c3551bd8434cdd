package policy

import (
	"hash/maphash"
	"math"
	"slices"
	"sync/atomic"
)

// decisions keeps a snapshot's recent decisions, so that the same caller
// asking the same question again (the common case: a system querying one
// dataset for one purpose all day) is answered without evaluating the
// grants again. It is a direct-mapped table: a slot holds the last decision
// whose request hashed to it; lookups and stores are single atomic
// operations. A snapshot never changes, so a kept decision stays right as
// long as the request time stays within the window over which none of the
// grants it considered starts or ends (kept with it). Only allowing
// decisions are kept: a denial is rarer, and its error is built afresh.
//
// Decisions returned from the table share their slices and map with each
// other; like every Decision they are read-only.
type decisions struct {
	seed  maphash.Seed
	slots [decisionSlots]atomic.Pointer[keptDecision]
}

// decisionSlots is the number of decisions a snapshot keeps.
const decisionSlots = 1024

type keptDecision struct {
	system, department, dataset, purpose string
	roles, fields                        []string
	// The decision holds for request times in [from, until).
	from, until int64
	d           Decision
}

func newDecisions() *decisions { return &decisions{seed: maphash.MakeSeed()} }

func (t *decisions) slot(req *Request) *atomic.Pointer[keptDecision] {
	var h maphash.Hash
	h.SetSeed(t.seed)
	for _, s := range [...]string{req.Principal.SystemID, req.Principal.Department, req.Dataset, req.Purpose} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	for _, r := range req.Principal.Roles {
		h.WriteString(r)
		h.WriteByte(1)
	}
	for _, f := range req.Fields {
		h.WriteString(f)
		h.WriteByte(2)
	}
	return &t.slots[h.Sum64()%decisionSlots]
}

// get returns the kept decision for req, if any holds at req.Time.
func (t *decisions) get(req *Request) (Decision, bool) {
	k := t.slot(req).Load()
	if k == nil {
		return Decision{}, false
	}
	now := req.Time.UnixNano()
	p := &req.Principal
	if now < k.from || now >= k.until ||
		k.system != p.SystemID || k.department != p.Department || k.dataset != req.Dataset || k.purpose != req.Purpose ||
		!slices.Equal(k.roles, p.Roles) || !slices.Equal(k.fields, req.Fields) {
		return Decision{}, false
	}
	return k.d, true
}

// put keeps d, decided for req, for request times in [from, until).
func (t *decisions) put(req *Request, d Decision, from, until int64) {
	p := &req.Principal
	t.slot(req).Store(&keptDecision{
		system: p.SystemID, department: p.Department, dataset: req.Dataset, purpose: req.Purpose,
		roles: slices.Clone(p.Roles), fields: slices.Clone(req.Fields),
		from: from, until: until, d: d,
	})
}

// window narrows [from, until), the times around now over which no grant
// boundary seen so far falls, by the boundaries of one more grant: a
// decision depends on time only through whether now is before each
// considered grant's start and end.
func window(from, until *int64, now int64, bounds ...int64) {
	for _, b := range bounds {
		if b <= now {
			*from = max(*from, b)
		} else {
			*until = min(*until, b)
		}
	}
}

// openWindow is the window before any grant is considered.
func openWindow() (from, until int64) { return math.MinInt64, math.MaxInt64 }
