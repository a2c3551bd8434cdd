package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of bits of precision kept below the leading one
// bit of a recorded value: 2^subBits buckets per power of two, so a
// bucket's width is at most 1/128 (0.78%) of the values it holds.
const subBits = 7

const subCount = 1 << subBits

// Histogram records latencies in log-linear buckets, as HdrHistogram does:
// values below 128 ns are exact, larger ones keep 7 significant bits.
// Memory is fixed (64 KiB) whatever the number of values. A Histogram is
// not safe for concurrent use; give each worker its own and Merge them.
type Histogram struct {
	counts   [(64 - subBits + 1) * subCount]uint64
	n        uint64
	min, max int64
	sum      float64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{min: math.MaxInt64} }

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - 1 // position of the leading one, >= subBits
	shift := e - subBits
	return subCount + shift*subCount + int(v>>shift) - subCount
}

// bucketHigh returns the largest value that falls into bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := (i - subCount) / subCount
	top := uint64(i-subCount)%subCount + subCount
	return (top+1)<<shift - 1
}

// Record adds one latency. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// Merge adds the values of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (0 when empty).
func (h *Histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.max)
}

// Mean is the arithmetic mean of the recorded values (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// recorded value v such that at least q of all values are <= v, reported
// as the upper end of v's bucket (so never below the exact value, and at
// most 0.78% above it), capped at the largest value recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := nearestRank(q, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), uint64(h.max)))
		}
	}
	return time.Duration(h.max)
}

// nearestRank returns the 1-based rank of the q-quantile among n values:
// ceil(q*n), at least 1 and at most n.
func nearestRank(q float64, n uint64) uint64 {
	r := uint64(math.Ceil(q * float64(n)))
	// q*n may land a hair above an integer through rounding (0.999*1000).
	if f := q * float64(n); r > 1 && math.Abs(f-float64(r-1)) < 1e-9*f {
		r--
	}
	return min(max(r, 1), n)
}
