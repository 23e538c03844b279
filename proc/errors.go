package proc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ferrypipe/ferry/internal/wire"
)

// ErrClosed is returned by an Iterable or Pool that has been closed.
var ErrClosed = errors.New("proc: closed")

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
}

func (e *WorkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proc: worker %q (pid %d) ", e.Name, e.PID)
	switch {
	case e.Reason != "":
		fmt.Fprintf(&b, "was killed: %s", e.Reason)
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
type RemoteError struct {
	Worker  string // registered name
	PID     int
	Type    string // Go type of the error (e.g. "*fs.PathError"), or "panic"
	Message string
	Stack   string // the worker's stack, for panics
	Index   int64  // index of the item within its pass, or -1 for calls
}

func (e *RemoteError) Error() string {
	where := fmt.Sprintf("worker %q (pid %d)", e.Worker, e.PID)
	if e.Index >= 0 {
		where += fmt.Sprintf(", item %d", e.Index)
	}
	if e.Type == "panic" {
		return fmt.Sprintf("proc: %s: panic: %s", where, e.Message)
	}
	switch e.Type {
	case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		// Types that say nothing the message does not.
		return fmt.Sprintf("proc: %s: %s", where, e.Message)
	}
	return fmt.Sprintf("proc: %s: %s (%s)", where, e.Message, e.Type)
}

// TimeoutError is a call or pass that took longer than its timeout. For a
// Pool call, the worker running it was killed and replaced.
type TimeoutError struct {
	Name  string // registered name
	What  string // "call", "start", "inactivity"
	Limit string // the timeout
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("proc: %q: %s timed out after %s", e.Name, e.What, e.Limit)
}

func remoteError(name string, pid int, m wire.ErrorMsg) *RemoteError {
	return &RemoteError{Worker: name, PID: pid, Type: m.Type, Message: m.Message, Stack: m.Stack, Index: m.Index}
}
