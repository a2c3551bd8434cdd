package autofill

import (
	"context"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Correction states.
const (
	StateOpen     = "open"
	StateResolved = "resolved"
)

// Correction is a dispute of a department value (校核纠错), queued to the
// department that holds the value. Unlike its API form it keeps the
// applicant's identifier, so that later auto-fills of the applicant show
// the field as disputed, and the source field of the dataset.
type Correction struct {
	ID          string
	Form        string
	Field       string
	ApplicantID string
	Dataset     string
	// SourceField is the dataset field the form field is drawn from.
	SourceField string
	Department  string
	// RecordID is the department's id of the record the value came from
	// (never an opaque reference), so that the department can find it;
	// empty when no record was found.
	RecordID      string
	CurrentValue  string
	ProposedValue string
	Comment       string
	State         string
	RaisedBy      string
	RaisedAt      time.Time
	ResolvedBy    string
	ResolvedAt    time.Time
}

// Proto returns the API form of the correction (without the applicant's
// identifier) with the department's record id: the form for the
// department it is queued to. The Engine shows every other caller the id's
// opaque reference instead (see Engine.ListCorrectionsAs).
func (c *Correction) Proto() *v1.Correction {
	return &v1.Correction{
		Id:            c.ID,
		Form:          c.Form,
		Field:         c.Field,
		Dataset:       c.Dataset,
		Department:    c.Department,
		RecordId:      c.RecordID,
		CurrentValue:  c.CurrentValue,
		ProposedValue: c.ProposedValue,
		Comment:       c.Comment,
		State:         c.State,
		RaisedBy:      c.RaisedBy,
		RaisedAt:      timestamppb.New(c.RaisedAt),
	}
}

// Filter selects corrections; empty fields match everything.
type Filter struct {
	Department  string
	State       string
	ApplicantID string
}

// Match reports whether c passes the filter.
func (f Filter) Match(c *Correction) bool {
	return (f.Department == "" || c.Department == f.Department) &&
		(f.State == "" || c.State == f.State) &&
		(f.ApplicantID == "" || c.ApplicantID == f.ApplicantID)
}

// Count is the number of corrections of one department by state, for the
// published statistics.
type Count struct {
	Department string
	Open       int
	Resolved   int
}

// Store keeps the corrections queue. Implementations are safe for
// concurrent use.
type Store interface {
	// Add stores a new correction; its ID must be unique.
	Add(ctx context.Context, c *Correction) error
	// List returns the corrections matching f, oldest first (by RaisedAt,
	// then ID).
	List(ctx context.Context, f Filter) ([]*Correction, error)
	// Resolve marks an open correction resolved and returns it as
	// resolved. It fails with NotFound for an unknown id and
	// FailedPrecondition for one already resolved.
	//
	// record, when not nil, is called with the correction as resolved
	// after the change is made and before it is committed, while no other
	// resolution of the correction can commit (a row lock, a write
	// transaction, a mutex); the change is committed only when record
	// returns nil. When it fails, nothing changes and Resolve returns its
	// error unchanged. So of several callers racing to resolve one
	// correction, record runs only for the one that resolves it (or, if
	// that one's record fails, for the next), and never for a call that
	// fails with NotFound or FailedPrecondition. ResolveCorrection appends
	// the audit record there.
	Resolve(ctx context.Context, id, by string, at time.Time, record func(*Correction) error) (*Correction, error)
	// Counts returns the open and resolved counts per department, ordered
	// by department.
	Counts(ctx context.Context) ([]Count, error)
}

// ErrCorrectionNotFound reports an unknown correction id.
func ErrCorrectionNotFound(id string) error {
	return apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "correction %q does not exist", id).With("correction", id)
}

// ErrAlreadyResolved reports a correction that is resolved already.
func ErrAlreadyResolved(id string) error {
	return apierr.Newf(codes.FailedPrecondition, apierr.ReasonFailedPrecondition, "correction %q is resolved already", id).With("correction", id)
}

// MemoryStore is an in-memory Store.
type MemoryStore struct {
	mu  sync.Mutex
	all []*Correction
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Add implements Store.
func (m *MemoryStore) Add(_ context.Context, c *Correction) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.ContainsFunc(m.all, func(x *Correction) bool { return x.ID == c.ID }) {
		return apierr.Newf(codes.AlreadyExists, apierr.ReasonConflict, "correction %q exists already", c.ID)
	}
	cp := *c
	m.all = append(m.all, &cp)
	return nil
}

// List implements Store.
func (m *MemoryStore) List(_ context.Context, f Filter) ([]*Correction, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Correction
	for _, c := range m.all {
		if f.Match(c) {
			cp := *c
			out = append(out, &cp)
		}
	}
	SortCorrections(out)
	return out, nil
}

// Resolve implements Store. record runs under the store's lock.
func (m *MemoryStore) Resolve(_ context.Context, id, by string, at time.Time, record func(*Correction) error) (*Correction, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.all {
		if c.ID != id {
			continue
		}
		if c.State == StateResolved {
			return nil, ErrAlreadyResolved(id)
		}
		after := *c
		after.State, after.ResolvedBy, after.ResolvedAt = StateResolved, by, at
		if record != nil {
			cp := after
			if err := record(&cp); err != nil {
				return nil, err
			}
		}
		*c = after
		return &after, nil
	}
	return nil, ErrCorrectionNotFound(id)
}

// Counts implements Store.
func (m *MemoryStore) Counts(_ context.Context) ([]Count, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	by := map[string]*Count{}
	var out []Count
	for _, c := range m.all {
		n, ok := by[c.Department]
		if !ok {
			n = &Count{Department: c.Department}
			by[c.Department] = n
		}
		if c.State == StateResolved {
			n.Resolved++
		} else {
			n.Open++
		}
	}
	for _, n := range by {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Count) int {
		switch {
		case a.Department < b.Department:
			return -1
		case a.Department > b.Department:
			return 1
		}
		return 0
	})
	return out, nil
}

// SortCorrections orders corrections oldest first, then by id.
func SortCorrections(cs []*Correction) {
	slices.SortStableFunc(cs, func(a, b *Correction) int {
		if c := a.RaisedAt.Compare(b.RaisedAt); c != 0 {
			return c
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}
