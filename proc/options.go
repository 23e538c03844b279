package proc

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/ferrypipe/ferry/retry"
	"github.com/ferrypipe/ferry/shm"
)

// Options are checked by the compiler: an option that means nothing to a
// constructor is not one of its option types.
//
//   - Option configures the worker processes of every front door
//     (Iterate, RunPipeline, NewPool, NewFlatPool and their Shared forms).
//   - PoolOption configures a pool, one-to-one (NewPool) or one-to-many
//     (NewFlatPool): Workers, CallTimeout, Retries, RetryBackoff, …
//   - IterateOption configures an iterable (Iterate, RunPipeline):
//     InactivityTimeout.
//   - BufferSize configures what streams items: iterables and NewFlatPool.
//
// An Option is a PoolOption and an IterateOption; a PoolOption is a
// FlatPoolOption.
type Option interface {
	PoolOption
	IterateOption
}

// PoolOption configures NewPool and NewFlatPool.
type PoolOption interface {
	FlatPoolOption
	applyPool(*options)
}

// FlatPoolOption configures NewFlatPool: every PoolOption, and
// BufferSize.
type FlatPoolOption interface{ applyFlatPool(*options) }

// IterateOption configures Iterate, RunPipeline, IterateShared and
// RunPipelineShared.
type IterateOption interface{ applyIterate(*options) }

// StreamOption configures what streams items to its caller: Iterate,
// RunPipeline and NewFlatPool.
type StreamOption interface {
	IterateOption
	FlatPoolOption
}

// option is an Option for every front door.
type option func(*options)

func (f option) applyPool(o *options)     { f(o) }
func (f option) applyFlatPool(o *options) { f(o) }
func (f option) applyIterate(o *options)  { f(o) }

// poolOption is an option of pools only.
type poolOption func(*options)

func (f poolOption) applyPool(o *options)     { f(o) }
func (f poolOption) applyFlatPool(o *options) { f(o) }

// iterateOption is an option of iterables only.
type iterateOption func(*options)

func (f iterateOption) applyIterate(o *options) { f(o) }

// streamOption is an option of what streams items.
type streamOption func(*options)

func (f streamOption) applyIterate(o *options)  { f(o) }
func (f streamOption) applyFlatPool(o *options) { f(o) }

type options struct {
	binary       string
	env          []string
	gomaxprocs   int
	gomemlimit   int64
	initializers []*Initializer
	startTimeout time.Duration
	inactivity   time.Duration
	buffer       int
	logger       *slog.Logger
	grace        time.Duration
	arena        *shm.SegmentPool
	threshold    int // ArenaThreshold
	constants    []*shm.Constant
	memoryLimit  int64
	cpuProfile   string // CPUProfile's directory
	inProcess    bool

	workers     int
	maxCalls    int
	callTimeout time.Duration
	inFlight    int
	concurrency int
	retries     int
	backoff     retry.Backoff
	maxRestarts int
	callHook    CallHook
}

func defaultOptions() *options {
	return &options{
		startTimeout: 30 * time.Second,
		buffer:       64,
		grace:        500 * time.Millisecond,
		workers:      runtime.NumCPU(),
		inFlight:     16,
		concurrency:  1,
		maxRestarts:  -1,
		backoff:      retry.DefaultBackoff(),
		logger:       slog.Default(),
	}
}

func poolOptions(opts []PoolOption) *options {
	o := defaultOptions()
	for _, f := range opts {
		if f != nil {
			f.applyPool(o)
		}
	}
	return o.withDefaults()
}

func flatPoolOptions(opts []FlatPoolOption) *options {
	o := defaultOptions()
	for _, f := range opts {
		if f != nil {
			f.applyFlatPool(o)
		}
	}
	return o.withDefaults()
}

func iterateOptions(opts []IterateOption) *options {
	o := defaultOptions()
	o.maxRestarts = 0 // a pass that loses its worker fails; the next one gets no new worker
	for _, f := range opts {
		if f != nil {
			f.applyIterate(o)
		}
	}
	return o.withDefaults()
}

func (o *options) withDefaults() *options {
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// Binary runs workers from the executable at path instead of re-executing
// the current one. That program must call proc.Main first and register the
// same names.
func Binary(path string) Option { return option(func(o *options) { o.binary = path }) }

// Env adds "KEY=value" entries to the workers' environment.
func Env(kv ...string) Option { return option(func(o *options) { o.env = append(o.env, kv...) }) }

// GOMAXPROCS sets each worker's GOMAXPROCS.
func GOMAXPROCS(n int) Option { return option(func(o *options) { o.gomaxprocs = n }) }

// GOMEMLIMIT sets each worker's soft memory limit, in bytes.
func GOMEMLIMIT(bytes int64) Option { return option(func(o *options) { o.gomemlimit = bytes }) }

// Initializers run in each worker, in order, before it reports ready.
func Initializers(inits ...*Initializer) Option {
	return option(func(o *options) { o.initializers = append(o.initializers, inits...) })
}

// StartTimeout bounds the time from starting a worker to its being ready
// (default 30 s).
func StartTimeout(d time.Duration) Option { return option(func(o *options) { o.startTimeout = d }) }

// InactivityTimeout fails a pass of an Iterate or RunPipeline when the
// worker sends nothing for d (default: no limit).
func InactivityTimeout(d time.Duration) IterateOption {
	return iterateOption(func(o *options) { o.inactivity = d })
}

// BufferSize is how many items a worker may send ahead of the consumer:
// of a pass in Iterate and RunPipeline, of a call in NewFlatPool (default
// 64).
func BufferSize(n int) StreamOption { return streamOption(func(o *options) { o.buffer = n }) }

// Logger receives the workers' stderr lines and supervision events
// (default slog.Default()).
func Logger(l *slog.Logger) Option { return option(func(o *options) { o.logger = l }) }

// Grace is how long a worker may take to exit after it is asked to, before
// it is sent SIGTERM, and as long again before SIGKILL (default 500 ms).
func Grace(d time.Duration) Option { return option(func(o *options) { o.grace = d }) }

// Workers sets the number of worker processes of a Pool (default: the
// number of CPUs).
func Workers(n int) PoolOption { return poolOption(func(o *options) { o.workers = n }) }

// MaxCallsPerWorker recycles a Pool worker after it has served n calls, to
// contain leaks (default: never).
func MaxCallsPerWorker(n int) PoolOption { return poolOption(func(o *options) { o.maxCalls = n }) }

// CallTimeout bounds each Pool call. A call that takes longer fails with a
// *TimeoutError, and its worker is killed and replaced: the only way to
// stop code that does not return. The calls queued at that worker behind
// it, which had not started, run on other workers; those it was running
// (see Concurrency) fail with its *WorkerError, or run again with Retries.
// For a NewFlatPool call, the limit is on the worker's time to produce
// each output (and the end of the call after the last one) while the
// caller waits for it, not on the whole call, nor on the caller's own time
// with what came.
func CallTimeout(d time.Duration) PoolOption {
	return poolOption(func(o *options) { o.callTimeout = d })
}

// InFlight is how many calls a Pool keeps queued on each worker, so that a
// worker never idles for a round trip (default 16; more helps tiny calls, fewer limits what a crash or a timeout takes down).
func InFlight(n int) PoolOption { return poolOption(func(o *options) { o.inFlight = n }) }

// Concurrency is how many calls each Pool worker runs at once, in
// goroutines (default 1).
func Concurrency(n int) PoolOption { return poolOption(func(o *options) { o.concurrency = n }) }

// Retries lets a failed Pool call run again, up to n more times (default
// 0): a call whose function returned an error or panicked, that outlived
// CallTimeout, or that was running when its worker died (a crash, or a
// kill for another call's timeout). Each retry waits as RetryBackoff says
// first, and goes to whichever worker has room. Not retried: errors marked
// with retry.Permanent (also when the function returned them in a
// worker), pipeline.ErrSkip, codec errors, ErrClosed, and any call whose
// ctx has ended. A NewFlatPool call runs again only if it failed (its
// worker died, it timed out or panicked) before it yielded anything, an
// error included. Only use it for calls that are safe to repeat. Calls that had
// not started yet at a dead worker always run elsewhere, at once and
// without using a retry.
func Retries(n int) PoolOption { return poolOption(func(o *options) { o.retries = n }) }

// CallHook observes each call of a Pool or a FlatPool, for traces and
// metrics: it is called with the caller's context before the call is sent
// and returns the context to make the call with — its metadata crosses
// into the worker (package meta), so a span started here is the parent of
// the spans worker code starts — and a function called once, when the
// call has ended. pool is the registered function's name.
type CallHook func(ctx context.Context, pool string) (context.Context, func(CallEnd))

// CallEnd is how a call ended, for a CallHook.
type CallEnd struct {
	PID      int   // the worker of its last attempt (0: none was sent)
	Attempts int   // attempts sent to a worker (a retry, or a call run elsewhere after its worker died, adds one)
	Err      error // nil on success
}

// WithCallHook sets a Pool's or FlatPool's CallHook.
func WithCallHook(h CallHook) PoolOption { return poolOption(func(o *options) { o.callHook = h }) }

// RetryBackoff sets how long a Pool call waits before each retry (see
// Retries; default retry.DefaultBackoff(): 10 ms doubling to 1 s, half of
// it random). The wait ends early, with the call, when the call's ctx
// does. retry.Backoff{} retries at once.
func RetryBackoff(b retry.Backoff) PoolOption { return poolOption(func(o *options) { o.backoff = b }) }

// MaxRestarts bounds how many times a Pool replaces a worker that died;
// past it, calls fail with the last worker's error (default: no limit).
func MaxRestarts(n int) PoolOption { return poolOption(func(o *options) { o.maxRestarts = n }) }

// Arena makes pool the shared-memory arena of the workers, which map it
// (as their fd 4). Large values then cross the process boundary by
// reference to a segment instead of through the socket:
//
//   - Iterate and RunPipeline: every []byte item, and the numeric slices of
//     other items (see ArenaThreshold), worker to parent; the consumer gets
//     ordinary values of its own (one copy out of the segment).
//   - IterateShared and RunPipelineShared: []byte and Shared items, which
//     the consumer gets as views of the segments, without a copy.
//   - Pool: the numeric slices of call inputs (parent to worker) and of
//     outputs (worker to parent), each copied into a segment by its sender
//     and out of it by its receiver.
//
// The caller keeps the pool, and closes it after what uses it.
func Arena(pool *shm.SegmentPool) Option { return option(func(o *options) { o.arena = pool }) }

// MemoryLimit is a hard limit on the memory of each worker process, in
// bytes: a worker that needs more dies (the Go runtime's "out of memory"
// fatal error) and is reported as a *WorkerError whose MemoryLimit field is
// set, and a Pool replaces it. It is the worker's RLIMIT_DATA, set by the
// worker itself at start to what it has mapped then plus bytes, so that it
// bounds what the worker's code allocates (its heap, and memory that C
// code or the runtime maps), not the runtime's fixed reservations (under
// the race detector, its shadow memory). Shared-memory arenas and
// constants are not counted. Unlike GOMEMLIMIT, which only makes the
// garbage collector work harder, it cannot be exceeded.
func MemoryLimit(bytes int64) Option { return option(func(o *options) { o.memoryLimit = bytes }) }

// CPUProfile makes every worker write a CPU profile of its whole life to
// dir, as worker-NAME-PID.pprof (NAME is the registered work, with "/"
// made "_"), for `go tool pprof BINARY FILE`: the profile of the work
// itself, which a profile of the parent does not show. A worker writes it
// when it exits on its own terms (Close, recycling, the end of an
// iterable); one killed or crashed leaves a partial file or none. The
// stages and graph elements that run in it are labelled as in the parent
// (pipeline.ProfileLabel, graph.ProfileLabel).
func CPUProfile(dir string) Option { return option(func(o *options) { o.cpuProfile = dir }) }

// InProcess runs the worker side in this process, in goroutines, over the
// same protocol and socket as a worker process: for unit tests of
// registered code, which then run without re-executing the test binary and
// under a debugger. Results, errors and cancellation are those of a worker
// process; what needs a separate process is not available: a CallTimeout
// fails the call but cannot stop the function, MemoryLimit, GOMAXPROCS,
// GOMEMLIMIT, Env and Binary do not apply, and Arena is refused.
func InProcess() Option { return option(func(o *options) { o.inProcess = true }) }
