package batch

import (
	"context"
	"fmt"
)

// Sequential is the backend that runs every index in one goroutine, one
// after the other: the reference behaviour, and the easiest to debug.
func Sequential() Backend { return localBackend{n: 0} }

// Goroutines is the backend that runs indices in n goroutines of this
// process (n < 1 means 1). A panic fails its index; a timeout can only
// cancel the index's context (see Timeout): code that may hang or crash
// the process belongs in Processes.
func Goroutines(n int) Backend { return localBackend{n: max(n, 1)} }

// localBackend runs tasks in this process; n == 0 is Sequential.
type localBackend struct{ n int }

func (b localBackend) String() string {
	if b.n == 0 {
		return "sequential"
	}
	return fmt.Sprintf("goroutines(%d)", b.n)
}

func (b localBackend) Open(_ context.Context, job JobSpec) (Executor, error) {
	r, err := NewRunner(job)
	if err != nil {
		return nil, err
	}
	e := &localExecutor{r: r, ids: make(chan string, max(b.n, 1))}
	if b.n == 0 {
		e.ids <- "sequential"
	} else {
		for k := range b.n {
			e.ids <- fmt.Sprintf("goroutine %d", k+1)
		}
	}
	return e, nil
}

// localExecutor runs tasks in the goroutines that call Execute, each
// under the id of a free worker.
type localExecutor struct {
	r   *Runner
	ids chan string // free worker ids
}

func (e *localExecutor) Slots() int { return cap(e.ids) }

func (e *localExecutor) Execute(ctx context.Context, t Task, started func(int, string)) ([]Outcome, error) {
	var id string
	select {
	case id = <-e.ids:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { e.ids <- id }()
	outs := e.r.Run(ctx, t, id, started)
	stopped := t.StopOnError && len(outs) > 0 && !outs[len(outs)-1].OK
	if len(outs) < len(t.Indices) && !stopped {
		return outs, ctx.Err() // Run stops early only when ctx ends
	}
	return outs, nil
}

func (e *localExecutor) Close() error { return nil }
