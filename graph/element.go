package graph

import (
	"context"
	"errors"
	"fmt"
)

// Frame is what travels on a link: a payload and what a stream of data
// needs around it.
type Frame[T any] struct {
	Data T
	// Seq is the frame's position on the source pad that emitted it (0,
	// 1, 2, …), set by the graph: errors and stats name frames by it, and
	// AlignBySeq matches frames by it.
	Seq uint64
	// EOS marks the last frame of its pad. A frame may carry data and EOS
	// at once; an element that ends without a last frame of data ends its
	// pads with an EOS frame that is a Gap.
	EOS bool
	// Gap marks a stretch with no data: Data is the zero value.
	Gap bool
	// Time and Rate are for time series, and zero when unused: Time is
	// the time of the frame's first sample (in nanoseconds, from an epoch
	// of the source's choosing) and Rate its samples per second. AlignByTime
	// matches frames by Time.
	Time int64
	Rate float64
	// Meta is free-form metadata, carried along as is.
	Meta map[string]string
	// Pad is the sink pad the frame arrived on, set by the graph when it
	// delivers the frame (ignored when a frame is emitted).
	Pad string
}

// Emitter sends frames on an element's source pads. Emit waits while the
// link of the pad is full (backpressure); pad "" is the element's only
// source pad. Emitting a frame with EOS set ends its pad. Emit returns an
// error once the run is stopping (and, for a source, once it is being
// drained): the element should return.
type Emitter[T any] interface {
	Emit(pad string, f Frame[T]) error
}

// Source is an element with source pads only. Run produces frames until
// its stream ends, then returns nil: the graph ends each pad it has not
// ended itself. ctx ends when the run is drained or stopped; a source that
// returns ctx's error then has ended cleanly.
type Source[Out any] interface {
	Run(ctx context.Context, out Emitter[Out]) error
}

// Transform is an element with sink pads and source pads. Process is
// called once per frame, as frames arrive on its sink pads (in.Pad says
// which), with the state of the element kept between calls. Frames that
// only mark the end of a pad (EOS and Gap) are not passed to Process: once
// every sink pad has ended, the graph calls Flush (if the element has it,
// see Flusher) and ends the source pads.
type Transform[In, Out any] interface {
	Process(ctx context.Context, in Frame[In], out Emitter[Out]) error
}

// Sink is an element with sink pads only; see Transform.
type Sink[In any] interface {
	Consume(ctx context.Context, in Frame[In]) error
}

// AlignedTransform is a transform whose sink pads are combined: each
// step holds one frame per sink pad, in the order of the element's sink
// pads, matched as its Align says. A pad with no frame for a step (it has
// ended, or its next frame is later in time) contributes a Gap frame.
type AlignedTransform[In, Out any] interface {
	ProcessStep(ctx context.Context, step []Frame[In], out Emitter[Out]) error
}

// AlignedSink is a sink whose sink pads are combined; see
// AlignedTransform.
type AlignedSink[In any] interface {
	ConsumeStep(ctx context.Context, step []Frame[In]) error
}

// Flusher is implemented by transforms that emit final frames at the end
// of their input: Flush is called once every sink pad has ended.
type Flusher[Out any] interface {
	Flush(ctx context.Context, out Emitter[Out]) error
}

// SinkFlusher is implemented by sinks that finish something at the end of
// their input (close a file, write a summary).
type SinkFlusher interface {
	Flush(ctx context.Context) error
}

// Setupper is implemented by elements that prepare before the first
// frame; an error fails the run before any frame flows.
type Setupper interface {
	Setup(ctx context.Context) error
}

// Teardowner is implemented by elements that release something at the
// end of the run, however it ends (once Setup has succeeded).
type Teardowner interface {
	Teardown(ctx context.Context) error
}

// SourceFunc makes a Source of a function.
func SourceFunc[Out any](fn func(ctx context.Context, out Emitter[Out]) error) Source[Out] {
	return sourceFunc[Out](fn)
}

type sourceFunc[Out any] func(context.Context, Emitter[Out]) error

func (f sourceFunc[Out]) Run(ctx context.Context, out Emitter[Out]) error { return f(ctx, out) }

// TransformFunc makes a Transform of a function.
func TransformFunc[In, Out any](fn func(ctx context.Context, in Frame[In], out Emitter[Out]) error) Transform[In, Out] {
	return transformFunc[In, Out](fn)
}

type transformFunc[In, Out any] func(context.Context, Frame[In], Emitter[Out]) error

func (f transformFunc[In, Out]) Process(ctx context.Context, in Frame[In], out Emitter[Out]) error {
	return f(ctx, in, out)
}

// Map makes a one-to-one Transform of a function of the data: each frame
// that carries data becomes one frame on the element's only source pad,
// with the same Time, Rate, Meta and EOS; a Gap frame passes as a Gap.
func Map[In, Out any](fn func(ctx context.Context, in In) (Out, error)) Transform[In, Out] {
	return transformFunc[In, Out](func(ctx context.Context, in Frame[In], out Emitter[Out]) error {
		f := Frame[Out]{EOS: in.EOS, Gap: in.Gap, Time: in.Time, Rate: in.Rate, Meta: in.Meta}
		if !in.Gap {
			v, err := fn(ctx, in.Data)
			if err != nil {
				return err
			}
			f.Data = v
		}
		return out.Emit("", f)
	})
}

// SinkFunc makes a Sink of a function.
func SinkFunc[In any](fn func(ctx context.Context, in Frame[In]) error) Sink[In] {
	return sinkFunc[In](fn)
}

type sinkFunc[In any] func(context.Context, Frame[In]) error

func (f sinkFunc[In]) Consume(ctx context.Context, in Frame[In]) error { return f(ctx, in) }

// AlignedTransformFunc makes an AlignedTransform of a function.
func AlignedTransformFunc[In, Out any](fn func(ctx context.Context, step []Frame[In], out Emitter[Out]) error) AlignedTransform[In, Out] {
	return alignedFunc[In, Out](fn)
}

type alignedFunc[In, Out any] func(context.Context, []Frame[In], Emitter[Out]) error

func (f alignedFunc[In, Out]) ProcessStep(ctx context.Context, step []Frame[In], out Emitter[Out]) error {
	return f(ctx, step, out)
}

// AlignedSinkFunc makes an AlignedSink of a function.
func AlignedSinkFunc[In any](fn func(ctx context.Context, step []Frame[In]) error) AlignedSink[In] {
	return alignedSinkFunc[In](fn)
}

type alignedSinkFunc[In any] func(context.Context, []Frame[In]) error

func (f alignedSinkFunc[In]) ConsumeStep(ctx context.Context, step []Frame[In]) error {
	return f(ctx, step)
}

// ErrDrained is what Emit returns to a source once the run is being
// drained: the source should return (its frames so far flow on).
var ErrDrained = errors.New("graph: the run is being drained")

// ErrStopped is what Emit returns once the run is stopping hard (an error
// elsewhere, Stop, or the drain deadline).
var ErrStopped = errors.New("graph: the run is stopping")

// ErrInterrupted is returned by a run drained by SIGINT or SIGTERM (see
// HandleSignals), so that a command can exit with status 130.
var ErrInterrupted = errors.New("graph: interrupted")

// ElementError is the error that ends a run: which element failed, at
// which frame, and why. Err is the element's error (for an element in a
// worker process, a *proc.RemoteError that unwraps to it when its type is
// registered, or a *proc.WorkerError when the worker died).
type ElementError struct {
	Element string
	Op      string // "setup", "run", "process", "flush", "teardown", "emit", "worker" or "start"
	Pad     string // the sink pad of the frame, for "process"; the source pad, for "emit"
	Seq     int64  // the frame's Seq, or -1 when there is no frame
	Err     error
}

func (e *ElementError) Error() string {
	switch {
	case e.Seq >= 0 && e.Pad != "":
		return fmt.Sprintf("graph: element %q: %s: pad %q frame %d: %v", e.Element, e.Op, e.Pad, e.Seq, e.Err)
	case e.Pad != "":
		return fmt.Sprintf("graph: element %q: %s: pad %q: %v", e.Element, e.Op, e.Pad, e.Err)
	}
	return fmt.Sprintf("graph: element %q: %s: %v", e.Element, e.Op, e.Err)
}

func (e *ElementError) Unwrap() error { return e.Err }
