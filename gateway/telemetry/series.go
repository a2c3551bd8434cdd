package telemetry

import "sync"

// Series keeps the metric of each label combination a hot path uses, so
// that it looks the labels up in a prometheus vector only the first time:
// WithLabelValues hashes every value and takes a lock on each call. The
// key must come from a bounded set of values (never caller input as is),
// since every key seen is kept.
type Series[K comparable, M any] struct {
	// New makes the metric of a key seen for the first time, typically
	// with the vector's WithLabelValues. Goroutines meeting a new key at
	// once may each call it: it must give the same metric every time.
	New func(K) M
	m   sync.Map // K → M
}

// Get returns the metric of k.
func (s *Series[K, M]) Get(k K) M {
	if v, ok := s.m.Load(k); ok {
		return v.(M)
	}
	v, _ := s.m.LoadOrStore(k, s.New(k))
	return v.(M)
}
