package query

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// pageOfLicences returns n distinct licence records in region 130104.
func pageOfLicences(n int) []*v1.SourceRecord {
	out := make([]*v1.SourceRecord, 0, n)
	for i := range n {
		f, _ := structpb.NewStruct(map[string]any{
			"credit_code":             fmt.Sprintf("91130104MA%08dX", i),
			"name":                    "石家庄恒信餐饮管理有限公司",
			"legal_representative":    "张伟",
			"legal_representative_id": "11010519491231002X",
			"region_code":             "130104",
			"registered_capital":      100.0,
			"status":                  "存续",
		})
		out = append(out, &v1.SourceRecord{Id: fmt.Sprintf("91130104MA%08dX", i), Fields: f})
	}
	return out
}

// BenchmarkRun measures one query through the pipeline (policy from the
// demo grants, an in-memory fetch, a recorder that keeps nothing): a key
// lookup of one record, the same with a field projection, and a filtered
// page of 100 records.
func BenchmarkRun(b *testing.B) {
	cases := []struct {
		name    string
		records []*v1.SourceRecord
		query   *v1.QueryRequest
	}{
		{"lookup", []*v1.SourceRecord{licence("130104")}, &v1.QueryRequest{
			Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
		}},
		{"lookup-fields", []*v1.SourceRecord{licence("130104")}, &v1.QueryRequest{
			Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
			Fields: []string{"name", "status"},
		}},
		{"page100", pageOfLicences(100), &v1.QueryRequest{
			Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, Purpose: "approval",
		}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			p := benchPipeline(b, bc.records)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Run(ctx, Request{Principal: approvalBureau, RequestID: "b", Query: bc.query}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardRecorder struct{}

func (discardRecorder) RecordExchange(context.Context, Exchange) (*v1.Receipt, error) {
	return &v1.Receipt{Node: "bench"}, nil
}

func benchPipeline(b *testing.B, records []*v1.SourceRecord) *Pipeline {
	b.Helper()
	p := newPipeline(b, &fakeFetcher{records: records}, nil)
	p.Record = discardRecorder{}
	return p
}
