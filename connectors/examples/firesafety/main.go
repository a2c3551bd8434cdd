// Command firesafety is a complete external Tongban connector: the how-to for
// a department that writes its own. It serves a fire-safety inspection
// registry (消防安全检查合格证) kept in an embedded CSV file; a real
// connector would query the department's database or API instead.
//
// Build it, pin its digest in the gateway's configuration, and the gateway
// runs it as a plugin process:
//
//	go build -o firesafety ./connectors/examples/firesafety
//	sha256sum firesafety
//
//	connectors:
//	  - name: fire
//	    type: external
//	    path: /opt/tongban/firesafety
//	    sha256: <the digest>
//	    settings:
//	      region_prefix: "1301"   # optional: serve only Shijiazhuang records
//
// The whole contract is sdk.Connector (Describe, Fetch, Health), errors from
// schemas/apierr, and one call to sdk.Serve in main. Its test runs the
// conformance suite against it in process and as a plugin process.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"fmt"
	"log"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

//go:embed inspections.csv
var inspectionsCSV []byte

const (
	department = "fire"
	dataset    = department + ".inspections"
	keyField   = "certificate_no"
)

// Settings is the "settings" block of the gateway's configuration for this
// connector; the host passes it as JSON in $TONGBAN_CONNECTOR_CONFIG.
type Settings struct {
	// RegionPrefix keeps only records whose region code starts with it.
	RegionPrefix string `json:"region_prefix"`
}

func main() {
	var s Settings
	if err := sdk.LoadSettings(&s); err != nil {
		log.Fatal(err) // printed to stderr; the host shows it in its log
	}
	reg, err := NewRegistry(inspectionsCSV, s)
	if err != nil {
		log.Fatal(err)
	}
	sdk.Serve(reg) // returns when the gateway stops the plugin
}

// Registry is the connector: the inspection records, keyed by certificate.
type Registry struct {
	records []map[string]string // in file order
	byKey   map[string]map[string]string
}

var _ sdk.Connector = (*Registry)(nil) // interface guard

// NewRegistry loads the records of a CSV file with a header row.
func NewRegistry(data []byte, s Settings) (*Registry, error) {
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading inspection records: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("reading inspection records: no header row")
	}
	r := &Registry{byKey: map[string]map[string]string{}}
	for _, row := range rows[1:] {
		rec := map[string]string{}
		for i, col := range rows[0] {
			rec[col] = row[i]
		}
		if strings.HasPrefix(rec["region_code"], s.RegionPrefix) {
			r.records = append(r.records, rec)
			r.byKey[rec[keyField]] = rec
		}
	}
	slog.Info("fire-safety registry loaded", "records", len(r.records))
	return r, nil
}

// Describe tells the gateway the department, the dataset and its fields with
// their classification; the gateway's policy works from this.
func (r *Registry) Describe(context.Context) (*v1.Descriptor, error) {
	f := func(name, title string, t v1.FieldType, c v1.Classification) *v1.FieldDescriptor {
		return &v1.FieldDescriptor{Name: name, Title: title, Type: t, Classification: c}
	}
	const str, pub, internal = v1.FieldType_FIELD_TYPE_STRING, v1.Classification_CLASSIFICATION_PUBLIC, v1.Classification_CLASSIFICATION_INTERNAL
	return &v1.Descriptor{
		Department:     department,
		DepartmentName: "消防救援支队",
		Capabilities:   []string{"filter"},
		Datasets: []*v1.DatasetDescriptor{{
			Name:  dataset,
			Title: "消防安全检查合格证",
			Kind:  v1.DatasetKind_DATASET_KIND_APPROVAL,
			Fields: []*v1.FieldDescriptor{
				f(keyField, "合格证编号", str, pub),
				f("enterprise_name", "单位名称", str, pub),
				f("credit_code", "统一社会信用代码", str, pub),
				f("address", "检查地址", str, internal),
				f("region_code", "行政区划代码", str, pub),
				f("result", "检查结论", str, pub),
				f("inspected_on", "检查日期", v1.FieldType_FIELD_TYPE_DATE, pub),
				f("inspector", "检查人员", str, internal),
			},
			KeyFields:    []string{keyField},
			Freshness:    durationpb.New(3600e9), // records may be cached for an hour
			RegionField:  "region_code",
			SubjectField: "credit_code",
		}},
	}, nil
}

// Fetch answers a lookup by key or an equality filter, one page at a time.
// Errors are apierr values: the gateway passes them on with their code.
func (r *Registry) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // the SDK sends CANCELED or DEADLINE_EXCEEDED
	}
	if req.GetDataset() != dataset {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset, "department %q has no dataset %q", department, req.GetDataset())
	}
	if req.GetBbox() != nil || req.GetGeometry() != nil {
		return nil, apierr.Invalid("bbox", "%s is not a spatial dataset", dataset)
	}
	if key, ok := req.GetKeys()[keyField]; ok {
		rec, found := r.byKey[key]
		if !found {
			return nil, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no inspection certificate %q", key).With("dataset", dataset)
		}
		return response([]map[string]string{rec}, "")
	}
	if len(req.GetFilter()) == 0 {
		return nil, apierr.Invalid("keys", "give %s or a filter", keyField)
	}
	var matches []map[string]string
	for _, rec := range r.records {
		ok := true
		for k, v := range req.GetFilter() {
			got, known := rec[k]
			if !known {
				return nil, apierr.Invalid("filter", "unknown field %q", k)
			}
			ok = ok && got == v
		}
		if ok {
			matches = append(matches, rec)
		}
	}
	// The page token is the offset of the next page.
	start, size := 0, int(req.GetPageSize())
	if t := req.GetPageToken(); t != "" {
		var err error
		if start, err = strconv.Atoi(t); err != nil || start < 0 || start > len(matches) {
			return nil, apierr.Invalid("page_token", "not a token this connector issued")
		}
	}
	if size <= 0 || size > 100 {
		size = 100
	}
	end, next := min(start+size, len(matches)), ""
	if end < len(matches) {
		next = strconv.Itoa(end)
	}
	return response(matches[start:end], next)
}

func response(recs []map[string]string, next string) (*v1.FetchResponse, error) {
	out := &v1.FetchResponse{NextPageToken: next}
	for _, rec := range recs {
		fields := map[string]any{}
		for k, v := range rec {
			fields[k] = v
		}
		st, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, fmt.Errorf("encoding record %s: %w", rec[keyField], err)
		}
		out.Records = append(out.Records, &v1.SourceRecord{Id: rec[keyField], Fields: st})
	}
	return out, nil
}

// Health reports whether the department system answers; the registry is in
// memory, so it always does.
func (r *Registry) Health(context.Context) error { return nil }
