package simulate

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Faults configures the faults a simulated department injects.
type Faults struct {
	// Latency is added to every request.
	Latency time.Duration `yaml:"latency"`
	// Jitter is the upper bound of a uniformly random extra delay.
	Jitter time.Duration `yaml:"jitter"`
	// FailureRate is the share of requests, 0 to 1, answered with 503.
	FailureRate float64 `yaml:"failure_rate"`
}

// Control is the fault injection and request counting shared by the three
// simulated departments. Its methods are safe for concurrent use while the
// department serves requests.
type Control struct {
	latency  atomic.Int64 // nanoseconds
	jitter   atomic.Int64 // nanoseconds
	failure  atomic.Uint64
	down     atomic.Bool
	requests atomic.Int64
	failed   atomic.Int64

	mu  sync.Mutex // guards rng
	rng *rand.Rand
}

func newControl(seed uint64, f Faults) *Control {
	c := &Control{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	c.SetLatency(f.Latency, f.Jitter)
	c.SetFailureRate(f.FailureRate)
	return c
}

// SetLatency sets the fixed delay and the maximum random extra delay added
// to every request.
func (c *Control) SetLatency(fixed, jitter time.Duration) {
	c.latency.Store(int64(max(fixed, 0)))
	c.jitter.Store(int64(max(jitter, 0)))
}

// SetFailureRate sets the share of requests (clamped to 0..1) that are
// answered with 503 Service Unavailable.
func (c *Control) SetFailureRate(rate float64) {
	if math.IsNaN(rate) {
		rate = 0
	}
	c.failure.Store(math.Float64bits(min(max(rate, 0), 1)))
}

// SetDown switches the department off (every request gets 503) or back on.
func (c *Control) SetDown(down bool) { c.down.Store(down) }

// Down reports whether the department is switched off.
func (c *Control) Down() bool { return c.down.Load() }

// Requests returns the number of requests received, including those
// answered with an injected failure.
func (c *Control) Requests() int64 { return c.requests.Load() }

// Failures returns the number of requests answered with an injected 503.
func (c *Control) Failures() int64 { return c.failed.Load() }

// ResetRequests sets the request and failure counters to zero.
func (c *Control) ResetRequests() {
	c.requests.Store(0)
	c.failed.Store(0)
}

// delay returns the delay of one request and whether it fails.
func (c *Control) draw() (time.Duration, bool) {
	d := time.Duration(c.latency.Load())
	j := c.jitter.Load()
	rate := math.Float64frombits(c.failure.Load())
	c.mu.Lock()
	defer c.mu.Unlock()
	if j > 0 {
		d += time.Duration(c.rng.Int64N(j))
	}
	fail := rate > 0 && c.rng.Float64() < rate
	return d, fail
}

// wrap applies the faults before next serves a request.
func (c *Control) wrap(department string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		d, fail := c.draw()
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case c.down.Load():
			c.failed.Add(1)
			unavailable(w, department+" is down for maintenance")
			return
		case fail:
			c.failed.Add(1)
			unavailable(w, department+" is temporarily unavailable")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unavailable(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", msg)
}

// errorBody is the error shape of the REST departments.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, "application/json; charset=utf-8", b)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
