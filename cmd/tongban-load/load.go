package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// op performs one operation: one HTTP request, one policy decision, one
// audit append. seq numbers the operations of a run from 0.
type op func(ctx context.Context, seq uint64) error

// loadSpec bounds one run: by a request count when Requests > 0, else by
// Duration.
type loadSpec struct {
	Connections int
	Duration    time.Duration
	Requests    uint64
	// MaxErrors stops the run early once this many operations failed.
	MaxErrors uint64
}

// loadResult is what a run measured.
type loadResult struct {
	Requests   uint64
	Errors     uint64
	FirstError string
	Elapsed    time.Duration
	Hist       *Histogram
}

// runLoad runs op from spec.Connections goroutines in a closed loop (each
// goroutine issues its next operation when the previous one answered)
// until the count or the duration is reached, and records the latency of
// every successful operation. The goroutines carry the pprof label
// side=client so that a CPU profile of an in-process gateway can leave
// the load generator out (pprof -tagignore side=client).
func runLoad(ctx context.Context, spec loadSpec, fn op) loadResult {
	if spec.Connections < 1 {
		spec.Connections = 1
	}
	if spec.MaxErrors == 0 {
		spec.MaxErrors = 100
	}
	var (
		next, errs atomic.Uint64
		stop       atomic.Bool
		once       sync.Once
		first      string
		wg         sync.WaitGroup
	)
	hists := make([]*Histogram, spec.Connections)
	start := time.Now()
	deadline := start.Add(spec.Duration)
	for w := range spec.Connections {
		h := NewHistogram()
		hists[w] = h
		wg.Add(1)
		go pprof.Do(ctx, pprof.Labels("side", "client"), func(ctx context.Context) {
			defer wg.Done()
			for !stop.Load() && ctx.Err() == nil {
				seq := next.Add(1) - 1
				if spec.Requests > 0 && seq >= spec.Requests {
					return
				}
				t0 := time.Now()
				if spec.Requests == 0 && !t0.Before(deadline) {
					return
				}
				err := fn(ctx, seq)
				d := time.Since(t0)
				if err != nil {
					once.Do(func() { first = err.Error() })
					if errs.Add(1) >= spec.MaxErrors {
						stop.Store(true)
					}
					continue
				}
				h.Record(d)
			}
		})
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Errors: errs.Load(), FirstError: first, Hist: NewHistogram()}
	for _, h := range hists {
		res.Hist.Merge(h)
	}
	res.Requests = res.Hist.Count() + res.Errors
	return res
}

// newTransport returns the HTTP/1.1 keep-alive transport every HTTP
// scenario shares, sized so that conns connections stay open.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// httpTarget posts JSON bodies to one URL with a bearer token.
type httpTarget struct {
	client *http.Client
	url    string
	token  string
}

// statusError is an answer that was not what the scenario expects.
type statusError struct {
	Status int
	Body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// post sends body and returns the answer's body, or an error for any
// status but 200 (the error carries the start of the body).
func (t *httpTarget) post(ctx context.Context, body []byte, buf *bytes.Buffer) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if t.token != "" {
		req.Header.Set("Authorization", "Bearer "+t.token)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", t.url, err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 16<<20)); err != nil {
		return nil, fmt.Errorf("reading the answer of POST %s: %w", t.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{Status: resp.StatusCode, Body: truncate(buf.String(), 500)}
	}
	return buf.Bytes(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// bufPool holds response buffers of the HTTP scenarios.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// postCheck returns an op that posts bodyOf(seq) and checks the answer
// with check (nil: any 200 answer is right).
func (t *httpTarget) postCheck(bodyOf func(seq uint64) []byte, check func(answer []byte) error) op {
	return func(ctx context.Context, seq uint64) error {
		buf := bufPool.Get().(*bytes.Buffer)
		defer bufPool.Put(buf)
		b, err := t.post(ctx, bodyOf(seq), buf)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(b); err != nil {
				return fmt.Errorf("%w in %s", err, truncate(string(b), 500))
			}
		}
		return nil
	}
}
