package shm

import (
	"log/slog"
	"os"
	"time"
)

// DefaultAcquireTimeout is how long Acquire waits for a free segment when
// the AcquireTimeout option is not given.
const DefaultAcquireTimeout = time.Minute

// An Option configures NewSegmentPool or OpenSegmentPool. Options apply to
// one mapping of a pool (one process's view of it), not to the shared pool.
type Option func(*options)

type options struct {
	acquireTimeout time.Duration
	name           string
	owner          uint32
	logger         *slog.Logger
}

func buildOptions(opts []Option) options {
	o := options{
		acquireTimeout: DefaultAcquireTimeout,
		name:           "ferry-shm",
		owner:          uint32(os.Getpid()),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// AcquireTimeout bounds how long Acquire waits for a free segment (default
// DefaultAcquireTimeout). With 0, Acquire fails at once when no segment is
// free; with a negative duration, only the context ends the wait.
func AcquireTimeout(d time.Duration) Option {
	return func(o *options) { o.acquireTimeout = d }
}

// Name sets the name of the pool's memfd (default "ferry-shm"), as shown in
// /proc/<pid>/maps and /proc/<pid>/fd. It is used by NewSegmentPool only.
func Name(name string) Option {
	return func(o *options) { o.name = name }
}

// Owner sets the owner id that this mapping records on the segments it
// leases and views (default: the process id). A supervisor frees whatever a
// dead process held with (*SegmentPool).ReclaimOwner(id).
func Owner(id uint32) Option {
	return func(o *options) { o.owner = id }
}

// Logger sets where the pool reports views and leases that were
// garbage-collected without being released (default slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}
