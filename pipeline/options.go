package pipeline

import (
	"context"
	"log/slog"
	"time"
)

// StageOption configures one stage.
type StageOption func(*stageOptions)

type stageOptions struct {
	name        string // given with Name: must be unique
	defName     string // the stage's own default, made unique if taken
	concurrency int
	ordered     bool
	buffer      int
	budget      *Budget
	dropLast    bool
	flushAfter  time.Duration
}

// defaultBuffer is the default capacity, in items, of the queue after a stage.
const defaultBuffer = 64

func stageOpts(opts []StageOption) stageOptions {
	o := stageOptions{concurrency: 1, buffer: defaultBuffer}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Name names the stage in stats, logs and errors. Names must be unique
// within a pipeline (and "sink" is the output queue's): Build fails on a
// duplicate. By default a stage is named after its function ("decode" for
// a function decode, "Pool.Call" for the method value pool.Call) or its
// kind ("aggregate", "merge", …), with a "#2", "#3", … suffix when two
// stages would share a default name.
func Name(name string) StageOption { return func(o *stageOptions) { o.name = name } }

// defaultName names a stage that has no Name; unlike Name, a default that
// is taken gets a "#k" suffix instead of failing Build.
func defaultName(name string) StageOption { return func(o *stageOptions) { o.defName = name } }

// Concurrency sets how many calls of the stage function may run at once
// (default 1).
func Concurrency(n int) StageOption { return func(o *stageOptions) { o.concurrency = n } }

// Ordered makes a concurrent stage emit its outputs in input order. The
// stage then holds at most about 2×concurrency unfinished tasks for
// reordering. By default outputs leave in completion order.
func Ordered() StageOption { return func(o *stageOptions) { o.ordered = true } }

// Buffer sets the capacity, in items, of the queue after the stage
// (default 64). Items move in chunks of up to 64, so the queue holds about
// that many items; lower it for large items.
func Buffer(n int) StageOption { return func(o *stageOptions) { o.buffer = n } }

// StageMaxFailures sets the stage's own failure budget. Without it, a stage
// uses the pipeline's MaxFailures budget, or tolerates no failure at all.
func StageMaxFailures(b Budget) StageOption { return func(o *stageOptions) { o.budget = &b } }

// DropLast makes Aggregate drop the last, incomplete batch of each epoch
// instead of emitting it.
func DropLast() StageOption { return func(o *stageOptions) { o.dropLast = true } }

// FlushAfter makes Aggregate (and AggregateWith) emit a partial aggregate
// once its first item has waited d, instead of holding it until the
// aggregate is full or the epoch ends: a slow or bursty source, such as a
// channel, then gets its items through within about d. It bounds the wait
// for items, not the time the next stage takes to accept the aggregate.
// The default, 0, waits for a full aggregate or the end of the epoch.
func FlushAfter(d time.Duration) StageOption { return func(o *stageOptions) { o.flushAfter = d } }

// Option configures a pipeline at Build.
type Option func(*buildOptions)

type buildOptions struct {
	continuous   bool
	epochs       uint64
	budget       *Budget
	logger       *slog.Logger
	crashOnPanic bool
	report       time.Duration
	hooks        Hooks
	background   []backgroundTask
}

type backgroundTask struct {
	name string
	fn   func(context.Context) error
}

// Hooks let users observe stages and tasks, e.g. for their own metrics or
// tracing. Each field may be nil.
type Hooks struct {
	// Stage is called when a stage's goroutine starts; the function it
	// returns is called when that goroutine stops.
	Stage func(stage string) (stop func())
	// Task is called before each call of a stage function with the call's
	// context; it returns the context the call is made with (ctx, or one
	// derived from it: a span, metadata for worker processes, see package
	// meta; nil means ctx) and a function called after the call with its
	// error (nil on success), or nil.
	Task func(ctx context.Context, stage string) (context.Context, func(err error))
}

// ProfileLabel is the pprof label that names the stage a goroutine runs
// (in a CPU or goroutine profile: `go tool pprof -tagfocus`).
const ProfileLabel = "ferry.stage"

// Continuous makes every source start its next pass as soon as the last one
// ends, so the pipeline stays warm across epochs. Each pass is one epoch.
func Continuous() Option { return func(o *buildOptions) { o.continuous = true } }

// Epochs limits the pipeline to n passes over its sources. After the last
// one, Epoch and Next report ErrStopped. With Continuous, this keeps sources
// from running ahead into passes nobody will read.
func Epochs(n int) Option { return func(o *buildOptions) { o.epochs = uint64(max(n, 0)) } }

// MaxFailures sets the pipeline-wide failure budget, judged against the
// number of items produced by the sources, and the default budget of every
// stage. Without it, any failure stops the pipeline.
func MaxFailures(b Budget) Option { return func(o *buildOptions) { o.budget = &b } }

// Logger sets the logger for failures and stats (default slog.Default()).
func Logger(l *slog.Logger) Option { return func(o *buildOptions) { o.logger = l } }

// CrashOnPanic lets a panic in a stage function crash the program instead
// of failing the item.
func CrashOnPanic() Option { return func(o *buildOptions) { o.crashOnPanic = true } }

// ReportStats logs a snapshot of every stage and queue every interval.
func ReportStats(every time.Duration) Option { return func(o *buildOptions) { o.report = every } }

// WithHooks installs stage and task hooks. Several (in one call or in
// several) all run: their Stage and Task hooks in the order given, each
// Task hook getting the context the one before returned, and the functions
// they return in the reverse order.
func WithHooks(hs ...Hooks) Option {
	return func(o *buildOptions) {
		for _, h := range hs {
			o.hooks = chainHooks(o.hooks, h)
		}
	}
}

// chainHooks returns hooks that run a, then b.
func chainHooks(a, b Hooks) Hooks {
	out := Hooks{Stage: a.Stage, Task: a.Task}
	switch {
	case a.Stage == nil:
		out.Stage = b.Stage
	case b.Stage != nil:
		out.Stage = func(stage string) func() {
			stopA, stopB := a.Stage(stage), b.Stage(stage)
			return func() {
				if stopB != nil {
					stopB()
				}
				if stopA != nil {
					stopA()
				}
			}
		}
	}
	switch {
	case a.Task == nil:
		out.Task = b.Task
	case b.Task != nil:
		out.Task = func(ctx context.Context, stage string) (context.Context, func(error)) {
			ctxA, doneA := a.Task(ctx, stage)
			if ctxA != nil {
				ctx = ctxA
			}
			ctxB, doneB := b.Task(ctx, stage)
			if ctxB != nil {
				ctx = ctxB
			}
			return ctx, func(err error) {
				if doneB != nil {
					doneB(err)
				}
				if doneA != nil {
					doneA(err)
				}
			}
		}
	}
	return out
}

// Background runs fn for as long as the pipeline lives; its context is
// cancelled at Close. An error other than that cancellation fails the
// pipeline.
func Background(name string, fn func(ctx context.Context) error) Option {
	return func(o *buildOptions) { o.background = append(o.background, backgroundTask{name, fn}) }
}
