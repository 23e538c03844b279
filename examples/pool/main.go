// Command pool runs a pipeline stage in a pool of worker processes with
// proc.NewPool: the stage is pool.Call, so the pipeline does not change.
// One job hangs, as code stuck in a C library would; the per-call timeout
// kills its worker, starts a fresh one, and the pool carries on.
//
//	go run ./examples/pool
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Job is one unit of work.
type Job struct {
	ID   int
	Hang bool // never finish, like a call stuck in C code
}

// Hash stands for a risky, CPU-heavy stage: it runs in worker processes.
// It is registered at package level, so that worker processes (this same
// program, re-executed) find it by name.
var Hash = proc.Func("examples.hash", func(_ context.Context, j Job) (string, error) {
	if j.Hang {
		select {} // no context, no return: only killing the process stops this
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "job %d", j.ID))
	for range 2000 {
		sum = sha256.Sum256(sum[:])
	}
	return hex.EncodeToString(sum[:8]), nil
})

func main() {
	proc.Main()  // a worker process runs Hash here and never returns
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	if err := run(context.Background()); err != nil {
		logs.Fatal(err)
	}
}

func run(ctx context.Context) error {
	pool, err := proc.NewPool(ctx, Hash,
		proc.Workers(2),
		proc.CallTimeout(500*time.Millisecond),
		// A call that fails, times out or is lost with a worker that is
		// killed runs once more, on another worker (hashing is safe to
		// repeat); the job that hangs hangs again, and times out twice.
		proc.Retries(1))
	if err != nil {
		return err
	}
	defer pool.Close()
	fmt.Printf("started %d workers: pids %v\n", len(pool.Stats().Workers), pids(pool))

	// 200 jobs through the pool; job 120 hangs. The pipeline tolerates
	// one failed item.
	jobs := make([]Job, 200)
	for i := range jobs {
		jobs[i] = Job{ID: i, Hang: i == 120}
	}
	hashed := pipeline.Pipe(pipeline.FromSlice(jobs), pool.Call, pipeline.Name("hash"), pipeline.Concurrency(4))
	p, err := pipeline.Build(pipeline.Sink(hashed, 16),
		pipeline.MaxFailures(pipeline.Count(1)))
	if err != nil {
		return err
	}
	defer p.Close()
	n := 0
	for _, err := range p.Epoch(ctx) {
		if err != nil {
			return err
		}
		n++
	}
	st := pool.Stats()
	fmt.Printf("pipeline: %d of %d jobs hashed; %d timed out\n", n, len(jobs), st.Timeouts)
	fmt.Printf("pool: %d restarts, %d calls retried; workers now %v and %d starting\n", st.Restarts, st.Retries, pids(pool), st.Starting)

	// The same, called directly: the error says what happened.
	_, err = pool.Call(ctx, Job{ID: 1000, Hang: true})
	var te *proc.TimeoutError
	if !errors.As(err, &te) {
		return fmt.Errorf("want a timeout, got %v", err)
	}
	fmt.Printf("direct call: %v\n", err)
	sum, err := pool.Call(ctx, Job{ID: 1001})
	if err != nil {
		return err
	}
	st = pool.Stats()
	fmt.Printf("next call: %s\n%v\n", sum, st)
	// Two calls hung, each tried twice: four timeouts, four workers replaced.
	if n != len(jobs)-1 || st.Timeouts != 4 || st.Restarts != 4 {
		return fmt.Errorf("unexpected outcome: %v", st)
	}
	return nil
}

// pids lists the pool's worker processes.
func pids[In, Out any](pool *proc.Pool[In, Out]) []int {
	var out []int
	for _, w := range pool.Stats().Workers {
		out = append(out, w.PID)
	}
	return out
}
