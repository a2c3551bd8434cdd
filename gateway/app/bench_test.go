package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

// BenchmarkRESTCacheHit is one cache-hit query on the REST route of a real
// node, in process and without a connection: the middleware, the bearer
// token, policy with its quota charge, the cache, shaping, the audit
// append with its fsync group commit, and the JSON answer. It is the
// gateway's own share of the load harness's cache-hit scenario, which adds
// net/http's connection handling; the goroutines of RunParallel share the
// audit log's commits as concurrent requests do.
func BenchmarkRESTCacheHit(b *testing.B) {
	deps, err := simulate.Start(context.Background(), simulate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deps.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := New(ctx, nodeConfig(b, "bench", deps), Options{
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Launcher: testLauncher,
		// The demo grants with quotas no benchmark run exhausts: the
		// charge stays in the path.
		SeedGrants: func(now time.Time) []*v1.Grant {
			gs := policy.DemoGrants(now)
			for _, g := range gs {
				if g.Quota != nil {
					g.Quota = &v1.Quota{PerMinute: 1 << 30, PerDay: 1 << 30}
				}
			}
			return gs
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })

	var bodies [][]byte
	for _, e := range deps.Data.Enterprises {
		if len(bodies) == 64 {
			break
		}
		if !strings.HasPrefix(e.RegionCode, "1301") { // the bureau's jurisdiction
			continue
		}
		if _, err := a.Query(asApproval(), licenceQuery(e.CreditCode)); err != nil {
			b.Fatalf("warming %s: %v", e.CreditCode, err)
		}
		bodies = append(bodies, fmt.Appendf(nil, `{"keys":{"credit_code":%q},"purpose":"approval"}`, e.CreditCode))
	}
	h := a.srv.RESTHandler()
	target := &url.URL{Path: "/v1/datasets/market.business_licences:query"}
	header := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer t-approval"}}
	want := []byte(`"delivery":"DELIVERY_CACHE"`)

	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	reportCPU := testenv.CPUPerOp(b)
	b.RunParallel(func(pb *testing.PB) {
		w := &answerWriter{header: http.Header{}}
		var body bytes.Reader
		for i := 0; pb.Next(); i++ {
			q := bodies[i%len(bodies)]
			body.Reset(q)
			r := &http.Request{
				Method: http.MethodPost, URL: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: header, Body: io.NopCloser(&body), ContentLength: int64(len(q)),
				Host: "127.0.0.1", RemoteAddr: "127.0.0.1:40000", RequestURI: target.Path,
			}
			w.reset()
			h.ServeHTTP(w, r)
			if w.code != http.StatusOK || !bytes.Contains(w.body.Bytes(), want) {
				b.Errorf("answer %d: %s", w.code, w.body.Bytes())
				return
			}
		}
	})
	b.StopTimer()
	reportCPU()
}

// answerWriter is an http.ResponseWriter that keeps the answer for a check
// and is reused across requests.
type answerWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *answerWriter) reset() {
	clear(w.header)
	w.code = 0
	w.body.Reset()
}

func (w *answerWriter) Header() http.Header { return w.header }

func (w *answerWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *answerWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}
