package connectortest_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/connectortest"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func field(name string) *v1.FieldDescriptor {
	return &v1.FieldDescriptor{Name: name, Title: name, Type: v1.FieldType_FIELD_TYPE_STRING, Classification: v1.Classification_CLASSIFICATION_PUBLIC}
}

func goodDescriptor() *v1.Descriptor {
	return &v1.Descriptor{
		Department: "fire",
		Datasets: []*v1.DatasetDescriptor{{
			Name:         "fire.inspections",
			KeyFields:    []string{"no"},
			Fields:       []*v1.FieldDescriptor{field("no"), field("region"), field("credit_code")},
			RegionField:  "region",
			SubjectField: "credit_code",
		}},
	}
}

func TestCheckDescriptor(t *testing.T) {
	tests := []struct {
		name   string
		modify func(d *v1.Descriptor)
		want   string // substring of a problem; "" means no problem
	}{
		{"good", func(*v1.Descriptor) {}, ""},
		{"no department", func(d *v1.Descriptor) { d.Department = "" }, "no department"},
		{"no datasets", func(d *v1.Descriptor) { d.Datasets = nil }, "no dataset"},
		{"foreign prefix", func(d *v1.Descriptor) { d.Datasets[0].Name = "market.inspections" }, `is not named "fire.<dataset>"`},
		{"bare name", func(d *v1.Descriptor) { d.Datasets[0].Name = "inspections" }, "is not named"},
		{"duplicate dataset", func(d *v1.Descriptor) { d.Datasets = append(d.Datasets, d.Datasets[0]) }, "described twice"},
		{"key not a field", func(d *v1.Descriptor) { d.Datasets[0].KeyFields = []string{"number"} }, `key field "number"`},
		{"no key", func(d *v1.Descriptor) { d.Datasets[0].KeyFields = nil }, "no key fields"},
		{"duplicate field", func(d *v1.Descriptor) { d.Datasets[0].Fields = append(d.Datasets[0].Fields, field("no")) }, "declared twice"},
		{"unclassified", func(d *v1.Descriptor) {
			d.Datasets[0].Fields[0].Classification = v1.Classification_CLASSIFICATION_UNSPECIFIED
		}, "no classification"},
		{"untyped", func(d *v1.Descriptor) { d.Datasets[0].Fields[0].Type = v1.FieldType_FIELD_TYPE_UNSPECIFIED }, "no type"},
		{"region not a field", func(d *v1.Descriptor) { d.Datasets[0].RegionField = "area" }, `region field "area"`},
		{"subject not a field", func(d *v1.Descriptor) { d.Datasets[0].SubjectField = "id" }, `subject field "id"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := goodDescriptor()
			tc.modify(d)
			problems := connectortest.CheckDescriptor(d)
			if tc.want == "" {
				if len(problems) != 0 {
					t.Fatalf("problems = %q, want none", problems)
				}
				return
			}
			if !strings.Contains(strings.Join(problems, "\n"), tc.want) {
				t.Fatalf("problems = %q, want one containing %q", problems, tc.want)
			}
		})
	}
}

// memory is a minimal well-behaved connector.
type memory struct{}

func (memory) Describe(context.Context) (*v1.Descriptor, error) { return goodDescriptor(), nil }

func (memory) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.GetDataset() != "fire.inspections" {
		return nil, apierr.New(codes.NotFound, apierr.ReasonUnknownDataset, "no such dataset")
	}
	if req.GetKeys()["no"] != "7" {
		return nil, apierr.New(codes.NotFound, apierr.ReasonNotFound, "no such inspection")
	}
	f, err := structpb.NewStruct(map[string]any{"no": "7", "region": "130102", "credit_code": "91130100MA0000000X"})
	if err != nil {
		return nil, err
	}
	return &v1.FetchResponse{Records: []*v1.SourceRecord{{Id: "7", Fields: f}}}, nil
}

func (memory) Health(context.Context) error { return nil }

func TestRun(t *testing.T) {
	opts := connectortest.Options{Dataset: "fire.inspections", Key: map[string]string{"no": "7"}}
	t.Run("direct", func(t *testing.T) { connectortest.Run(t, memory{}, opts) })
	t.Run("in process over gRPC", func(t *testing.T) { connectortest.Run(t, connectortest.InProcess(t, memory{}), opts) })
}

func TestInProcessKeepsMessages(t *testing.T) {
	c := connectortest.InProcess(t, memory{})
	got, err := c.Describe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, goodDescriptor()) {
		t.Fatalf("descriptor changed crossing gRPC: %v", got)
	}
}
