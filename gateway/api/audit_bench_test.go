package api

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/schemas/testenv"
)

// licenceExchange is the exchange a cache-hit licence query reports.
func licenceExchange() query.Exchange {
	return query.Exchange{
		Time:               auditT0,
		RequestID:          "1deada3950138e65",
		Kind:               "query",
		Consumer:           "approval-bureau",
		ConsumerDepartment: "approval",
		Dataset:            "market.business_licences",
		Department:         "market",
		Subjects:           []string{"91130109MAAY40HT30"},
		Purpose:            "approval",
		LegalBasis:         []string{"《中华人民共和国行政许可法》第三十三条；《优化营商环境条例》（国务院令第722号）"},
		GrantIDs:           []string{"demo-approval-licences"},
		Decision:           query.DecisionPermit,
		FieldsReturned: []string{"address", "business_scope", "credit_code", "enterprise_type", "established_on", "issued_on",
			"legal_representative", "legal_representative_id", "name", "region_code", "registered_capital", "registration_authority", "status"},
		Delivery:       audit.DeliveryCache,
		ResponseDigest: audit.Digest([]byte("answer")),
	}
}

// BenchmarkRecordExchange measures Recorder.RecordExchange of a licence
// query from 32 callers per CPU, with fsync (group commit) on. cpu-ns/op
// is the process's CPU time per exchange, the writer goroutine's included.
//
//	go test -run '^$' -bench BenchmarkRecordExchange -benchmem ./gateway/api/
func BenchmarkRecordExchange(b *testing.B) {
	skey, _, err := audit.GenerateKey(auditTestOrigin)
	if err != nil {
		b.Fatal(err)
	}
	cfg := audit.Config{Dir: b.TempDir(), Origin: auditTestOrigin, SigningKey: skey, CheckpointInterval: time.Hour}
	l, err := audit.Open(context.Background(), cfg, audit.WithReplaySink(audit.NewStats(nil)), audit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	rec := &Recorder{Log: l, Node: "demo-node", SubjectKey: auditTestSubjectKey}
	ex := licenceExchange()
	// A request's context can end, as on the server.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	reportCPU := testenv.CPUPerOp(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rec.RecordExchange(ctx, ex); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCPU()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkExchangeEntry measures mapping a licence-query exchange to its
// audit entry (the subject's keyed hash included).
func BenchmarkExchangeEntry(b *testing.B) {
	rec := &Recorder{Node: "demo-node", SubjectKey: auditTestSubjectKey}
	ex := licenceExchange()
	b.ReportAllocs()
	for b.Loop() {
		rec.ExchangeEntry(ex)
	}
}
