package graph

import (
	"context"
	"errors"
	"reflect"

	"github.com/ferrypipe/ferry/proc"
)

// none is the Data type of the pads an element does not have.
type none = struct{}

// registered is implemented by the elements made by a registered kind
// (RegisterSource, …): they can run in a worker process.
type registered interface {
	kindName() string
	// construct makes the element in this process, its arguments passed
	// through the codec as they would be to a worker.
	construct() (any, error)
	// opener starts the element in a worker process.
	opener(n *node) func(r *Running) (closer, error)
}

// AddSource adds a source element named name (default source pad: "out").
func AddSource[Out any](g *Graph, name string, s Source[Out], opts ...ElementOption) SourceNode[Out] {
	n := newNode[none, Out](g, name, kindSource, s, []string{"out"})
	g.add(n, opts)
	return SourceNode[Out]{n}
}

// AddTransform adds a transform element (default pads: "in" and "out").
func AddTransform[In, Out any](g *Graph, name string, t Transform[In, Out], opts ...ElementOption) TransformNode[In, Out] {
	n := newNode[In, Out](g, name, kindTransform, t, []string{"out"})
	g.add(n, opts)
	return TransformNode[In, Out]{n}
}

// AddAligned adds a transform whose sink pads are combined into steps
// matched as align says (default pads: "in" and "out"; give it several
// sink pads with Inputs).
func AddAligned[In, Out any](g *Graph, name string, t AlignedTransform[In, Out], align Align, opts ...ElementOption) TransformNode[In, Out] {
	n := newNode[In, Out](g, name, kindTransform, t, []string{"out"})
	n.aligned, n.align = true, align
	g.add(n, opts)
	return TransformNode[In, Out]{n}
}

// AddSink adds a sink element (default sink pad: "in").
func AddSink[In any](g *Graph, name string, s Sink[In], opts ...ElementOption) SinkNode[In] {
	n := newNode[In, none](g, name, kindSink, s, nil)
	g.add(n, opts)
	return SinkNode[In]{n}
}

// AddAlignedSink adds a sink whose sink pads are combined into steps; see
// AddAligned.
func AddAlignedSink[In any](g *Graph, name string, s AlignedSink[In], align Align, opts ...ElementOption) SinkNode[In] {
	n := newNode[In, none](g, name, kindSink, s, nil)
	n.aligned, n.align = true, align
	g.add(n, opts)
	return SinkNode[In]{n}
}

func newNode[In, Out any](g *Graph, name string, k kind, elem any, outputs []string) *node {
	n := &node{name: name, kind: k, inputs: []string{"in"}, outputs: outputs,
		inType: reflect.TypeFor[In](), outType: reflect.TypeFor[Out]()}
	n.newLink = func(size int, producer, consumer *waker) any {
		l := newLink[Out](size)
		l.producer, l.consumer = producer, consumer
		return l
	}
	if elem == nil || reflect.ValueOf(elem).Kind() == reflect.Pointer && reflect.ValueOf(elem).IsNil() {
		g.errf("graph: element %q is nil", name)
	}
	makeElem := func() (any, error) { return elem, nil }
	if reg, ok := elem.(registered); ok {
		n.registered = reg.kindName()
		makeElem = reg.construct
		n.open = reg.opener(n)
		n.crossable = func() error {
			if err := checkNoInnerBuffer(reflect.TypeFor[In]()); err != nil {
				return err
			}
			if err := checkNoInnerBuffer(reflect.TypeFor[Out]()); err != nil {
				return err
			}
			var in In
			var out Out
			if _, err := proc.CodecOf[In]().Append(nil, in); err != nil {
				return err
			}
			_, err := proc.CodecOf[Out]().Append(nil, out)
			return err
		}
	}
	n.launch = func(r *Running, st *elementStats, reader *waker, ins []any, outs [][]any) func() error {
		if n.place == Process {
			return func() error { return runWorker[In, Out](r, n, st, reader, ins, outs) }
		}
		return func() error { return runLocal[In, Out](r, n, st, reader, ins, outs, makeElem) }
	}
	return n
}

// runLocal runs an element in this goroutine.
func runLocal[In, Out any](r *Running, n *node, st *elementStats, reader *waker, ins []any, outs [][]any, makeElem func() (any, error)) (err error) {
	elem, err := makeElem()
	if err != nil {
		return &ElementError{Element: n.name, Op: "setup", Seq: -1, Err: err}
	}
	c := newCore[In, Out](n.name, n.inputs, n.outputs, elem, n.maxFailures, &st.durations)
	running := n.kind == kindSource // a source's frames are refused once the run drains
	links := typedPads[Out](outs)
	c.emit = func(i int, f Frame[Out]) error {
		if !running {
			return sendFrame(r, st, i, links[i], &f, nil)
		}
		if r.draining.Load() {
			releaseFrames(f)
			return ErrDrained
		}
		return sendFrame(r, st, i, links[i], &f, r.drain)
	}
	c.failed = func(ee *ElementError) {
		st.failures.Add(1)
		r.g.o.logger.Warn("graph: a frame failed", "element", n.name, "pad", ee.Pad, "seq", ee.Seq, "err", ee.Err)
	}
	ctx := r.ctx
	if err := c.setup(ctx); err != nil {
		return err
	}
	defer func() {
		if terr := c.teardown(context.WithoutCancel(ctx)); err == nil {
			err = terr
		}
	}()
	if n.kind == kindSource {
		err = c.runSource(r.drain)
		running = false
	} else {
		err = feed(r, n, st, reader, ins,
			func(f Frame[In]) error { return c.process(ctx, f) },
			func(step []Frame[In]) error { return c.processStep(ctx, step) })
		if err == nil {
			err = c.flush(ctx)
		}
	}
	if err == nil {
		err = c.endPads()
	}
	return err
}

// errWorkerEnded stops feeding a worker whose element has ended: its
// outputs say why.
var errWorkerEnded = errors.New("graph: the worker's element has ended")
