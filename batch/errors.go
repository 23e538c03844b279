package batch

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotRun is the cause of the failure of an index that was not run to
// its end: the run stopped (a failure under FailFast, or the context
// ended) before it started or while it ran.
var ErrNotRun = errors.New("batch: index not run")

// ErrUnknownJob is returned for a job name that no Define registered (in
// this process: a worker must be the same program as its parent).
var ErrUnknownJob = errors.New("batch: no job is defined with this name")

// IndexError is the failure of one index: which job, which index, how many
// attempts, the worker of the last attempt, and why.
type IndexError struct {
	Job      string // the job's name
	Index    int    // the index that failed
	Attempts int    // attempts made (0: not run)
	Worker   string // worker of the last attempt, if known
	Err      error  // why: the cause of the last attempt's failure, or ErrNotRun
}

// Error says which job and index failed, after how many attempts, on
// which worker, and why.
func (e *IndexError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch: job %q: index %d", e.Job, e.Index)
	switch {
	case e.Attempts == 0:
	case e.Attempts == 1:
		b.WriteString(" failed after 1 attempt")
	default:
		fmt.Fprintf(&b, " failed after %d attempts", e.Attempts)
	}
	if e.Worker != "" {
		fmt.Fprintf(&b, " (last on %s)", e.Worker)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the cause.
func (e *IndexError) Unwrap() error { return e.Err }

// TimeoutError is an attempt at an index that outlived the per-index
// Timeout. In the Processes backend its worker was killed and replaced (Err
// is then the pool's *proc.TimeoutError); in-process backends can only
// cancel the index's context (Err is what the index returned, or
// context.DeadlineExceeded).
type TimeoutError struct {
	Job   string        // the job's name
	Index int           // the index that timed out
	Limit time.Duration // the per-index Timeout
	Err   error         // the cause: see above
}

// Error says which job and index timed out, after what limit, and the
// cause.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("batch: job %q: index %d timed out after %v: %v", e.Job, e.Index, e.Limit, e.Err)
}

// Unwrap returns the cause.
func (e *TimeoutError) Unwrap() error { return e.Err }

// PanicError is a panic raised by the code of an index (source, filter,
// accumulator or sink), recovered and turned into the failure of that
// attempt. In a worker process the panic value arrives as its text.
type PanicError struct {
	Value any    // the value passed to panic
	Stack string // the stack of the panicking goroutine
	// Worker is where it panicked, e.g. "pid 4711".
	Worker string
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// stageError names the part of the job that failed.
func stageError(stage, name string, err error) error {
	if name == "" {
		return fmt.Errorf("%s: %w", stage, err)
	}
	return fmt.Errorf("%s %q: %w", stage, name, err)
}
