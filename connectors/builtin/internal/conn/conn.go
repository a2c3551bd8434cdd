// Package conn holds what the built-in connector types share: strict YAML
// decoding, the department and dataset part of their settings, validation of
// fetch requests against the dataset dictionary, conversion of department
// values to the dictionary's field types, JSON pointers, paging and error
// translation.
package conn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// ReasonCancelled is the reason of the error returned when the caller
// cancelled the request. apierr has no reason for it yet.
const ReasonCancelled = apierr.ReasonCanceled

// Dictionary returns the embedded dataset dictionary, parsed once.
var Dictionary = sync.OnceValue(datasets.Default)

// Settings is the configuration of a connector type.
type Settings interface {
	SetDefaults()
	Validate() error
}

// Parse decodes YAML settings into a new T (unknown keys are errors),
// applies its defaults and validates it.
func Parse[T any, P interface {
	*T
	Settings
}](b []byte) (P, error) {
	cfg := P(new(T))
	if err := Decode(b, cfg); err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Decode decodes YAML settings into v, refusing unknown keys.
func Decode(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("settings are empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decoding settings: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("decoding settings: more than one YAML document")
	}
	return nil
}

// Department names the department a connector serves.
type Department struct {
	// ID is the department identifier of the dataset dictionary, e.g. "market".
	ID string `yaml:"id"`
	// Name is the human-readable name; it defaults to the dictionary's.
	Name string `yaml:"name"`
}

// Validate checks that the department is in the dictionary.
func (d Department) Validate() error {
	if d.ID == "" {
		return errors.New("department.id: must be set")
	}
	if _, ok := Dictionary().Department(d.ID); !ok {
		var ids []string
		for _, dep := range Dictionary().Departments {
			ids = append(ids, dep.ID)
		}
		return fmt.Errorf("department.id: %q is not in the dataset dictionary (known: %s)", d.ID, strings.Join(ids, ", "))
	}
	return nil
}

// DisplayName returns Name, or the dictionary's name when Name is empty.
func (d Department) DisplayName() string {
	if d.Name != "" {
		return d.Name
	}
	dep, _ := Dictionary().Department(d.ID)
	return dep.Name
}

// DatasetPath is the key path of a dataset's settings, used in validation
// errors: datasets["market.business_licences"].
func DatasetPath(name string) string { return fmt.Sprintf("datasets[%q]", name) }

// LookupDataset returns the dictionary entry of a configured dataset, checking
// that it belongs to the department.
func LookupDataset(dept, name string) (*datasets.Dataset, error) {
	ds, ok := Dictionary().Dataset(name)
	if !ok {
		return nil, fmt.Errorf("%s: not in the dataset dictionary", DatasetPath(name))
	}
	if ds.Department != dept {
		return nil, fmt.Errorf("%s: belongs to department %q, not %q", DatasetPath(name), ds.Department, dept)
	}
	return ds, nil
}

// CheckField checks that field is a field of ds; path names the setting.
func CheckField(ds *datasets.Dataset, path, field string) error {
	if !ds.HasField(field) {
		return fmt.Errorf("%s: %q is not a field of %s (fields: %s)", path, field, ds.Name, strings.Join(ds.FieldNames(), ", "))
	}
	return nil
}

// Base is the part of a connector that describes it: the department, the
// datasets it serves with their dictionary entries, freshness overrides and
// capabilities.
type Base struct {
	Dept         Department
	Datasets     map[string]*datasets.Dataset
	Freshness    map[string]time.Duration
	Capabilities []string
}

// Dataset returns a served dataset, or an INVALID_ARGUMENT error with reason
// UNKNOWN_DATASET naming it.
func (b *Base) Dataset(name string) (*datasets.Dataset, error) {
	ds, ok := b.Datasets[name]
	if !ok {
		names := make([]string, 0, len(b.Datasets))
		for n := range b.Datasets {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, apierr.Newf(codes.InvalidArgument, apierr.ReasonUnknownDataset,
			"dataset %q is not served by department %q (it serves: %s)", name, b.Dept.ID, strings.Join(names, ", ")).With("dataset", name)
	}
	return ds, nil
}

// Describe builds the descriptor from the dictionary entries.
func (b *Base) Describe() *v1.Descriptor {
	names := make([]string, 0, len(b.Datasets))
	for n := range b.Datasets {
		names = append(names, n)
	}
	sort.Strings(names)
	out := &v1.Descriptor{
		Department:     b.Dept.ID,
		DepartmentName: b.Dept.DisplayName(),
		Capabilities:   slices.Clone(b.Capabilities),
	}
	for _, n := range names {
		d := b.Datasets[n].Descriptor()
		if f, ok := b.Freshness[n]; ok && f > 0 {
			d.Freshness = durationpb.New(f)
		}
		out.Datasets = append(out.Datasets, d)
	}
	return out
}

// CtxErr returns the error for a call whose context ended: CANCELED when the
// caller cancelled, UNAVAILABLE naming the department when a deadline passed.
// It returns nil while ctx is live.
func CtxErr(ctx context.Context, dept string) error {
	if ctx.Err() == nil {
		return nil
	}
	return Unavailable(ctx, dept, context.Cause(ctx))
}

// Unavailable is the error for a department that could not be reached:
// UNAVAILABLE naming the department (also when ctx's deadline passed), or
// CANCELED when the caller cancelled ctx. The cause is kept for logs and
// errors.Is.
func Unavailable(ctx context.Context, dept string, cause error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		if !errors.Is(cause, context.Canceled) {
			cause = fmt.Errorf("%w: %v", context.Canceled, cause)
		}
		return apierr.New(codes.Canceled, ReasonCancelled, "request cancelled").WithCause(cause)
	}
	if ctx.Err() != nil {
		if !errors.Is(cause, context.DeadlineExceeded) {
			cause = fmt.Errorf("%w: %v", context.DeadlineExceeded, cause)
		}
		return apierr.Unavailable(dept, fmt.Errorf("department did not answer in time: %w", cause))
	}
	return apierr.Unavailable(dept, cause)
}

// TooLarge is the error for a department response over the size limit.
func TooLarge(dept string, limit int64) error {
	return apierr.Newf(codes.ResourceExhausted, apierr.ReasonResponseTooLarge,
		"department %q sent a response larger than %d bytes", dept, limit).With("department", dept)
}

// TooMany is the error for a result with more records than a connector may
// collect.
func TooMany(dept string, limit int) error {
	return apierr.Newf(codes.ResourceExhausted, apierr.ReasonResponseTooLarge,
		"department %q has more than %d matching records; narrow the query", dept, limit).With("department", dept)
}

// BadData is the error for a department answer that does not fit the
// connector's settings or the dictionary.
func BadData(dept string, cause error) error {
	return apierr.Newf(codes.Internal, apierr.ReasonInternal,
		"department %q sent data the connector cannot read", dept).With("department", dept).WithCause(cause)
}

// NotFound is the NOT_FOUND error for a selection with no record.
func NotFound(dataset string, sel map[string]string) error {
	return apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no %s record for %s", dataset, formatSel(sel)).With("dataset", dataset)
}

// Misconfigured is the error for settings that the department's answers
// show to be wrong, e.g. a query with the wrong number of parameters.
func Misconfigured(dept string, cause error) error {
	return apierr.Newf(codes.FailedPrecondition, apierr.ReasonConnectorMisconfig,
		"the connector of department %q is misconfigured", dept).With("department", dept).WithCause(cause)
}

func formatSel(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, sel[k])
	}
	return strings.Join(parts, ", ")
}
