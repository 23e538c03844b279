package batch

import (
	"errors"
	"fmt"
	"time"
)

// Result is the account of a run: one IndexResult per index of the
// source, in index order, counts, and the merged states of the
// accumulators (see State).
type Result[R any] struct {
	Job string // the job's name
	ID  string // the job's identity (Definition.ID)
	// Indices has one entry per index, Indices[i].Index == i.
	Indices []IndexResult[R]
	Done    int // indices that succeeded, in this run or (Resumed) an earlier one
	Failed  int // indices that failed for good
	NotRun  int // indices not run to their end because the run stopped
	Resumed int // indices whose result came from the checkpoint
	// Duration is the time Run took.
	Duration time.Duration

	states map[string]any
}

// IndexResult is how one index ended.
type IndexResult[R any] struct {
	// Index is the index this result is for.
	Index int
	// OK: the index succeeded (in this run, or in an earlier one if
	// Resumed); otherwise Err says why not.
	OK bool
	// Output is what the sink returned (OK only).
	Output R
	// Err is an *IndexError (!OK): why the last attempt failed, or
	// ErrNotRun.
	Err error
	// Attempts counts the attempts that decided something about the index:
	// those that ran to an end, and those whose worker died (or was
	// killed for a timeout) while it ran alone on it. An attempt lost with
	// a worker that was running other indices too is not counted, since
	// the index may not even have started: it runs again, alone.
	Attempts int
	// Worker ran the last attempt, e.g. "goroutine 2" or "pid 4711".
	Worker string
	// Resumed: the result comes from the checkpoint of an earlier run.
	Resumed bool
	// Started and Finished bound the last attempt.
	Started, Finished time.Time
}

// Err returns the failures of the run, each an *IndexError, joined
// (errors.Join), in index order; nil if every index succeeded.
func (r *Result[R]) Err() error {
	var errs []error
	for _, x := range r.Indices {
		if !x.OK && x.Err != nil {
			errs = append(errs, x.Err)
		}
	}
	return errors.Join(errs...)
}

// Outputs returns the outputs of the successful indices, in index order.
func (r *Result[R]) Outputs() []R {
	out := make([]R, 0, r.Done)
	for _, x := range r.Indices {
		if x.OK {
			out = append(out, x.Output)
		}
	}
	return out
}

// State returns the merged state of the accumulator called name: the
// merge, in index order, of the states of every successful index of the
// job (those resumed from a checkpoint included), starting from a fresh
// state. S must be the accumulator's state type.
func State[S, R any](r *Result[R], name string) (S, error) {
	var zero S
	v, ok := r.states[name]
	if !ok {
		return zero, fmt.Errorf("batch: job %q has no accumulator %q", r.Job, name)
	}
	s, ok := v.(S)
	if !ok {
		return zero, fmt.Errorf("batch: job %q: accumulator %q has state type %T, not %T", r.Job, name, v, zero)
	}
	return s, nil
}

// String summarises the result on one line.
func (r *Result[R]) String() string {
	return fmt.Sprintf("job %q: %d indices: %d done (%d resumed), %d failed, %d not run, in %v",
		r.Job, len(r.Indices), r.Done, r.Resumed, r.Failed, r.NotRun, r.Duration.Round(time.Millisecond))
}
