//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// BenchmarkIterateSmall streams ints out of a worker with the default
// buffer size.
func BenchmarkIterateSmall(b *testing.B) { benchIterateSmall(b) }

// BenchmarkIterateSmallBuffer shows what larger buffers buy.
func BenchmarkIterateSmallBuffer(b *testing.B) {
	for _, n := range []int{256, 1024} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchIterateSmall(b, proc.BufferSize(n)) })
	}
}

func benchIterateSmall(b *testing.B, opts ...proc.IterateOption) {
	it, err := proc.Iterate(b.Context(), count, b.N, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	b.ResetTimer()
	n := 0
	for _, err := range it.All(b.Context()) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != b.N {
		b.Fatalf("%d items, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

var spinCount = proc.Iter("test.spin-count", func(ctx context.Context, n int) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range n {
			spin(2 * time.Microsecond)
			if !yield(i, nil) {
				return
			}
		}
	}
})

// spin keeps the CPU busy for d.
func spin(d time.Duration) {
	for t := time.Now(); time.Since(t) < d; {
	}
}

// BenchmarkIterateSlow has both sides spend 2 µs per item: the worker must
// produce while the consumer consumes, which depends on when credits are
// given back.
func BenchmarkIterateSlow(b *testing.B) {
	it, err := proc.Iterate(b.Context(), spinCount, b.N)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	b.ResetTimer()
	for _, err := range it.All(b.Context()) {
		if err != nil {
			b.Fatal(err)
		}
		spin(2 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// blobs yields one buffer of size bytes again and again; with an arena
// the worker copies each into a segment.
var blobs = proc.Iter("test.blobs", func(ctx context.Context, size int) iter.Seq2[[]byte, error] {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	return func(yield func([]byte, error) bool) {
		for {
			if !yield(buf, nil) {
				return
			}
		}
	}
})

// BenchmarkIterateBlobs streams large []byte items, one buffer yielded
// again and again.
func BenchmarkIterateBlobs(b *testing.B) {
	for _, size := range []int{1 << 20, 8 << 20} {
		b.Run(fmt.Sprint(size>>20, "MiB"), func(b *testing.B) {
			it, err := proc.Iterate(b.Context(), blobs, size)
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			b.SetBytes(int64(size))
			b.ResetTimer()
			n := 0
			for v, err := range it.All(b.Context()) {
				if err != nil {
					b.Fatal(err)
				}
				if len(v) != size {
					b.Fatalf("%d bytes, want %d", len(v), size)
				}
				if n++; n == b.N {
					break
				}
			}
		})
	}
}

// BenchmarkEpochGap measures the time from the end of a pass to the first
// item of the next.
func BenchmarkEpochGap(b *testing.B) {
	it, err := proc.Iterate(b.Context(), count, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	b.ResetTimer()
	for range b.N {
		for _, err := range it.All(b.Context()) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkIterateShared is shm/iterate-1MiB-copy and -8MiB-copy of ferry
// bench (8 segments, a buffer of 8): the worker copies each item into the
// arena, the consumer views and releases it. Run it under perf record (the
// worker is a child of the test binary) to profile both processes.
func BenchmarkIterateShared(b *testing.B) {
	for _, size := range []int{1 << 20, 8 << 20} {
		b.Run(fmt.Sprint(size>>20, "MiB"), func(b *testing.B) {
			pool, err := shm.NewSegmentPool(size, 8)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			it, err := proc.IterateShared(b.Context(), blobs, size, proc.Arena(pool), proc.BufferSize(8))
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			b.SetBytes(int64(size))
			b.ResetTimer()
			n := 0
			for v, err := range it.All(b.Context()) {
				if err != nil {
					b.Fatal(err)
				}
				if v.Len() != size {
					b.Fatalf("%d bytes, want %d", v.Len(), size)
				}
				v.Release()
				if n++; n == b.N {
					break
				}
			}
		})
	}
}
