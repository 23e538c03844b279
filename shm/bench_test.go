//go:build linux && !ferrynolinux

package shm_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/shm"
)

const benchSize = 8 << 20

func benchSource() []byte {
	src := make([]byte, benchSize)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	return src
}

// copyInCycle moves src through the pool as a producer and a consumer in
// two mappings would: one copy in, zero copies out.
func copyInCycle(b *testing.B, prod, cons *shm.SegmentPool, src []byte) {
	l, err := prod.Acquire(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if err := l.CopyIn(src); err != nil {
		b.Fatal(err)
	}
	ref, err := l.Publish(len(src))
	if err != nil {
		b.Fatal(err)
	}
	v, err := cons.View(ref)
	if err != nil {
		b.Fatal(err)
	}
	v.Release()
}

// BenchmarkCopyIn8MiB compares moving 8 MiB through the pool with CopyIn
// (acquire, copy in, publish, view, release) to a plain copy() of 8 MiB
// between two heap buffers, in the same run. The target is ≥ 90 % of
// memcpy. The interleaved variant alternates both and reports the ratio.
func BenchmarkCopyIn8MiB(b *testing.B) {
	src := benchSource()
	b.Run("memcpy", func(b *testing.B) {
		dst := make([]byte, benchSize)
		copy(dst, src) // fault the pages in
		b.SetBytes(benchSize)
		for b.Loop() {
			copy(dst, src)
		}
	})
	b.Run("CopyIn", func(b *testing.B) {
		prod := newPool(b, benchSize, 4)
		cons := openPool(b, prod)
		copyInCycle(b, prod, cons, src) // fault the segment in
		b.SetBytes(benchSize)
		for b.Loop() {
			copyInCycle(b, prod, cons, src)
		}
	})
	b.Run("interleaved", func(b *testing.B) {
		prod := newPool(b, benchSize, 4)
		cons := openPool(b, prod)
		dst := make([]byte, benchSize)
		copy(dst, src)
		copyInCycle(b, prod, cons, src)
		var memcpy, shmcopy time.Duration
		for b.Loop() {
			t0 := time.Now()
			copy(dst, src)
			t1 := time.Now()
			copyInCycle(b, prod, cons, src)
			t2 := time.Now()
			memcpy += t1.Sub(t0)
			shmcopy += t2.Sub(t1)
		}
		gbps := func(d time.Duration) float64 { return float64(b.N) * benchSize / d.Seconds() / 1e9 }
		b.ReportMetric(gbps(memcpy), "memcpy-GB/s")
		b.ReportMetric(gbps(shmcopy), "CopyIn-GB/s")
		b.ReportMetric(memcpy.Seconds()/shmcopy.Seconds(), "CopyIn/memcpy")
	})
}

// BenchmarkCycle is the fixed cost of moving one item through the pool:
// acquire, publish, view, release, across two mappings, no payload.
func BenchmarkCycle(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		prod := newPool(b, 4096, 4)
		cons := openPool(b, prod)
		b.ReportAllocs()
		for b.Loop() {
			copyInCycle(b, prod, cons, nil)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		prod := newPool(b, 4096, 64, shm.AcquireTimeout(-1))
		cons := openPool(b, prod)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				copyInCycle(b, prod, cons, nil)
			}
		})
	})
	b.Run("wire", func(b *testing.B) {
		// The Ref's trip through a message: encode and parse.
		ref := shm.Ref{Pool: 1, Segment: 3, Gen: 9, Len: 602112, DType: shm.Float32, Shape: []int{3, 224, 224}}
		buf := make([]byte, 0, 64)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := shm.ParseRef(ref.Append(buf[:0])); err != nil {
				b.Fatal(err)
			}
		}
	})
}
