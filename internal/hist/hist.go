// Package hist is a lock-free histogram of durations, for stats.
package hist

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram is a lock-free log-linear histogram of durations: 8 buckets per
// power of two, so a percentile is exact to within 12.5 %.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Int64
	sum     atomic.Int64
}

const histBuckets = 62 * 8

func histIndex(v uint64) int {
	if v < 8 {
		return int(v)
	}
	exp := bits.Len64(v) - 1
	return (exp-2)*8 + int((v>>(exp-3))&7)
}

// histValue returns the middle of bucket i.
func histValue(i int) uint64 {
	if i < 8 {
		return uint64(i)
	}
	exp := i/8 + 2
	width := uint64(1) << (exp - 3)
	return (8+uint64(i%8))*width + width/2
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.buckets[histIndex(v)].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(v))
}

// Mean returns the mean of the recorded durations.
func (h *Histogram) Mean() time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the recorded durations.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [histBuckets]uint64
	var total uint64
	for i := range counts {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(histValue(i))
		}
	}
	return time.Duration(histValue(histBuckets - 1))
}
