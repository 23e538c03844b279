package benchsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Worker processes, compared with limit/socket-stream. The code the workers
// run is registered here at package level, so that the ferry binary, which
// calls proc.Main first, can serve it.
func init() {
	Register(Benchmark{Name: "proc/iterate-small", Run: iterateSmall})
	Register(Benchmark{Name: "proc/iterate-1MiB", Limit: "limit/socket-stream", Run: iterateBlobs(1 << 20)})
	Register(Benchmark{Name: "proc/iterate-8MiB", Limit: "limit/socket-stream", Run: iterateBlobs(8 << 20)})
	Register(Benchmark{Name: "proc/start-first-item", Limit: "limit/process-start", Run: startFirstItem})
	Register(Benchmark{Name: "proc/epoch-gap", Run: epochGap})
	Register(Benchmark{Name: "proc/pipeline-trivial", Run: pipelineTrivial})
	Register(Benchmark{Name: "proc/pool-call-small", Run: poolCallSmall})
}

// benchCount yields the integers 0 … n-1, every pass.
var benchCount = proc.Iter("bench.count", func(ctx context.Context, n int) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range n {
			if !yield(i, nil) {
				return
			}
		}
	}
})

// blobArgs describes the items of bench.blobs.
type blobArgs struct {
	Size  int // bytes per item
	Count int // items per pass
}

// benchBlobs yields Count items of Size bytes every pass, all the same
// buffer, filled once: the figure is the cost of moving bytes, not of
// making them.
var benchBlobs = proc.Iter("bench.blobs", func(ctx context.Context, a blobArgs) iter.Seq2[[]byte, error] {
	buf := make([]byte, a.Size)
	for i := range buf {
		buf[i] = byte(i)
	}
	return func(yield func([]byte, error) bool) {
		for range a.Count {
			if !yield(buf, nil) {
				return
			}
		}
	}
})

// benchIdentity is a pipeline of one identity stage over 0 … n-1, kept
// warm across epochs.
var benchIdentity = proc.Pipeline("bench.identity", func(n int) (*pipeline.Config[int], error) {
	src := pipeline.FromSeq(func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	})
	return pipeline.Sink(pipeline.Pipe(src, identity), 256).With(pipeline.Continuous()), nil
})

// benchInc returns its argument plus one.
var benchInc = proc.Func("bench.inc", func(_ context.Context, v int) (int, error) { return v + 1, nil })

// smallPass is the number of items in one pass of proc/iterate-small and
// one epoch of proc/pipeline-trivial: Rate counts passes, each long enough
// that the gap between two passes does not weigh on the figure.
const smallPass = 1 << 16

// iterateSmall measures items/s of ints streamed out of one worker process
// by proc.Iterate, with the default buffer size.
func iterateSmall(ctx context.Context, cfg Config) (Result, error) {
	it, err := proc.Iterate(ctx, benchCount, smallPass)
	if err != nil {
		return Result{}, err
	}
	defer it.Close()
	rate, runs, err := Rate(ctx, cfg, func(passes int) error {
		for range passes {
			if err := drainInts(ctx, it, smallPass); err != nil {
				return err
			}
		}
		return nil
	})
	return Result{ItemsPerSec: rate * smallPass, Runs: runs.N, Spread: runs.Spread}, err
}

// drainInts runs one pass of it and checks that it yields 0 … n-1.
func drainInts(ctx context.Context, it *proc.Iterable[int], n int) error {
	want := 0
	for v, err := range it.All(ctx) {
		if err != nil {
			return err
		}
		if v != want {
			return fmt.Errorf("item %d is %d", want, v)
		}
		want++
	}
	if want != n {
		return fmt.Errorf("received %d items, want %d", want, n)
	}
	return nil
}

// blobPassBytes is about how many bytes one pass of proc/iterate-1MiB or
// proc/iterate-8MiB moves.
const blobPassBytes = 64 << 20

// iterateBlobs measures bytes/s of []byte items of the given size streamed
// out of one worker process by proc.Iterate with the plain codec, and the
// CPU time spent per gigabyte by both processes together.
func iterateBlobs(size int) func(context.Context, Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		count := max(1, blobPassBytes/size)
		it, err := proc.Iterate(ctx, benchBlobs, blobArgs{Size: size, Count: count})
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
				for b, err := range it.All(ctx) {
					if err != nil {
						return err
					}
					if len(b) != size || b[size-1] != byte(size-1) {
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
		// The last runs calls of the body are the timed ones; the first
		// ones calibrated.
		return Result{BytesPerSec: rate * passBytes, CPUSecPerGB: Median(cpuPerGB[len(cpuPerGB)-runs.N:]), Runs: runs.N, Spread: runs.Spread}, nil
	}
}

// cpuWithWorker returns the CPU time used so far by this process and by the
// worker process pid together.
func cpuWithWorker(pid int) (time.Duration, error) {
	w, err := processCPU(pid)
	if err != nil {
		return 0, err
	}
	return CPUTime() + w, nil
}

// clockTick is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// processCPU returns the CPU time (user plus system, every thread) process
// pid has used so far, from /proc/<pid>/stat, with a resolution of one
// clock tick.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading the worker's CPU time: %w", err)
	}
	// The command name, in parentheses, may contain spaces: the fields
	// counted from 1 in proc(5) start after its closing parenthesis, at
	// field 3 (state); utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc/<pid>/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// startFirstItem measures the time from calling proc.Iterate to receiving
// the first item, each repetition with a new worker process, closed after.
func startFirstItem(ctx context.Context, cfg Config) (Result, error) {
	ns, runs, err := Repeat(cfg, func() (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		it, err := proc.Iterate(ctx, benchCount, 1)
		if err != nil {
			return 0, err
		}
		defer it.Close()
		for _, err := range it.All(ctx) {
			if err != nil {
				return 0, err
			}
			return float64(time.Since(start)), nil
		}
		return 0, errors.New("the pass yielded no item")
	})
	return Result{Ns: ns, Runs: runs.N, Spread: runs.Spread}, err
}

// epochGap measures, in one worker process, the time from the end of a pass
// (the worker's IterFinished received) to the first item of the next pass:
// each repetition is the median over many passes.
func epochGap(ctx context.Context, cfg Config) (Result, error) {
	const items = 16
	it, err := proc.Iterate(ctx, benchCount, items)
	if err != nil {
		return Result{}, err
	}
	defer it.Close()
	passes := 500
	if cfg.Quick {
		passes = 100
	}
	ns, runs, err := Repeat(cfg, func() (float64, error) {
		gaps := make([]float64, 0, passes)
		var end time.Time
		for range passes + 1 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n := 0
			for _, err := range it.All(ctx) {
				if err != nil {
					return 0, err
				}
				if n == 0 && !end.IsZero() {
					gaps = append(gaps, float64(time.Since(end)))
				}
				n++
			}
			end = time.Now()
			if n != items {
				return 0, fmt.Errorf("received %d items, want %d", n, items)
			}
		}
		return Median(gaps), nil
	})
	return Result{Ns: ns, Runs: runs.N, Spread: runs.Spread}, err
}

// pipelineTrivial measures items/s out of proc.RunPipeline running a
// pipeline of one identity stage, kept warm across epochs.
func pipelineTrivial(ctx context.Context, cfg Config) (Result, error) {
	it, err := proc.RunPipeline(ctx, benchIdentity, smallPass)
	if err != nil {
		return Result{}, err
	}
	defer it.Close()
	rate, runs, err := Rate(ctx, cfg, func(epochs int) error {
		for range epochs {
			if err := drainInts(ctx, it, smallPass); err != nil {
				return err
			}
		}
		return nil
	})
	return Result{ItemsPerSec: rate * smallPass, Runs: runs.N, Spread: runs.Spread}, err
}

// The worker processes of proc/pool-call-small, the calls queued on each
// (enough to cover a round trip between the processes at this rate) and
// the goroutines calling.
const (
	poolWorkers  = 2
	poolInFlight = 64
	poolCallers  = 256
)

// poolCallSmall measures calls/s of Pool.Call with an int in and out, on a
// pool of 2 worker processes, from many goroutines at once.
func poolCallSmall(ctx context.Context, cfg Config) (Result, error) {
	pool, err := proc.NewPool(ctx, benchInc, proc.Workers(poolWorkers), proc.InFlight(poolInFlight))
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		return callConcurrently(n, poolCallers, func(i int) error {
			out, err := pool.Call(ctx, i)
			if err == nil && out != i+1 {
				err = fmt.Errorf("call %d returned %d", i, out)
			}
			return err
		})
	})
	return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, err
}

// callConcurrently runs call(0) … call(n-1) from up to callers goroutines
// and returns the first error, after which no new call starts.
func callConcurrently(n, callers int, call func(i int) error) error {
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		next    atomic.Int64
	)
	for range min(n, callers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := call(i); err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
