package batch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/proc"
)

// tasksPerWorker is how many tasks the Processes backend keeps at each
// worker, so that a worker never idles for a round trip.
const tasksPerWorker = 4

// Processes is the backend that runs indices in n worker processes (n < 1
// means 1), each a proc.Pool of one worker serving the job's registered
// function ("ferry.batch/"+name), so that the program must call proc.Main
// first in main (and in TestMain). procOpts configure the workers (Env,
// GOMEMLIMIT, MaxRestarts, Logger, …); the backend sets Workers, Retries
// and CallTimeout itself, so those are overridden.
//
// A worker that dies (a crash, an os.Exit, a fatal error in C code) is
// replaced by its pool; the indices it held run again, alone, so that the
// index that killed it fails by itself (with the *proc.WorkerError) and
// the others succeed. With a per-index Timeout each index is its own call,
// bounded by the pool's CallTimeout: a call past it has its worker killed
// and replaced, and the index fails with a *TimeoutError. A partition group
// runs on one worker, in order: after a timeout the rest of the group
// continues on the worker's replacement; if the worker dies, the group
// runs again alone, one call per member, so that only the member that
// kills its worker fails.
func Processes(n int, procOpts ...proc.Option) Backend {
	return &procBackend{n: max(n, 1), opts: procOpts}
}

type procBackend struct {
	n    int
	opts []proc.Option
}

func (b *procBackend) String() string { return fmt.Sprintf("processes(%d)", b.n) }

func (b *procBackend) Open(ctx context.Context, job JobSpec) (Executor, error) {
	d, err := lookupJob(job.Name)
	if err != nil {
		return nil, err
	}
	fn := d.procFunc()
	var opts []proc.Option
	if job.Logger != nil {
		opts = append(opts, proc.Logger(job.Logger))
	}
	opts = append(append(opts, b.opts...), proc.Workers(1), proc.Retries(0), proc.CallTimeout(job.Timeout))
	e := &procExecutor{
		job:     job,
		fn:      fn.Name(),
		pools:   make([]*proc.Pool[[]byte, []byte], b.n),
		load:    make([]int, b.n),
		timeout: job.Timeout,
	}
	e.header = appendString(appendString(nil, job.ID), string(job.Params))
	errs := make([]error, b.n)
	var wg sync.WaitGroup
	for k := range e.pools {
		wg.Go(func() { e.pools[k], errs[k] = proc.NewPool(ctx, fn, opts...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// procExecutor sends tasks to its pools, one worker each, so that it
// chooses the worker of each task (partition groups).
type procExecutor struct {
	job     JobSpec
	fn      string
	pools   []*proc.Pool[[]byte, []byte]
	header  []byte // the job's ID and parameters, encoded
	timeout time.Duration

	mu   sync.Mutex
	load []int // tasks in progress per pool
}

func (e *procExecutor) Slots() int { return len(e.pools) * tasksPerWorker }

func (e *procExecutor) Close() error {
	var wg sync.WaitGroup
	for _, p := range e.pools {
		if p != nil {
			wg.Go(func() { p.Close() })
		}
	}
	wg.Wait()
	return nil
}

// pick reserves the pool with the fewest tasks in progress.
func (e *procExecutor) pick() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	best := 0
	for k, n := range e.load {
		if n < e.load[best] {
			best = k
		}
	}
	e.load[best]++
	return best
}

func (e *procExecutor) release(k int) {
	e.mu.Lock()
	e.load[k]--
	e.mu.Unlock()
}

// worker names the current worker of pool k, or "" while it has none.
func (e *procExecutor) worker(k int) string {
	for _, w := range e.pools[k].Stats().Workers {
		if w.Slot == 0 {
			return fmt.Sprintf("pid %d", w.PID)
		}
	}
	return ""
}

func (e *procExecutor) Execute(ctx context.Context, t Task, started func(int, string)) ([]Outcome, error) {
	k := e.pick()
	defer e.release(k)
	if e.timeout <= 0 && !(t.Ordered && t.Alone) {
		worker := e.worker(k)
		for _, i := range t.Indices {
			started(i, worker)
		}
		return e.call(ctx, k, t)
	}
	// One call per index, so that the pool's CallTimeout bounds each, and
	// so that a group running alone (after its worker died) keeps the
	// outcomes of the members before the one that kills the worker again:
	// the dispatcher blames the first index without an outcome.
	if t.Ordered {
		var outs []Outcome
		for _, i := range t.Indices {
			started(i, e.worker(k))
			o, err := e.callOne(ctx, k, i)
			if err != nil {
				return outs, err
			}
			outs = append(outs, o)
			if !o.OK && t.StopOnError {
				break
			}
		}
		return outs, nil
	}
	outs := make([]Outcome, len(t.Indices))
	errs := make([]error, len(t.Indices))
	worker := e.worker(k)
	var wg sync.WaitGroup
	for n, i := range t.Indices {
		started(i, worker)
		wg.Go(func() { outs[n], errs[n] = e.callOne(ctx, k, i) })
	}
	wg.Wait()
	var lost error
	kept := outs[:0]
	for n, o := range outs {
		if errs[n] != nil {
			lost = cmpOr(lost, errs[n])
			continue
		}
		kept = append(kept, o)
	}
	return kept, lost
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// callOne runs index i alone in pool k; a call past the timeout is the
// index's outcome, not a loss.
func (e *procExecutor) callOne(ctx context.Context, k, i int) (Outcome, error) {
	outs, err := e.call(ctx, k, Task{Indices: []int{i}})
	var te *proc.TimeoutError
	if errors.As(err, &te) {
		now := time.Now()
		return Outcome{Index: i, Err: &TimeoutError{Job: e.job.Name, Index: i, Limit: e.timeout, Err: err}, Worker: "", Started: now.Add(-e.timeout), Finished: now}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	if len(outs) != 1 {
		return Outcome{}, fmt.Errorf("batch: worker of job %q returned %d outcomes for one index", e.job.Name, len(outs))
	}
	return outs[0], nil
}

// call runs t in pool k as one call.
func (e *procExecutor) call(ctx context.Context, k int, t Task) ([]Outcome, error) {
	req := encodeRequest(e.header, t)
	body, err := e.pools[k].Call(ctx, req)
	if err != nil {
		return nil, err
	}
	outs, err := decodeReply(body, e.fn)
	if err != nil {
		return nil, fmt.Errorf("batch: job %q: a worker's reply: %w", e.job.Name, err)
	}
	return outs, nil
}

// The worker side.

var (
	runnersMu sync.Mutex
	runners   = map[string]*Runner{} // by job ID, in a worker process
)

// maxRunners bounds the jobs a worker process keeps built.
const maxRunners = 8

// serveTask returns the function that worker processes run for the job
// called name: decode a task, run it, encode its outcomes.
func serveTask(name string) func(ctx context.Context, req []byte) ([]byte, error) {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		id, params, t, err := decodeRequest(req)
		if err != nil {
			return nil, fmt.Errorf("batch: job %q: a task from the parent: %w", name, err)
		}
		runnersMu.Lock()
		r := runners[id]
		runnersMu.Unlock()
		if r == nil {
			if r, err = NewRunner(JobSpec{Name: name, ID: id, Params: params}); err != nil {
				return nil, err
			}
			runnersMu.Lock()
			if len(runners) >= maxRunners {
				clear(runners)
			}
			runners[id] = r
			runnersMu.Unlock()
		}
		pid := os.Getpid()
		outs := r.Run(ctx, t, fmt.Sprintf("pid %d", pid), nil)
		for k := range outs {
			r.Encode(&outs[k])
		}
		return encodeReply(pid, outs), nil
	}
}

// The encoding of tasks and outcomes: a compact binary form, since tiny
// tasks run at hundreds of thousands per second.

const (
	flagOrdered = 1 << iota
	flagStopOnError
)

const (
	errKindError = 1
	errKindPanic = 2
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeRequest(header []byte, t Task) []byte {
	b := make([]byte, 0, len(header)+2+len(t.Indices)*3)
	b = append(b, header...)
	var flags byte
	if t.Ordered {
		flags |= flagOrdered
	}
	if t.StopOnError {
		flags |= flagStopOnError
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(t.Indices)))
	for _, i := range t.Indices {
		b = binary.AppendUvarint(b, uint64(i))
	}
	return b
}

// reader consumes an encoding, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or malformed")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated or malformed")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("truncated")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func decodeRequest(b []byte) (id string, params []byte, t Task, err error) {
	r := &reader{b: b}
	id = string(r.bytes())
	params = r.bytes()
	flags := r.byte()
	t.Ordered, t.StopOnError = flags&flagOrdered != 0, flags&flagStopOnError != 0
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
	}
	if r.err != nil {
		return "", nil, Task{}, r.err
	}
	t.Indices = make([]int, n)
	for k := range t.Indices {
		t.Indices[k] = int(r.uvarint())
	}
	return id, params, t, r.err
}

func encodeReply(pid int, outs []Outcome) []byte {
	b := binary.AppendUvarint(nil, uint64(pid))
	b = binary.AppendUvarint(b, uint64(len(outs)))
	for _, o := range outs {
		b = binary.AppendUvarint(b, uint64(o.Index))
		b = binary.AppendVarint(b, o.Started.UnixNano())
		b = binary.AppendVarint(b, o.Finished.UnixNano())
		if o.OK {
			b = append(b, 1)
			b = appendBytes(b, o.Output)
			b = appendBytes(b, o.State)
			continue
		}
		b = append(b, 0)
		var pe *PanicError
		if errors.As(o.Err, &pe) {
			b = append(b, errKindPanic)
			b = appendString(b, "panic")
			b = appendString(b, fmt.Sprint(pe.Value))
			b = appendString(b, pe.Stack)
			continue
		}
		b = append(b, errKindError)
		b = appendString(b, fmt.Sprintf("%T", o.Err))
		b = appendString(b, o.Err.Error())
		b = appendString(b, "")
	}
	return b
}

func decodeReply(b []byte, fn string) ([]Outcome, error) {
	r := &reader{b: b}
	pid := int(r.uvarint())
	worker := fmt.Sprintf("pid %d", pid)
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
	}
	if r.err != nil {
		return nil, r.err
	}
	outs := make([]Outcome, n)
	for k := range outs {
		o := &outs[k]
		o.Index = int(r.uvarint())
		o.Worker = worker
		o.Started = time.Unix(0, r.varint())
		o.Finished = time.Unix(0, r.varint())
		if r.byte() == 1 {
			o.OK = true
			o.Output = r.bytes()
			o.State = r.bytes()
			continue
		}
		kind := r.byte()
		typ, msg, stack := string(r.bytes()), string(r.bytes()), string(r.bytes())
		if kind == errKindPanic {
			o.Err = &PanicError{Value: msg, Stack: stack, Worker: worker}
		} else {
			o.Err = &proc.RemoteError{Worker: fn, PID: pid, Type: typ, Message: msg, Index: -1}
		}
	}
	return outs, r.err
}
