package query

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// FuzzQueryRequest decodes arbitrary bytes as the JSON body of
// POST /v1/datasets/{dataset}:query (as grpc-gateway does) and runs the
// pipeline on it: validation, policy, a fetch that finds nothing, and the
// record. It must never panic, and every refusal must be a classified
// caller error (INVALID_ARGUMENT, NOT_FOUND or PERMISSION_DENIED) with a
// reason and a message, never an internal error.
func FuzzQueryRequest(f *testing.F) {
	for _, s := range []string{
		`{"dataset": "market.business_licences", "keys": {"credit_code": "91350100M000100Y43"}, "purpose": "approval"}`,
		`{"dataset": "market.business_licences", "keys": {"credit_code": "91350100M000100Y44"}, "purpose": "approval"}`,
		`{"dataset": "market.enterprises", "filter": {"region_code": "130104"}, "purpose": "approval", "page_size": 5}`,
		`{"dataset": "resources.parcels", "bbox": {"min_lon": 114.4, "min_lat": 38.0, "max_lon": 114.6, "max_lat": 38.1}, "purpose": "approval"}`,
		`{"dataset": "resources.parcels", "bbox": {"min_lon": 200, "min_lat": 38.0, "max_lon": 114.6, "max_lat": 38.1}, "purpose": "approval"}`,
		`{"dataset": "approval.permits", "keys": {"holder_id": "11010519491231002X"}, "purpose": "inspection", "fields": ["permit_no", "nope"]}`,
		`{"dataset": "nope", "purpose": "x"}`,
		`{"dataset": "market.business_licences", "purpose": " "}`,
		`{"dataset": "market.business_licences", "keys": {"credit_code": ""}, "purpose": "approval", "page_size": -1}`,
		`{"dataset": "market.business_licences", "keys": {"name": "x"}, "purpose": "approval"}`,
		`{}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q v1.QueryRequest
		if err := protojson.Unmarshal(b, &q); err != nil {
			return // grpc-gateway answers 400 before the pipeline runs
		}
		p := newPipeline(t, &fakeFetcher{}, &fakeRecorder{})
		p.MaxPage = 100

		ds, verr := p.validate(&q)
		if verr != nil {
			checkCallerError(t, verr, codes.InvalidArgument, codes.NotFound)
		} else {
			if ds == nil || ds.Name != q.GetDataset() {
				t.Fatalf("validated %q as dataset %v", q.GetDataset(), ds)
			}
			if strings.TrimSpace(q.GetPurpose()) == "" {
				t.Fatal("accepted a blank purpose")
			}
			if len(q.GetKeys()) == 0 && len(q.GetFilter()) == 0 && q.GetBbox() == nil {
				t.Fatal("accepted a request naming no records")
			}
			for k := range q.GetKeys() {
				if !ds.IsLookup(k) {
					t.Fatalf("accepted lookup by %q", k)
				}
			}
			if size := p.fetchRequest(ds, &q).GetPageSize(); size < 1 || size > p.MaxPage {
				t.Fatalf("page size %d outside 1..%d", size, p.MaxPage)
			}
		}

		resp, err := p.Run(context.Background(), Request{Principal: approvalBureau, RequestID: "fuzz", Query: &q})
		if err == nil {
			if verr != nil {
				t.Fatalf("Run accepted what validate refused (%v)", verr)
			}
			if len(resp.GetRecords()) != 0 {
				t.Fatalf("records from an empty fetch: %v", resp.GetRecords())
			}
			return
		}
		checkCallerError(t, err, codes.InvalidArgument, codes.NotFound, codes.PermissionDenied)
	})
}

func checkCallerError(t *testing.T, err error, allowed ...codes.Code) {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) {
		t.Fatalf("unclassified error %T: %v", err, err)
	}
	ok := false
	for _, c := range allowed {
		ok = ok || ae.Code == c
	}
	if !ok {
		t.Fatalf("error code %v (%v), want one of %v", ae.Code, err, allowed)
	}
	if ae.Reason == "" || ae.Msg == "" {
		t.Fatalf("error without reason or message: %#v", ae)
	}
}
