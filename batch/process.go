package batch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/retry"
)

// tasksPerWorker is how many tasks the Processes backend keeps at each
// worker, so that a worker never idles for a round trip.
const tasksPerWorker = 4

// Processes is the backend that runs indices in n worker processes (n < 1
// means 1): one proc.FlatPool serving the job's registered function
// ("ferry.batch/"+name), so that the program must call proc.Main first in
// main (and in TestMain). procOpts configure the workers (Env,
// MemoryLimit, Logger, …); the pool's own policy (workers, retries, call
// timeout) is the backend's.
//
// A task runs on one worker, its indices one after the other, and the
// outcome of each index comes back as soon as it ends: a worker that dies
// (a crash, an os.Exit, a fatal error in C code) loses only the index it
// was running and those after it in its task, which run again, alone, so
// that the index that killed it fails by itself (with the
// *proc.WorkerError) and the others succeed. Tasks queued at the worker
// that had not started run elsewhere. With a per-index Timeout, the pool's
// CallTimeout bounds each index (the wait for each outcome): an index past
// it has its worker killed and replaced, and fails with a *TimeoutError.
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
	var opts []proc.FlatPoolOption
	if job.Logger != nil {
		opts = append(opts, proc.Logger(job.Logger))
	}
	for _, o := range b.opts {
		opts = append(opts, o)
	}
	// Room for every outcome of a task (and its start record): a task
	// never waits for a credit.
	opts = append(opts, proc.Workers(b.n), proc.InFlight(tasksPerWorker), proc.Retries(0), proc.CallTimeout(job.Timeout), proc.BufferSize(2*maxChunk))
	pool, err := proc.NewFlatPool(ctx, d.procFunc(), opts...)
	if err != nil {
		return nil, err
	}
	e := &procExecutor{job: job, fn: d.procFunc().Name(), pool: pool, n: b.n, timeout: job.Timeout}
	e.header = appendString(appendString(nil, job.ID), string(job.Params))
	return e, nil
}

// procExecutor sends each task to the pool as one call, whose outputs are
// the task's outcomes, one per index, as they end.
type procExecutor struct {
	job     JobSpec
	fn      string
	pool    *proc.FlatPool[[]byte, []byte]
	n       int
	header  []byte // the job's ID and parameters, encoded
	timeout time.Duration
}

func (e *procExecutor) Slots() int { return e.n * tasksPerWorker }

func (e *procExecutor) Close() error { return e.pool.Close() }

func (e *procExecutor) Execute(ctx context.Context, t Task, started func(int, string)) ([]Outcome, error) {
	outs := make([]Outcome, 0, len(t.Indices))
	var worker workerName
	next := 0 // the index of t.Indices running now
	// A task that runs alone must report every outcome before the index
	// that kills its worker, which is blamed; with a timeout, the index
	// that outlives it is the one after the last outcome.
	each := t.Alone || e.timeout > 0
	for body, err := range e.pool.Call(ctx, encodeRequest(e.header, t, each)) {
		if err != nil {
			var te *proc.TimeoutError
			if errors.As(err, &te) && te.What == "call" && !isRemote(err) && next < len(t.Indices) {
				// The index running outlived the timeout: that is its
				// outcome; the indices after it did not run.
				now := time.Now()
				outs = append(outs, Outcome{Index: t.Indices[next], Err: &TimeoutError{Job: e.job.Name, Index: t.Indices[next], Limit: e.timeout, Err: err},
					Worker: worker.name, Started: now.Add(-e.timeout), Finished: now})
				if next+1 < len(t.Indices) && !(t.StopOnError) {
					return outs, fmt.Errorf("batch: job %q: the worker was killed for index %d's timeout: %w", e.job.Name, t.Indices[next], err)
				}
				return outs, nil
			}
			return outs, err
		}
		for len(body) > 0 {
			pid, o, isStart, rest, derr := decodeRecord(body, e.fn, worker)
			body = rest
			switch {
			case derr != nil:
				return outs, fmt.Errorf("batch: job %q: a worker's reply: %w", e.job.Name, derr)
			case isStart:
				worker = workerName{pid, fmt.Sprintf("pid %d", pid)}
				if next < len(t.Indices) {
					started(t.Indices[next], worker.name)
				}
				continue
			}
			outs = append(outs, o)
			next++
			if next < len(t.Indices) && !(t.StopOnError && !o.OK) {
				started(t.Indices[next], worker.name)
			}
		}
	}
	return outs, nil
}

// isRemote reports whether err came from worker code (which may return a
// *proc.TimeoutError of its own).
func isRemote(err error) bool {
	var re *proc.RemoteError
	return errors.As(err, &re)
}

// The worker side.

// runners are the jobs a worker process has built, by job ID.
var (
	runnersMu sync.Mutex
	runners   = map[string]*Runner{}
)

// maxRunners bounds the jobs a worker process keeps built.
const maxRunners = 8

// serveTask returns the function that worker processes run for the job
// called name: decode a task, then stream a start record and the outcome
// of each index as it ends.
func serveTask(name string) func(ctx context.Context, req []byte) iter.Seq2[[]byte, error] {
	return func(ctx context.Context, req []byte) iter.Seq2[[]byte, error] {
		return func(yield func([]byte, error) bool) {
			id, params, t, each, err := decodeRequest(req)
			if err != nil {
				yield(nil, fmt.Errorf("batch: job %q: a task from the parent: %w", name, err))
				return
			}
			runnersMu.Lock()
			r := runners[id]
			runnersMu.Unlock()
			if r == nil {
				if r, err = NewRunner(JobSpec{Name: name, ID: id, Params: params}); err != nil {
					yield(nil, err)
					return
				}
				runnersMu.Lock()
				if len(runners) >= maxRunners {
					clear(runners)
				}
				runners[id] = r
				runnersMu.Unlock()
			}
			pid := os.Getpid()
			if !yield(encodeStart(pid), nil) {
				return
			}
			worker := fmt.Sprintf("pid %d", pid)
			// Outcomes go back as indices end, except that those of
			// tiny indices that end within holdOutcomes of the last send
			// wait for the next one: they do not cost a message each.
			var held []byte
			var sent time.Time
			defer func() {
				if len(held) > 0 { // never after a yield returned false: held is nil then
					yield(held, nil)
				}
			}()
			for _, i := range t.Indices {
				if ctx.Err() != nil {
					return
				}
				o := r.runOne(ctx, i, worker)
				r.Encode(&o)
				held = appendOutcome(held, pid, o)
				stop := !o.OK && t.StopOnError
				now := time.Now()
				tiny := o.Finished.Sub(o.Started) < tinyIndex
				if each || stop || !t.Ordered && (!tiny || now.Sub(sent) >= holdOutcomes) {
					b := held
					held, sent = nil, now
					if !yield(b, nil) {
						return
					}
					if each || !tiny {
						// Written before the next index runs: if that one
						// kills the worker, these outcomes are not lost.
						if err := proc.Flush(ctx); err != nil {
							return
						}
					}
				}
				if stop {
					return
				}
			}
		}
	}
}

// holdOutcomes and tinyIndex decide when a worker holds outcomes to send
// several in one message, so that tiny indices do not cost a message (and
// a write) each: the outcome of an index that ran under tinyIndex goes
// with a later one, at least every holdOutcomes. The outcome of any other
// index is written before the next index runs, so a worker that dies
// makes only the index that was running run again — and at most the tiny
// indices of the last holdOutcomes or so. A task that runs alone, or with
// a per-index timeout, holds nothing (flagEach): every outcome before the
// one that fails must be known. A partition group sends its outcomes
// together at its end: a group lost with its worker runs again whole,
// from its first member, as a partitioned sink expects.
const (
	holdOutcomes = 100 * time.Microsecond
	tinyIndex    = 20 * time.Microsecond
)

// The encoding of tasks and outcomes: a compact binary form, since tiny
// tasks run at hundreds of thousands per second.

const (
	flagOrdered = 1 << iota
	flagStopOnError
	flagEach // send each outcome as its index ends, never held
)

const (
	errKindError   = 1
	errKindPanic   = 2
	errKindTimeout = 3 // a *TimeoutError: the limit, then the cause's type and message
	errKindFinal   = 4 // an error marked with retry.Permanent, as errKindError
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeRequest encodes a task; each: its worker must send every outcome
// as its index ends, never holding one (see holdOutcomes).
func encodeRequest(header []byte, t Task, each bool) []byte {
	b := make([]byte, 0, len(header)+2+len(t.Indices)*3)
	b = append(b, header...)
	var flags byte
	if t.Ordered {
		flags |= flagOrdered
	}
	if t.StopOnError {
		flags |= flagStopOnError
	}
	if each {
		flags |= flagEach
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

func decodeRequest(b []byte) (id string, params []byte, t Task, each bool, err error) {
	r := &reader{b: b}
	id = string(r.bytes())
	params = r.bytes()
	flags := r.byte()
	t.Ordered, t.StopOnError, each = flags&flagOrdered != 0, flags&flagStopOnError != 0, flags&flagEach != 0
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.err = errors.New("truncated")
	}
	if r.err != nil {
		return "", nil, Task{}, false, r.err
	}
	t.Indices = make([]int, n)
	for k := range t.Indices {
		t.Indices[k] = int(r.uvarint())
	}
	return id, params, t, each, r.err
}

// workerName is a worker's name for outcomes ("pid 4711"), made once.
type workerName struct {
	pid  int
	name string
}

func (w workerName) of(pid int) string {
	if pid == w.pid && w.name != "" {
		return w.name
	}
	return fmt.Sprintf("pid %d", pid)
}

// A record from a worker: a start (kind 0: the worker's pid), or the
// outcome of one index (kind 1).
const (
	recordStart   = 0
	recordOutcome = 1
)

func encodeStart(pid int) []byte {
	return binary.AppendUvarint([]byte{recordStart}, uint64(pid))
}

// appendOutcome appends the record of an outcome to b.
func appendOutcome(b []byte, pid int, o Outcome) []byte {
	b = binary.AppendUvarint(append(b, recordOutcome), uint64(pid))
	b = binary.AppendUvarint(b, uint64(o.Index))
	b = binary.AppendVarint(b, o.Started.UnixNano())
	b = binary.AppendVarint(b, o.Finished.UnixNano())
	if o.OK {
		b = append(b, 1)
		b = appendBytes(b, o.Output)
		return appendBytes(b, o.State)
	}
	b = append(b, 0)
	var pe *PanicError
	if errors.As(o.Err, &pe) {
		b = append(b, errKindPanic)
		b = appendString(b, "panic")
		b = appendString(b, fmt.Sprint(pe.Value))
		return appendString(b, pe.Stack)
	}
	var te *TimeoutError
	if errors.As(o.Err, &te) {
		b = append(b, errKindTimeout)
		b = binary.AppendVarint(b, int64(te.Limit))
		b = appendString(b, fmt.Sprintf("%T", te.Err))
		b = appendString(b, fmt.Sprint(te.Err))
		return appendString(b, "")
	}
	kind := byte(errKindError)
	if retry.IsPermanent(o.Err) {
		kind = errKindFinal
	}
	b = append(b, kind)
	b = appendString(b, fmt.Sprintf("%T", o.Err))
	b = appendString(b, o.Err.Error())
	return appendString(b, "")
}

// decodeRecord decodes the first record of b, from a worker, and returns
// the rest of b; w names the worker of the pid it comes from, which it
// usually is (see workerName).
func decodeRecord(b []byte, fn string, w workerName) (pid int, o Outcome, start bool, rest []byte, err error) {
	r := &reader{b: b}
	defer func() { rest = r.b }()
	kind := r.byte()
	pid = int(r.uvarint())
	if r.err == nil && kind == recordStart {
		return pid, o, true, nil, nil
	}
	if r.err == nil && kind != recordOutcome {
		return pid, o, false, nil, fmt.Errorf("a record of unknown kind %d", kind)
	}
	worker := w.of(pid)
	o.Index = int(r.uvarint())
	o.Worker = worker
	o.Started = time.Unix(0, r.varint())
	o.Finished = time.Unix(0, r.varint())
	if r.byte() == 1 {
		o.OK = true
		o.Output = r.bytes()
		o.State = r.bytes()
		return pid, o, false, nil, r.err
	}
	errKind := r.byte()
	var limit time.Duration
	if errKind == errKindTimeout {
		limit = time.Duration(r.varint())
	}
	typ, msg, stack := string(r.bytes()), string(r.bytes()), string(r.bytes())
	switch errKind {
	case errKindPanic:
		o.Err = &PanicError{Value: msg, Stack: stack, Worker: worker}
	case errKindTimeout:
		o.Err = &TimeoutError{Job: jobOf(fn), Index: o.Index, Limit: limit, Err: &proc.RemoteError{Worker: fn, PID: pid, Type: typ, Message: msg, Index: -1}}
	case errKindFinal:
		o.Err = retry.Permanent(&proc.RemoteError{Worker: fn, PID: pid, Type: typ, Message: msg, Index: -1})
	default:
		o.Err = &proc.RemoteError{Worker: fn, PID: pid, Type: typ, Message: msg, Index: -1}
	}
	return pid, o, false, nil, r.err
}

// jobOf is the job's name in the name of its worker code.
func jobOf(fn string) string {
	for _, prefix := range []string{"ferry.batch/", "batch "} {
		if strings.HasPrefix(fn, prefix) {
			return fn[len(prefix):]
		}
	}
	return fn
}
