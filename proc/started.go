package proc

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// envStarted names the fd of a worker's start counter (see startCounter).
const envStarted = "FERRY_WORKER_STARTED_FD"

// startCounter is one word of memory shared by a worker and its parent:
// how many pieces of work (calls and streams, in the order they arrived)
// the worker has started. The worker counts without a system call; the
// parent reads it once the worker is dead, to know exactly which of the
// tasks it had sent had started — a reply still in the worker's socket
// buffer when it died does not make a task that had started look queued.
type startCounter struct {
	mem []byte        // the mapping, or a plain slice in process
	n   *atomic.Int64 // its first word
}

// newStartCounter maps a fresh counter, and returns the memfd to hand to
// the worker (the caller closes it once the worker has started).
func newStartCounter() (*startCounter, *os.File, error) {
	fd, err := newCounterFile()
	if err != nil {
		return nil, nil, fmt.Errorf("proc: a start counter: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ferry-started")
	c, err := mapStartCounter(fd)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return c, f, nil
}

// mapStartCounter maps the counter in the memfd fd (sizing it if needed).
func mapStartCounter(fd int) (*startCounter, error) {
	const size = 8
	mem, err := mapShared(fd, size)
	if err != nil {
		return nil, fmt.Errorf("proc: mapping the start counter: %w", err)
	}
	return &startCounter{mem: mem, n: (*atomic.Int64)(unsafe.Pointer(&mem[0]))}, nil
}

// inProcessCounter is a counter in this process's memory, for InProcess.
func inProcessCounter() *startCounter {
	var n atomic.Int64
	return &startCounter{n: &n}
}

// openStartCounter maps the counter the parent passed as fd v.
func openStartCounter(v string) (*startCounter, error) {
	fd, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("bad %s %q", envStarted, v)
	}
	defer closeFD(fd)
	return mapStartCounter(fd)
}

// close unmaps the counter.
func (c *startCounter) close() {
	if c != nil && c.mem != nil {
		unmap(c.mem)
		c.mem = nil
	}
}
