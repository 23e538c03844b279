package proc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ferrypipe/ferry/internal/platform"
)

// ErrClosed is returned by an Iterable or Pool that has been closed.
var ErrClosed = errors.New("proc: closed")

// ErrUnsupported is the cause of the error of every front door (NewPool,
// NewFlatPool, Iterate, IterateShared, RunPipeline, RunPipelineShared,
// OpenDuplex, InProcess included) on an OS other than Linux: worker
// processes are made of Linux's memfds, SCM_RIGHTS, parent-death signal and
// process groups. Its message names the OS. It is the same error as
// shm.ErrUnsupported, and matches errors.ErrUnsupported. Main is a no-op
// there, so a program that calls it runs its goroutine stages as usual.
var ErrUnsupported = platform.ErrUnsupported

// ErrBusy is returned when a second pass starts while one is in progress.
var ErrBusy = errors.New("proc: a pass over this iterable is already in progress")

// WorkerError reports a worker process that died or was killed.
type WorkerError struct {
	Name     string // registered name the worker ran
	PID      int
	ExitCode int    // exit status, or -1 if a signal ended it
	Signal   string // the signal that ended it, if any
	Stderr   string // the last lines it wrote to stderr
	Reason   string // why ferry killed it, if it did (e.g. a call timeout)
	// MemoryLimit is the worker's MemoryLimit, in bytes, when it died
	// because it needed more memory; 0 otherwise.
	MemoryLimit int64
}

// Error describes the worker's end: why ferry killed it, or that it ran out
// of memory, or the signal that ended it, or its exit status; and the end
// of its stderr.
func (e *WorkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proc: worker %q (pid %d) ", e.Name, e.PID)
	switch {
	case e.Reason != "":
		fmt.Fprintf(&b, "was killed: %s", e.Reason)
	case e.MemoryLimit > 0:
		fmt.Fprintf(&b, "ran out of memory (its MemoryLimit is %d bytes)", e.MemoryLimit)
	case e.Signal != "":
		fmt.Fprintf(&b, "was killed by signal %s", e.Signal)
	default:
		fmt.Fprintf(&b, "exited with status %d", e.ExitCode)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, "; stderr ends with:\n%s", s)
	}
	return b.String()
}

// RemoteError is an error returned, or a panic raised, by code running in a
// worker process.
//
// Its Unwrap method returns the registered errors the worker found in the
// error's chain (see RegisterErrors), rebuilt in this process: the
// sentinels it matched (context.Canceled, pipeline.ErrSkip, io.EOF,
// fs.ErrNotExist...) and the values of registered error types (*CodecError,
// *fs.PathError...), so that errors.Is and errors.As give the answers they
// would give in the worker. A RemoteError also stands for an unregistered
// error held in a field of a rebuilt one (such as CodecError.Err): its
// Error method then returns the original message alone.
type RemoteError struct {
	Worker    string // registered name
	PID       int
	Type      string // Go type of the error (e.g. "*fs.PathError"), or "panic"
	Message   string // the error's message, or the panic value
	Stack     string // the worker's stack, for panics
	Index     int64  // index of the item within its pass, or -1 for calls
	PanicType string // Go type of the panic value (e.g. "runtime.boundsError"), for panics

	errs  []error // rebuilt registered errors, for Unwrap
	cause bool    // held in a field of another error: Error is the message alone
}

// Error describes the error with the worker that raised it, e.g.
//
//	proc: worker "decode" (pid 4242), item 7: open x.json: no such file or directory (*fs.PathError)
func (e *RemoteError) Error() string {
	if e.cause {
		return e.Message
	}
	where := fmt.Sprintf("worker %q (pid %d)", e.Worker, e.PID)
	if e.Index >= 0 {
		where += fmt.Sprintf(", item %d", e.Index)
	}
	if e.Type == "panic" {
		return fmt.Sprintf("proc: %s: panic: %s", where, e.Message)
	}
	switch e.Type {
	case "", "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		// Types that say nothing the message does not.
		return fmt.Sprintf("proc: %s: %s", where, e.Message)
	}
	return fmt.Sprintf("proc: %s: %s (%s)", where, e.Message, e.Type)
}

// Unwrap returns the registered sentinel errors and typed errors that the
// worker found in the error's chain, rebuilt in this process (see
// RegisterErrors); nil if there were none.
func (e *RemoteError) Unwrap() []error { return e.errs }

// TimeoutError is a call or pass that took longer than its timeout. For a
// Pool call, the worker running it was killed and replaced.
type TimeoutError struct {
	Name  string // registered name
	What  string // "call", "start", "inactivity"
	Limit string // the timeout
}

// Error names what timed out and the limit.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("proc: %q: %s timed out after %s", e.Name, e.What, e.Limit)
}
