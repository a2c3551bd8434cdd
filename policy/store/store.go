// Package store keeps grants. Store is the one small interface; sqlstore
// (embedded SQLite, the default) and pgstore (PostgreSQL, for several
// gateway nodes) implement it, and storetest is the conformance suite both
// pass.
//
// Grants are stored whole (the proto serialized) with their id, dataset,
// stored state and consumer as indexed columns. Every record has a version
// that Update checks and increments, so that of two concurrent updates of a
// grant exactly one wins (optimistic concurrency); the loser gets CONFLICT
// and reads again. Every write also takes the next value of one store-wide
// revision counter, so a reader that remembers the revision it last read at
// can tell cheaply whether anything changed (Revision) and what (Changes).
//
// The store keeps whatever it is given: the workflow rules (who may move a
// grant to which state) live in package workflow. There is no delete.
package store

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Record is a stored grant with its bookkeeping.
type Record struct {
	// Grant is the stored grant. Callers own the message: stores never
	// return a message they keep.
	Grant *v1.Grant
	// Version counts the writes of this grant, starting at 1.
	Version int64
	// Revision is the store revision of the last write of this grant.
	Revision int64
	// UpdatedAt is when the grant was last written (store time).
	UpdatedAt time.Time
}

// Filter selects grants by their stored columns. Empty fields match
// everything.
type Filter struct {
	// State is the stored state (EXPIRED is computed by readers and never
	// stored by the workflow).
	State v1.GrantState
	// Dataset is the dataset name.
	Dataset string
	// SystemID is the consumer's system id.
	SystemID string
	// Department is the consumer's department.
	Department string
}

// Store keeps grants. Implementations are safe for concurrent use, and
// every method honours ctx. Errors are *apierr.Error where the caller can
// act on them: NotFound (NOT_FOUND), AlreadyExists (CONFLICT) and Aborted
// (CONFLICT).
type Store interface {
	// Get returns the grant with the given id, or NotFound.
	Get(ctx context.Context, id string) (Record, error)
	// List returns the grants matching f, ordered by id.
	List(ctx context.Context, f Filter) ([]Record, error)
	// Create stores a new grant at version 1. The grant must have an id;
	// an existing id gives AlreadyExists.
	Create(ctx context.Context, g *v1.Grant) (Record, error)
	// Update replaces the grant with g.Id if its version is still version,
	// and increments the version; otherwise it returns Aborted (CONFLICT),
	// or NotFound when there is no such grant.
	Update(ctx context.Context, g *v1.Grant, version int64) (Record, error)
	// Revision returns the store revision: the number of writes so far. It
	// only grows.
	Revision(ctx context.Context) (int64, error)
	// Changes returns the grants written after revision since, ordered by
	// revision, and the store revision they bring the reader to.
	Changes(ctx context.Context, since int64) ([]Record, int64, error)
	// Close releases the store's resources.
	Close() error
}

// NotFound is the error of Get and Update for an unknown grant id.
func NotFound(id string) *apierr.Error {
	return apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "grant %q not found", id).With("grant_id", id)
}

// Conflict is the error of Update when the grant changed since it was read.
func Conflict(id string) *apierr.Error {
	return apierr.Newf(codes.Aborted, apierr.ReasonConflict, "grant %q was changed concurrently; read it again", id).With("grant_id", id)
}

// Exists is the error of Create for an id already taken.
func Exists(id string) *apierr.Error {
	return apierr.Newf(codes.AlreadyExists, apierr.ReasonConflict, "grant %q already exists", id).With("grant_id", id)
}

// Marshal serializes a grant for storage (protojson, field names as in the
// proto).
func Marshal(g *v1.Grant) ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(g)
}

// Unmarshal reads a grant serialized by Marshal. Unknown fields (written by
// a newer version) are ignored.
func Unmarshal(b []byte) (*v1.Grant, error) {
	g := &v1.Grant{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, g); err != nil {
		return nil, err
	}
	return g, nil
}

// Invalid returns an InvalidArgument error when g cannot be stored: a nil
// grant or one without id. Stores call it before writing.
func Invalid(g *v1.Grant) error {
	if g == nil {
		return apierr.Invalid("grant", "is required")
	}
	if g.GetId() == "" {
		return apierr.Invalid("grant.id", "is required")
	}
	return nil
}
