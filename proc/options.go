package proc

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/ferrypipe/ferry/shm"
)

// Option configures worker processes: those of an Iterate, a RunPipeline
// or a Pool.
type Option func(*options)

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

	workers     int
	maxCalls    int
	callTimeout time.Duration
	inFlight    int
	concurrency int
	retries     int
	maxRestarts int
}

func newOptions(opts []Option) *options {
	o := &options{
		startTimeout: 30 * time.Second,
		buffer:       64,
		grace:        500 * time.Millisecond,
		workers:      runtime.NumCPU(),
		inFlight:     16,
		concurrency:  1,
		maxRestarts:  -1,
	}
	for _, f := range opts {
		f(o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// Binary runs workers from the executable at path instead of re-executing
// the current one. That program must call proc.Main first and register the
// same names.
func Binary(path string) Option { return func(o *options) { o.binary = path } }

// Env adds "KEY=value" entries to the workers' environment.
func Env(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// GOMAXPROCS sets each worker's GOMAXPROCS.
func GOMAXPROCS(n int) Option { return func(o *options) { o.gomaxprocs = n } }

// GOMEMLIMIT sets each worker's soft memory limit, in bytes.
func GOMEMLIMIT(bytes int64) Option { return func(o *options) { o.gomemlimit = bytes } }

// Initializers run in each worker, in order, before it reports ready.
func Initializers(inits ...*Initializer) Option {
	return func(o *options) { o.initializers = append(o.initializers, inits...) }
}

// StartTimeout bounds the time from starting a worker to its being ready
// (default 30 s).
func StartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// InactivityTimeout fails a pass of an Iterate or RunPipeline when the
// worker sends nothing for d (default: no limit).
func InactivityTimeout(d time.Duration) Option { return func(o *options) { o.inactivity = d } }

// BufferSize is how many items a worker may send ahead of the consumer in
// Iterate and RunPipeline (default 64).
func BufferSize(n int) Option { return func(o *options) { o.buffer = n } }

// Logger receives the workers' stderr lines and supervision events
// (default slog.Default()).
func Logger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Grace is how long a worker may take to exit after it is asked to, before
// it is sent SIGTERM, and as long again before SIGKILL (default 500 ms).
func Grace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// Workers sets the number of worker processes of a Pool (default: the
// number of CPUs).
func Workers(n int) Option { return func(o *options) { o.workers = n } }

// MaxCallsPerWorker recycles a Pool worker after it has served n calls, to
// contain leaks (default: never).
func MaxCallsPerWorker(n int) Option { return func(o *options) { o.maxCalls = n } }

// CallTimeout bounds each Pool call. A call that takes longer fails with a
// *TimeoutError, and its worker is killed and replaced: the only way to
// stop code that does not return.
func CallTimeout(d time.Duration) Option { return func(o *options) { o.callTimeout = d } }

// InFlight is how many calls a Pool keeps queued on each worker, so that a
// worker never idles for a round trip (default 16; more helps tiny calls, fewer limits what a crash or a timeout takes down).
func InFlight(n int) Option { return func(o *options) { o.inFlight = n } }

// Concurrency is how many calls each Pool worker runs at once, in
// goroutines (default 1).
func Concurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// Retries lets a Pool call that was lost with its worker (crash or
// timeout) run again on another worker, up to n more times (default 0).
// Only use it for calls that are safe to repeat.
func Retries(n int) Option { return func(o *options) { o.retries = n } }

// MaxRestarts bounds how many times a Pool replaces a worker that died;
// past it, calls fail with the last worker's error (default: no limit).
func MaxRestarts(n int) Option { return func(o *options) { o.maxRestarts = n } }

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
func Arena(pool *shm.SegmentPool) Option { return func(o *options) { o.arena = pool } }
