// Package connectortest is the conformance suite every Tongban connector
// passes, and helpers to run a connector over gRPC inside a test.
//
// A connector's test runs the suite against the connector itself, in process
// over gRPC, and (for external connectors) through the host as a plugin
// process:
//
//	connectortest.Run(t, connectortest.InProcess(t, myConnector), connectortest.Options{
//		Dataset: "fire.inspections",
//		Key:     map[string]string{"certificate_no": "FI-2024-0001"},
//	})
package connectortest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Options tells the suite about the records the connector under test holds.
type Options struct {
	// Dataset is a dataset the connector serves, in which Key names an
	// existing record.
	Dataset string
	// Key maps every key field of Dataset to the value of an existing record.
	Key map[string]string
	// UnknownKey is a well-formed key of Dataset that names no record. The
	// default replaces every value of Key with "TONGBAN-CONFORMANCE-UNKNOWN";
	// connectors that validate identifiers (check digits) must set it.
	UnknownKey map[string]string
	// Timeout bounds every call of the suite; default 10s.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.UnknownKey == nil {
		o.UnknownKey = make(map[string]string, len(o.Key))
		for k := range o.Key {
			o.UnknownKey[k] = "TONGBAN-CONFORMANCE-UNKNOWN"
		}
	}
	return o
}

// Run runs the conformance suite against c as subtests of t.
func Run(t *testing.T, c sdk.Connector, opts Options) {
	t.Helper()
	opts = opts.withDefaults()
	if opts.Dataset == "" || len(opts.Key) == 0 {
		t.Fatal("connectortest: Options.Dataset and Options.Key are required")
	}
	call := func(t *testing.T) (context.Context, context.CancelFunc) {
		return context.WithTimeout(t.Context(), opts.Timeout)
	}

	var desc *v1.Descriptor
	t.Run("describe", func(t *testing.T) {
		ctx, cancel := call(t)
		defer cancel()
		d, err := c.Describe(ctx)
		if err != nil {
			t.Fatalf("Describe: %v", err)
		}
		for _, problem := range CheckDescriptor(d) {
			t.Error(problem)
		}
		again, err := c.Describe(ctx)
		if err != nil {
			t.Fatalf("second Describe: %v", err)
		}
		if !proto.Equal(d, again) {
			t.Error("Describe is not stable: two calls returned different descriptors")
		}
		desc = d
	})
	if desc == nil {
		t.Fatal("connectortest: no descriptor, skipping the rest of the suite")
	}
	ds := dataset(desc, opts.Dataset)
	if ds == nil {
		t.Fatalf("connector does not describe dataset %q named in Options.Dataset", opts.Dataset)
	}
	for _, k := range ds.GetKeyFields() {
		if _, ok := opts.Key[k]; !ok {
			t.Fatalf("Options.Key lacks key field %q of %s", k, opts.Dataset)
		}
	}

	t.Run("health", func(t *testing.T) {
		ctx, cancel := call(t)
		defer cancel()
		if err := c.Health(ctx); err != nil {
			t.Fatalf("Health: %v", err)
		}
	})

	t.Run("fetch known key", func(t *testing.T) {
		ctx, cancel := call(t)
		defer cancel()
		resp, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: opts.Dataset, Keys: opts.Key})
		if err != nil {
			t.Fatalf("Fetch(%v): %v", opts.Key, err)
		}
		if len(resp.GetRecords()) == 0 {
			t.Fatalf("Fetch(%v) returned no record", opts.Key)
		}
		for i, r := range resp.GetRecords() {
			if r.GetId() == "" {
				t.Errorf("record %d has no id", i)
			}
			for k, want := range opts.Key {
				got, ok := r.GetFields().GetFields()[k]
				if !ok {
					t.Errorf("record %d lacks key field %q", i, k)
					continue
				}
				if s := valueString(got); s != want {
					t.Errorf("record %d: key field %q = %q, want %q", i, k, s, want)
				}
			}
			for name := range r.GetFields().GetFields() {
				if !slices.ContainsFunc(ds.GetFields(), func(f *v1.FieldDescriptor) bool { return f.GetName() == name }) {
					t.Errorf("record %d has field %q that the descriptor does not declare", i, name)
				}
			}
		}
	})

	t.Run("fetch unknown key is NotFound", func(t *testing.T) {
		ctx, cancel := call(t)
		defer cancel()
		_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: opts.Dataset, Keys: opts.UnknownKey})
		if got := apierr.CodeOf(err); got != codes.NotFound {
			t.Fatalf("Fetch(%v) error = %v (code %v), want NotFound", opts.UnknownKey, err, got)
		}
	})

	t.Run("fetch unknown dataset is refused", func(t *testing.T) {
		ctx, cancel := call(t)
		defer cancel()
		name := desc.GetDepartment() + ".tongban_conformance_no_such_dataset"
		_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: name, Keys: opts.Key})
		if got := apierr.CodeOf(err); got != codes.NotFound && got != codes.InvalidArgument {
			t.Fatalf("Fetch(%s) error = %v (code %v), want NotFound or InvalidArgument", name, err, got)
		}
	})

	for _, tc := range []struct {
		name string
		ctx  func(parent context.Context) (context.Context, context.CancelFunc)
	}{
		{"cancelled context", func(p context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(p)
			cancel()
			return ctx, cancel
		}},
		{"expired deadline", func(p context.Context) (context.Context, context.CancelFunc) {
			return context.WithDeadline(p, time.Now().Add(-time.Second))
		}},
	} {
		t.Run("fetch with "+tc.name+" fails", func(t *testing.T) {
			ctx, cancel := tc.ctx(t.Context())
			defer cancel()
			err := within(t, opts.Timeout, func() error {
				_, err := c.Fetch(ctx, &v1.FetchRequest{Dataset: opts.Dataset, Keys: opts.Key})
				return err
			})
			if !isContextError(err) {
				t.Fatalf("Fetch with %s: error = %v, want Canceled or DeadlineExceeded", tc.name, err)
			}
		})
	}

	if slices.Contains(desc.GetCapabilities(), "watch") {
		t.Run("watch", func(t *testing.T) {
			w, ok := c.(sdk.Watcher)
			if !ok {
				t.Fatalf("descriptor advertises watch but %T does not implement sdk.Watcher", c)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := within(t, opts.Timeout, func() error {
				return w.Watch(ctx, &v1.WatchRequest{Datasets: []string{opts.Dataset}}, func(*v1.ChangeEvent) error { return nil })
			})
			if err != nil && !isContextError(err) {
				t.Fatalf("Watch with cancelled context: %v, want nil or Canceled", err)
			}
		})
	}
}

// CheckDescriptor returns what is wrong with d, one sentence per problem: a
// department and at least one dataset, datasets named "<department>.<name>"
// and unique, every dataset with fields of unique names, a title, a
// classification and a type, key fields that are fields, and region and
// subject fields, when set, that are fields.
func CheckDescriptor(d *v1.Descriptor) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.GetDepartment() == "" {
		add("descriptor has no department")
	}
	if len(d.GetDatasets()) == 0 {
		add("descriptor lists no dataset")
	}
	seen := map[string]bool{}
	for _, ds := range d.GetDatasets() {
		name := ds.GetName()
		rest, ok := strings.CutPrefix(name, d.GetDepartment()+".")
		if !ok || rest == "" || strings.Contains(rest, ".") {
			add("dataset %q is not named %q", name, d.GetDepartment()+".<dataset>")
		}
		if seen[name] {
			add("dataset %q is described twice", name)
		}
		seen[name] = true
		if len(ds.GetFields()) == 0 {
			add("dataset %q has no fields", name)
		}
		fields := map[string]bool{}
		for _, f := range ds.GetFields() {
			switch {
			case f.GetName() == "":
				add("dataset %q has a field without a name", name)
			case fields[f.GetName()]:
				add("dataset %q: field %q is declared twice", name, f.GetName())
			}
			fields[f.GetName()] = true
			if f.GetClassification() == v1.Classification_CLASSIFICATION_UNSPECIFIED {
				add("dataset %q: field %q has no classification", name, f.GetName())
			}
			if f.GetType() == v1.FieldType_FIELD_TYPE_UNSPECIFIED {
				add("dataset %q: field %q has no type", name, f.GetName())
			}
		}
		if len(ds.GetKeyFields()) == 0 {
			add("dataset %q has no key fields", name)
		}
		for _, k := range ds.GetKeyFields() {
			if !fields[k] {
				add("dataset %q: key field %q is not one of its fields", name, k)
			}
		}
		for what, f := range map[string]string{"region": ds.GetRegionField(), "subject": ds.GetSubjectField()} {
			if f != "" && !fields[f] {
				add("dataset %q: %s field %q is not one of its fields", name, what, f)
			}
		}
	}
	return problems
}

func dataset(d *v1.Descriptor, name string) *v1.DatasetDescriptor {
	for _, ds := range d.GetDatasets() {
		if ds.GetName() == name {
			return ds
		}
	}
	return nil
}

// within runs f and fails t if it has not returned after limit: a connector
// that ignores its context would otherwise hang the suite.
func within(t *testing.T, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("call did not return within %v", limit)
		return nil
	}
}

func isContextError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	c := apierr.CodeOf(err)
	return c == codes.Canceled || c == codes.DeadlineExceeded
}

// valueString renders a key value as the string a key lookup would use.
func valueString(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return fmt.Sprint(k.NumberValue)
	case *structpb.Value_BoolValue:
		return fmt.Sprint(k.BoolValue)
	default:
		return v.String()
	}
}
