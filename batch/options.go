package batch

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrypipe/ferry/retry"
)

// Option configures a Run.
type Option func(*options)

type options struct {
	backend    Backend
	failFast   bool
	retries    int
	backoff    retry.Backoff
	timeout    time.Duration
	checkpoint Checkpointer
	resume     bool
	restart    bool // with resume: a *JobChangedError starts afresh
	observer   Observer
	logger     *slog.Logger
	errs       []error
}

func newOptions(opts []Option) *options {
	o := &options{backend: Sequential(), failFast: true, backoff: retry.DefaultBackoff(), logger: slog.Default()}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return o
}

// WithBackend sets the backend that executes the job (default Sequential).
func WithBackend(b Backend) Option {
	return func(o *options) {
		if b == nil {
			o.errs = append(o.errs, fmt.Errorf("WithBackend(nil)"))
			return
		}
		o.backend = b
	}
}

// FailFast stops the run at the first index that fails for good (after
// its retries): nothing more is started, the indices in progress are
// cancelled, and those that did not finish are reported as not run
// (ErrNotRun); Run returns the index's *IndexError. This is the default.
func FailFast() Option { return func(o *options) { o.failFast = true } }

// ContinueOnError runs every index whatever fails; the failures are in the
// Result (Result.Err) and Run returns no error for them.
func ContinueOnError() Option { return func(o *options) { o.failFast = false } }

// Retries lets a failed index run again up to n more times: 1+n attempts
// in all, whether it failed with an error, a panic, a timeout or the death
// of its worker (default 0). An error marked with retry.Permanent (in any
// backend, also in a worker process) is not retried: its index fails
// after that attempt. Each retry waits as RetryBackoff says; other
// indices run meanwhile.
func Retries(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.errs = append(o.errs, fmt.Errorf("Retries(%d), want ≥ 0", n))
			return
		}
		o.retries = n
	}
}

// RetryBackoff sets how long a failed index waits before each retry (see
// Retries; default retry.DefaultBackoff(): 10 ms doubling to 1 s, half of
// it random). The wait is the index's alone: the run goes on with other
// indices, and ends without waiting when ctx ends or FailFast stops it.
// retry.Backoff{} retries at once.
func RetryBackoff(b retry.Backoff) Option {
	return func(o *options) {
		if err := b.Validate(); err != nil {
			o.errs = append(o.errs, fmt.Errorf("RetryBackoff: %w", err))
			return
		}
		o.backoff = b
	}
}

// Timeout limits each attempt at an index to d (default: no limit). In
// the Processes backend an attempt past it has its worker killed and
// replaced; in-process backends can only cancel the index's context, and
// wait for the code to return. Either way the attempt fails with a
// *TimeoutError.
func Timeout(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.errs = append(o.errs, fmt.Errorf("Timeout(%v), want ≥ 0", d))
			return
		}
		o.timeout = d
	}
}

// WithCheckpoint records every finished index in c (successful, or failed
// for good), so that a later run with Resume can skip what succeeded. Run
// calls c.Begin at the start and c.Close at the end.
func WithCheckpoint(c Checkpointer) Option { return func(o *options) { o.checkpoint = c } }

// Resume continues an earlier run of the same job (same ID) recorded in
// the checkpoint: the indices it finished successfully are not dispatched
// again; their outputs and states come from the checkpoint, and their
// results are marked Resumed. Without it, a run with a checkpoint starts
// afresh. A checkpoint that holds nothing of the job (a new file, say) is
// logged ("nothing to resume") and every index runs; one that holds the
// job with other parameters or another Version fails the run with a
// *JobChangedError (see ResumeOrRestart). It needs WithCheckpoint.
func Resume() Option { return func(o *options) { o.resume = true } }

// Events sends progress events to obs (see Observer).
func Events(obs Observer) Option { return func(o *options) { o.observer = obs } }

// Logger receives the run's log records: failures, retries, workers lost
// (default slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// Observer receives the progress of a run, for example to render it.
// Run calls Begin once before any event, Event for each event, and End once
// after the last one (even when the run fails); the calls never overlap,
// and come from the goroutines of the run, so they must return quickly.
//
// For each attempt at an index there is one EventStart, then EventDone or
// EventFailed (Final when no attempt follows). In the Processes backend
// EventStart means the index was sent to the worker named in it. Indices
// resumed from a checkpoint have no events (Begin counts them), nor do
// indices a stopped run did not start.
type Observer interface {
	// Begin announces the run of job; resumed of its job.Len indices come
	// from a checkpoint and will not run.
	Begin(job JobInfo, resumed int)
	// Event reports what happened to one index.
	Event(e Event)
	// End follows the last event.
	End()
}

// ObserverFunc adapts a function to an Observer that only wants events.
type ObserverFunc func(Event)

// Begin does nothing.
func (ObserverFunc) Begin(JobInfo, int) {}

// Event calls f.
func (f ObserverFunc) Event(e Event) { f(e) }

// End does nothing.
func (ObserverFunc) End() {}
