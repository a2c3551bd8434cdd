package audit

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tongban/tongban/schemas/testenv"
)

// benchEntry returns an encoded entry of exactly size bytes.
func benchEntry(b *testing.B, size int) []byte {
	e := Entry{
		Time:      time.Date(2026, 3, 1, 8, 0, 0, 123456789, time.UTC),
		RequestID: "r1",
		Node:      "node-1",
		Kind:      KindExchange,
		Consumer:  "sjz-approval",
		Datasets:  []string{"market.enterprises"},
		Subjects:  []string{SubjectHash(subjectKey, "91130100MA0CXXXX1X")},
		Decision:  DecisionPermit,
		Delivery:  DeliveryCache,
	}
	n := len(mustEncode(b, e))
	if n+len(`,"purpose":"x"`) > size {
		b.Fatalf("base entry is %d bytes", n)
	}
	e.Purpose = strings.Repeat("p", size-n-len(`,"purpose":""`))
	data := mustEncode(b, e)
	if len(data) != size {
		b.Fatalf("entry is %d bytes, want %d", len(data), size)
	}
	return data
}

// BenchmarkAppend measures sustained appends with fsync on: 64 concurrent
// appenders (32 per CPU on this 2-CPU machine) of 300-byte entries.
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 200000x ./gateway/audit/
func BenchmarkAppend(b *testing.B) {
	cfg := testConfig(b, b.TempDir())
	l, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	data := benchEntry(b, 300)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.SetParallelism(benchPar)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64(b.N)/float64(l.batches.Load()), "entries/fsync")
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

var benchPar = 32

// BenchmarkAppendWithStats is BenchmarkAppend with a Stats sink on the
// writer goroutine, to show what the published statistics cost.
func BenchmarkAppendWithStats(b *testing.B) {
	cfg := testConfig(b, b.TempDir())
	l, err := Open(context.Background(), cfg, WithReplaySink(NewStats(nil)))
	if err != nil {
		b.Fatal(err)
	}
	data := benchEntry(b, 300)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.SetParallelism(benchPar)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEncode measures the canonical encoding of an exchange entry
// like the one a licence query records.
//
//	go test -run '^$' -bench BenchmarkEncode -benchmem ./gateway/audit/
func BenchmarkEncode(b *testing.B) {
	e := licenceEntry()
	e.Kind = KindExchange
	for b.Loop() {
		if _, err := Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubjectHash measures hashing one subject identifier.
//
//	go test -run '^$' -bench BenchmarkSubjectHash -benchmem ./gateway/audit/
func BenchmarkSubjectHash(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		SubjectHash(subjectKey, "91130109MAAY40HT30")
	}
}

// licenceEntry is the entry a cache-hit licence query records.
func licenceEntry() Entry {
	return Entry{
		Time:               time.Date(2026, 3, 1, 8, 0, 0, 123456789, time.UTC),
		RequestID:          "1deada3950138e65",
		Node:               "demo-node",
		Kind:               "query",
		Consumer:           "approval-bureau",
		ConsumerDepartment: "approval",
		Datasets:           []string{"market.business_licences"},
		Subjects:           []string{SubjectHash(subjectKey, "91130109MAAY40HT30")},
		Purpose:            "approval",
		LegalBasis:         []string{"《中华人民共和国行政许可法》第三十三条；《优化营商环境条例》（国务院令第722号）"},
		GrantIDs:           []string{"demo-approval-licences"},
		Decision:           DecisionPermit,
		FieldsReturned: []string{"address", "business_scope", "credit_code", "enterprise_type", "established_on", "issued_on",
			"legal_representative", "legal_representative_id", "name", "region_code", "registered_capital", "registration_authority", "status"},
		Department:     "market",
		Delivery:       DeliveryCache,
		ResponseDigest: Digest([]byte("answer")),
	}
}

// noSyncFile skips fsync, so that a benchmark measures the CPU an append
// costs rather than the disk's latency.
type noSyncFile struct{ file }

func (noSyncFile) Sync() error { return nil }

// BenchmarkAppendEntry measures AppendEntry of a licence-query entry from
// 32 appenders per CPU, with fsync on (sync) and skipped (nosync: the CPU
// an append costs on the request path and the writer goroutine).
// cpu-ns/op is the process's CPU time per append.
//
//	go test -run '^$' -bench BenchmarkAppendEntry -benchmem ./gateway/audit/
func BenchmarkAppendEntry(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "sync"
		var opts []Option
		if !sync {
			name = "nosync"
			opts = append(opts, func(o *options) { o.wrapFile = func(f file) file { return noSyncFile{f} } })
		}
		b.Run(name, func(b *testing.B) {
			opts := append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)
			l, err := Open(context.Background(), testConfig(b, b.TempDir()), opts...)
			if err != nil {
				b.Fatal(err)
			}
			e := licenceEntry()
			// A request's context can end, as on the server.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			b.SetParallelism(benchPar)
			b.ResetTimer()
			reportCPU := testenv.CPUPerOp(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.AppendEntry(ctx, e); err != nil {
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
		})
	}
}
