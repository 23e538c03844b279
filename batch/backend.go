package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Backend executes the tasks of runs: in this goroutine (Sequential), in
// goroutines (Goroutines), in worker processes (Processes), or anywhere a
// task can be shipped to, such as a message queue. A Backend is a
// configuration: Open starts what one run needs.
//
// Backends only execute. The dispatcher inside Run decides everything else
// identically for every backend: which indices go together in a task, in
// which order, retries, the failure policy, partitions, results, the
// checkpoint and events. The interface is type-erased so that a task can
// be shipped anywhere: a task is a job name, its JSON parameters and a set
// of indices; an outcome is per index, with the sink's result and the
// accumulators' states as JSON.
//
// A worker that runs tasks (in this process or another program) does so
// with NewRunner and Runner.Run; a remote worker also calls Runner.Encode
// before it sends outcomes back, and the backend turns what comes back into
// Outcomes with Output and State set (the dispatcher decodes them).
type Backend interface {
	// Open prepares to execute tasks of job, for one run. ctx bounds the
	// start only.
	Open(ctx context.Context, job JobSpec) (Executor, error)
	// String names the backend for logs, e.g. "processes(2)".
	String() string
}

// Executor executes the tasks of one run; see Backend.
type Executor interface {
	// Slots returns how many Execute calls the dispatcher may have in
	// progress at once (for example workers × tasks queued per worker).
	Slots() int
	// Execute runs task and returns an Outcome for each of its indices
	// that ran to its end (successful or not), in any order. It may be
	// called concurrently, up to Slots times.
	//
	// A non-nil error means that the indices without an Outcome were lost:
	// their worker died or was killed, the context ended, the task could
	// not be delivered. The dispatcher runs lost indices again, alone on a
	// worker, so that an index that kills its worker fails by itself and
	// its neighbours do not fail with it (see Task.Alone).
	//
	// started, when the backend knows, is called as each index begins (or
	// is handed to its worker), with the worker's id; it may be called from
	// any goroutine, and must be called before Execute returns.
	Execute(ctx context.Context, task Task, started func(index int, worker string)) ([]Outcome, error)
	// Close stops what Open started, and returns once it has stopped.
	Close() error
}

// TaskSizer is an Executor that wants tasks of at least a given amount of
// work (by the workers' timing of its indices), because each task costs it
// a round trip worth amortizing, as through a message queue. Tasks hold at
// most 64 indices whatever it says.
type TaskSizer interface {
	TaskDuration() time.Duration
}

// JobSpec is what a backend needs to know about the job of a run: enough
// for a worker anywhere to rebuild it (name and parameters), and its
// identity, to check that it did.
type JobSpec struct {
	Name    string          // the name given to Define
	ID      string          // the job's identity (Definition.ID)
	Params  json.RawMessage // the parameters, as JSON
	Len     int             // the number of indices
	Timeout time.Duration   // per-index time limit, 0 for none (see Timeout)
	Logger  *slog.Logger    // the run's logger, for the backend's own records

	// local is the job built by Run, for runners in the same process.
	local erasedJob
}

// Task is a set of indices of a job to run on one worker. The dispatcher
// puts several consecutive ungrouped indices in one task for throughput,
// and a partition group (see Partitioner) in one ordered task.
type Task struct {
	// Indices are the indices to run, ascending.
	Indices []int
	// Ordered: the indices are a partition group, to run one after the
	// other in this order on one worker.
	Ordered bool
	// StopOnError: stop at the first index that fails (it has attempts
	// left, and the ones after it must wait for it).
	StopOnError bool
	// Alone: nothing else is running anywhere in this run, so a worker
	// that dies running this task was killed by it: the dispatcher blames
	// the first index of the task without an Outcome. A backend that can
	// lose a task's outcomes all at once (one message per task) must
	// therefore, for an Ordered task that runs alone, return the outcomes
	// of the indices that ended before the loss (Processes sends such a
	// task one index at a time).
	Alone bool
}

// Outcome is how one index of a task ended.
type Outcome struct {
	// Index is the index this outcome is for, one of the task's.
	Index int
	// OK: the index succeeded (Output and State are its results);
	// otherwise Err says why it failed.
	OK bool
	// Output is the sink's result as JSON (OK only), set by Encode.
	// In-process runners leave it nil and keep the value.
	Output json.RawMessage
	// State is the accumulators' states as a JSON object keyed by
	// accumulator name (OK only), set by Encode. In-process runners leave
	// it nil and keep the values.
	State json.RawMessage
	// Err is why the index failed (!OK).
	Err               error
	Worker            string    // e.g. "goroutine 2", "pid 4711"
	Started, Finished time.Time // when the index began and ended

	// value and states are the decoded Output and State.
	value  any
	states []any
	local  bool // value and states are set
}

// Runner runs the tasks of one job in the current process, as every
// backend's workers do.
type Runner struct {
	job     erasedJob
	timeout time.Duration
}

// NewRunner returns a Runner for job. In the process that called Run it
// uses the job Run built; elsewhere it rebuilds the job from its name and
// parameters (the job must have been defined with Define in this program:
// ErrUnknownJob otherwise) and checks that the rebuilt job has the same ID.
func NewRunner(job JobSpec) (*Runner, error) {
	if job.local != nil {
		return &Runner{job: job.local, timeout: job.Timeout}, nil
	}
	d, err := lookupJob(job.Name)
	if err != nil {
		return nil, err
	}
	j, err := d.compileJSON(job.Params)
	if err != nil {
		return nil, err
	}
	if job.ID != "" && j.jobID() != job.ID {
		return nil, fmt.Errorf("batch: job %q rebuilt from its parameters has identity %s, not %s: the worker runs a different definition of it than the parent (a different program or version?)", job.Name, j.jobID(), job.ID)
	}
	return &Runner{job: j, timeout: job.Timeout}, nil
}

// errIndexTimeout is the cause of an index context that reached its
// per-index Timeout.
var errIndexTimeout = errors.New("batch: index timeout")

// Run runs the indices of task in order, recovering panics, and returns
// their outcomes, stamped with worker. It stops early when ctx ends (the
// indices after are left without an outcome) and, with task.StopOnError,
// after the first failure. started, if not nil, is called as each index
// begins.
//
// With a per-index Timeout, each index gets a context that ends at its
// deadline; an index that fails (or returns) after its deadline fails with
// a *TimeoutError. Code that ignores its context keeps the runner waiting:
// a goroutine cannot be stopped from outside.
func (r *Runner) Run(ctx context.Context, task Task, worker string, started func(index int, worker string)) []Outcome {
	outs := make([]Outcome, 0, len(task.Indices))
	for _, i := range task.Indices {
		if ctx.Err() != nil {
			break
		}
		if started != nil {
			started(i, worker)
		}
		o := r.runOne(ctx, i, worker)
		outs = append(outs, o)
		if !o.OK && task.StopOnError {
			break
		}
	}
	return outs
}

func (r *Runner) runOne(ctx context.Context, i int, worker string) (o Outcome) {
	o = Outcome{Index: i, Worker: worker, Started: time.Now(), local: true}
	ictx := ctx
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ictx, cancel = context.WithTimeoutCause(ctx, r.timeout, errIndexTimeout)
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			o.OK, o.value, o.states = false, nil, nil
			o.Err = &PanicError{Value: v, Stack: string(debug.Stack()), Worker: worker}
		}
		o.Finished = time.Now()
		if r.timeout > 0 && context.Cause(ictx) == errIndexTimeout {
			err := o.Err
			if err == nil {
				err = context.DeadlineExceeded
			}
			o.OK, o.value, o.states = false, nil, nil
			o.Err = &TimeoutError{Job: r.job.jobName(), Index: i, Limit: r.timeout, Err: err}
		}
	}()
	out, states, err := r.job.runIndex(ictx, i)
	if err != nil {
		o.Err = err
		return o
	}
	o.OK, o.value, o.states = true, out, states
	return o
}

// Encode sets o.Output and o.State from the values Run keeps, for an
// outcome that is to cross a process boundary. A result or state that
// cannot be encoded fails the index, with the reason.
func (r *Runner) Encode(o *Outcome) {
	if !o.OK || !o.local {
		return
	}
	out, err := r.job.encodeOutput(o.value)
	if err == nil {
		o.State, err = r.job.encodeStates(o.states)
	}
	if err != nil {
		o.OK, o.Err, o.Output, o.State = false, err, nil, nil
		return
	}
	o.Output = out
}

// RunIndex runs index i of the job, recovering a panic and keeping the
// per-index Timeout, and returns its outcome, stamped with worker: what
// Run does for each index, for a backend that reports outcomes one by one.
func (r *Runner) RunIndex(ctx context.Context, i int, worker string) Outcome {
	return r.runOne(ctx, i, worker)
}

// AppendOutcome appends a record of o (encoded with Runner.Encode first)
// to b, for a backend that ships outcomes to the process that called Run:
// the record the Processes backend's workers send. pid is the worker's
// process id.
func AppendOutcome(b []byte, pid int, o Outcome) []byte { return appendOutcome(b, pid, o) }

// DecodeOutcome decodes the first record of b, made by AppendOutcome, and
// returns the rest of b. fn names the worker code for a *proc.RemoteError
// and worker the worker, for the Outcome.
func DecodeOutcome(b []byte, fn, worker string) (o Outcome, pid int, rest []byte, err error) {
	pid, o, start, rest, err := decodeRecord(b, fn, workerName{name: worker})
	if err == nil && start {
		err = errors.New("batch: a start record, not an outcome")
	}
	o.Worker = worker
	return o, pid, rest, err
}
