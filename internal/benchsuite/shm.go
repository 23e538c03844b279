package benchsuite

import (
	"context"
	"fmt"
	"iter"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Items moved out of a worker process through a shared-memory arena
// (proc.IterateShared), compared with limit/memcpy-8MiB in the same run.
func init() {
	Register(Benchmark{Name: "shm/iterate-1MiB-copy", Limit: "limit/memcpy-8MiB", Run: iterateShm(1<<20, false)})
	Register(Benchmark{Name: "shm/iterate-8MiB-copy", Limit: "limit/memcpy-8MiB", Run: iterateShm(8<<20, false)})
	Register(Benchmark{Name: "shm/iterate-8MiB-alloc", Run: iterateShm(8<<20, true)})
}

// shmSegments is the arena's segment count and the iterable's buffer: the
// consumer releases each view at once, so a few segments keep both
// processes busy.
const shmSegments = 8

// benchShmAlloc yields Count items of Size bytes written in place in the
// worker's arena: only a marker at each end is written, so the figure is
// the cost of handing segments over, not of filling them.
var benchShmAlloc = proc.Iter("bench.shm-alloc", func(ctx context.Context, a blobArgs) iter.Seq2[proc.Shared, error] {
	return func(yield func(proc.Shared, error) bool) {
		pool := proc.WorkerArena()
		for range a.Count {
			var s proc.Shared
			lease, err := pool.Acquire(ctx)
			if err == nil {
				b := lease.Bytes()[:a.Size]
				b[0], b[a.Size-1] = 1, byte(a.Size-1)
				s.Ref, err = lease.Publish(a.Size)
				lease.Abandon()
			}
			if !yield(s, err) {
				return
			}
		}
	}
})

// shmSource is the buffer bench.shm-copy copies from, made once per size
// for the worker's life (bench.blobs makes its buffer every pass, which
// would weigh on these figures).
var shmSource = map[int][]byte{}

// benchShmCopy yields Count items of Size bytes every pass, all the same
// buffer, filled once per worker: the worker copies each into the arena.
var benchShmCopy = proc.Iter("bench.shm-copy", func(ctx context.Context, a blobArgs) iter.Seq2[[]byte, error] {
	buf, ok := shmSource[a.Size] // passes never overlap
	if !ok {
		buf = make([]byte, a.Size)
		for i := range buf {
			buf[i] = byte(i)
		}
		shmSource[a.Size] = buf
	}
	return func(yield func([]byte, error) bool) {
		for range a.Count {
			if !yield(buf, nil) {
				return
			}
		}
	}
})

// iterateShm measures bytes/s (and items/s) of items of the given size
// streamed out of one worker process through a shared-memory arena: copied
// in by the worker from an existing buffer (bench.shm-copy, one memcpy), or
// written in place (alloc). The consumer checks and releases each view at
// once. CPU time per gigabyte counts both processes.
func iterateShm(size int, alloc bool) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		count := max(1, blobPassBytes/size)
		pool, err := shm.NewSegmentPool(size, shmSegments, shm.Name("ferry-bench"))
		if err != nil {
			return Result{}, err
		}
		defer pool.Close()
		opts := []proc.IterateOption{proc.Arena(pool), proc.BufferSize(shmSegments)}
		var it *proc.Iterable[*shm.View]
		if alloc {
			it, err = proc.IterateShared(ctx, benchShmAlloc, blobArgs{Size: size, Count: count}, opts...)
		} else {
			it, err = proc.IterateShared(ctx, benchShmCopy, blobArgs{Size: size, Count: count}, opts...)
		}
		if err != nil {
			return Result{}, err
		}
		defer it.Close()
		passBytes := float64(size * count)
		var cpuPerGB []float64
		rate, runs, err := Rate(ctx, cfg, func(passes int) error {
			cpu0, err := cpuWithWorker(it.PID())
			if err != nil {
				return err
			}
			for range passes {
				got := 0
				for v, err := range it.All(ctx) {
					if err != nil {
						return err
					}
					b := v.Bytes()
					ok := len(b) == size && b[size-1] == byte(size-1)
					v.Release()
					if !ok {
						return fmt.Errorf("item %d has %d bytes, want %d of the pattern", got, len(b), size)
					}
					got++
				}
				if got != count {
					return fmt.Errorf("received %d items, want %d", got, count)
				}
			}
			cpu1, err := cpuWithWorker(it.PID())
			if err != nil {
				return err
			}
			cpuPerGB = append(cpuPerGB, (cpu1-cpu0).Seconds()/(passBytes*float64(passes)/1e9))
			return nil
		})
		if err != nil {
			return Result{}, err
		}
		r := Result{BytesPerSec: rate * passBytes, CPUSecPerGB: Median(cpuPerGB[len(cpuPerGB)-runs.N:]), Runs: runs.N, Spread: runs.Spread}
		if alloc {
			// Nothing was copied: the bytes/s is items/s times the size.
			r.ItemsPerSec = rate * float64(count)
			r.BytesImplied = true
		}
		return r, nil
	}
}

// Pool round trips of 8 MiB in and 8 MiB out, through the arena and,
// for comparison, through the socket.
func init() {
	Register(Benchmark{Name: "shm/pool-call-8MiB", Limit: "limit/memcpy-8MiB", Run: poolCallBig(8<<20, true)})
	Register(Benchmark{Name: "proc/pool-call-8MiB", Limit: "limit/socket-stream", Run: poolCallBig(8<<20, false)})
}

// benchEcho returns its input: the output is as large as the input.
var benchEcho = proc.Func("bench.echo", func(ctx context.Context, b []byte) ([]byte, error) { return b, nil })

// poolCallBig measures round trips/s of Pool.Call with size bytes in and
// out, on a pool of 2 workers called by 4 goroutines; BytesPerSec counts
// the payload once per call. With the arena, each direction is a memcpy
// into a segment and one out of it.
func poolCallBig(size int, arena bool) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		const workers, callers = 2, 4
		opts := []proc.PoolOption{proc.Workers(workers)}
		if arena {
			// Inputs and outputs of every call in flight, and a spare.
			pool, err := shm.NewSegmentPool(size, 2*callers+2, shm.Name("ferry-bench"))
			if err != nil {
				return Result{}, err
			}
			defer pool.Close()
			opts = append(opts, proc.Arena(pool))
		}
		pool, err := proc.NewPool(ctx, benchEcho, opts...)
		if err != nil {
			return Result{}, err
		}
		defer pool.Close()
		in := make([]byte, size)
		for i := range in {
			in[i] = byte(i)
		}
		rate, runs, err := Rate(ctx, cfg, func(n int) error {
			return callConcurrently(n, callers, func(int) error {
				out, err := pool.Call(ctx, in)
				if err == nil && (len(out) != size || out[size-1] != in[size-1]) {
					err = fmt.Errorf("a call returned %d bytes, want %d of the pattern", len(out), size)
				}
				return err
			})
		})
		return Result{ItemsPerSec: rate, BytesPerSec: rate * float64(size), Runs: runs.N, Spread: runs.Spread}, err
	}
}
