package telemetry

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSeries(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_total", Help: "t"}, []string{"a", "b"})
	type key struct{ a, b string }
	made := 0
	var mu sync.Mutex
	s := Series[key, prometheus.Counter]{New: func(k key) prometheus.Counter {
		mu.Lock()
		made++
		mu.Unlock()
		return vec.WithLabelValues(k.a, k.b)
	}}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				s.Get(key{"x", []string{"p", "q"}[(i+j)%2]}).Inc()
			}
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(vec.WithLabelValues("x", "p")) + testutil.ToFloat64(vec.WithLabelValues("x", "q")); got != 800 {
		t.Fatalf("counted %v, want 800", got)
	}
	if n := testutil.CollectAndCount(vec); n != 2 {
		t.Fatalf("%d series, want 2", n)
	}
	if made < 2 {
		t.Fatalf("New called %d times, want at least once per key", made)
	}
	before := made
	s.Get(key{"x", "p"})
	if made != before {
		t.Fatal("New called again for a key already seen")
	}
}
