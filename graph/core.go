package graph

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrypipe/ferry/internal/hist"
	"github.com/ferrypipe/ferry/shm"
)

// core runs one element: it calls its methods, keeps its failure budget,
// times its calls, numbers the frames it emits and ends its pads. The same
// code runs the element in a goroutine and in a worker process, so that
// placement changes nothing of what an element does.
type core[In, Out any] struct {
	name    string
	inputs  []string
	outputs []string
	elem    any
	// emit sends a numbered frame on source pad i, where the element runs.
	emit func(i int, f Frame[Out]) error
	// failed is told of a failure within the budget.
	failed func(err *ElementError)

	maxFailures int
	failures    int
	mu          sync.Mutex // Emit's
	seq         []uint64
	ended       []bool
	durations   *hist.Histogram

	// Frames of *shm.Buffer (see buffer.go), under mu: the Buffers of the
	// frames of the current call. With hold (in a worker process), what a
	// call emits is sent when it returns, so that a Buffer it received and
	// passed on can move instead of being copied.
	bufIn, bufOut bool
	hold          bool
	inCall        bool
	borrowed      []*shm.Buffer
	held          []heldFrame[Out]
}

type heldFrame[T any] struct {
	i int
	f Frame[T]
}

func newCore[In, Out any](name string, inputs, outputs []string, elem any, maxFailures int, durations *hist.Histogram) *core[In, Out] {
	return &core[In, Out]{name: name, inputs: inputs, outputs: outputs, elem: elem, maxFailures: maxFailures,
		seq: make([]uint64, len(outputs)), ended: make([]bool, len(outputs)), durations: durations,
		bufIn: isBuffer[In](), bufOut: isBuffer[Out]()}
}

// lend records the Buffers of the frames of a call, which the call holds
// until it returns.
func (c *core[In, Out]) lend(frames ...Frame[In]) {
	if !c.bufIn {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inCall = true
	for i := range frames {
		if b := bufferOf(&frames[i]); b != nil {
			c.borrowed = append(c.borrowed, b)
		}
	}
}

// settle releases, when a call returns, the Buffers of its frames, then
// sends what the call emitted and hold kept back: a Buffer it passed on is
// then held by its frame alone, and its segment moves.
func (c *core[In, Out]) settle() error {
	if !c.bufIn {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inCall = false
	for _, b := range c.borrowed {
		b.Release()
	}
	clear(c.borrowed)
	c.borrowed = c.borrowed[:0]
	var err error
	for _, h := range c.held {
		if err != nil {
			releaseFrames(h.f) // not sent: the run is ending
			continue
		}
		err = c.emit(h.i, h.f)
	}
	clear(c.held)
	c.held = c.held[:0]
	return err
}

// take gives the frame being emitted its reference to b: a new one if b
// is one of the call's frames (the call holds that one until it returns),
// otherwise the caller's. Under mu.
func (c *core[In, Out]) take(b *shm.Buffer) {
	for _, x := range c.borrowed {
		if x == b {
			b.Retain()
			return
		}
	}
}

// Emit is the element's Emitter. Elements that emit from several
// goroutines take turns.
func (c *core[In, Out]) Emit(pad string, f Frame[Out]) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	// held is the frame's Buffer until emit takes it, sent or not; one
	// that does not go there is released.
	var held *shm.Buffer
	if c.bufOut {
		if held = bufferOf(&f); held != nil {
			c.take(held)
			defer func() {
				if held != nil {
					held.Release()
				}
			}()
		}
	}
	i := -1
	switch {
	case pad == "" && len(c.outputs) == 1:
		i = 0
	default:
		for j, p := range c.outputs {
			if p == pad {
				i = j
				break
			}
		}
	}
	if i < 0 {
		return &ElementError{Element: c.name, Op: "emit", Pad: pad, Seq: -1,
			Err: fmt.Errorf("no such source pad (the element's source pads: %q)", c.outputs)}
	}
	if c.ended[i] {
		return &ElementError{Element: c.name, Op: "emit", Pad: c.outputs[i], Seq: -1, Err: errors.New("a frame after the pad's end-of-stream")}
	}
	f.Seq, f.Pad = c.seq[i], ""
	if f.Gap {
		var zero Out
		f.Data = zero
	}
	if !f.Gap {
		held = nil // emit's now
	}
	if c.hold && c.inCall {
		c.held = append(c.held, heldFrame[Out]{i, f})
		c.seq[i]++
		c.ended[i] = f.EOS
		return nil
	}
	if err := c.emit(i, f); err != nil {
		return err // not sent: its Seq and its end are still to come
	}
	c.seq[i]++
	c.ended[i] = f.EOS
	return nil
}

// wrap turns an element's error into an *ElementError, unless it is one
// (an Emit error, passed through).
func (c *core[In, Out]) wrap(op, pad string, seq int64, err error) error {
	if err == nil {
		return nil
	}
	var ee *ElementError
	if errors.As(err, &ee) && ee.Element == c.name {
		return err
	}
	if errors.Is(err, ErrStopped) {
		return err
	}
	return &ElementError{Element: c.name, Op: op, Pad: pad, Seq: seq, Err: err}
}

// budget decides whether a failed frame fails the run: within the budget,
// it is reported and dropped.
func (c *core[In, Out]) budget(err error) error {
	var ee *ElementError
	if err == nil || errors.Is(err, ErrStopped) || !errors.As(err, &ee) || ee.Op != "process" || c.failures >= c.maxFailures {
		return err
	}
	c.failures++
	if c.failed != nil {
		c.failed(ee)
	}
	return nil
}

func (c *core[In, Out]) setup(ctx context.Context) error {
	if s, ok := c.elem.(Setupper); ok {
		return c.wrap("setup", "", -1, protect(func() error { return s.Setup(ctx) }))
	}
	return nil
}

func (c *core[In, Out]) teardown(ctx context.Context) error {
	if t, ok := c.elem.(Teardowner); ok {
		return c.wrap("teardown", "", -1, protect(func() error { return t.Teardown(ctx) }))
	}
	return nil
}

// runSource runs a source until it returns; its ending by ctx (a drain) is
// a clean end.
func (c *core[In, Out]) runSource(ctx context.Context) error {
	s := c.elem.(Source[Out])
	err := protect(func() error { return s.Run(ctx, c) })
	if err != nil && ctx.Err() != nil && (errors.Is(err, ctx.Err()) || errors.Is(err, ErrDrained)) {
		err = nil
	}
	if errors.Is(err, ErrDrained) {
		err = nil
	}
	return c.wrap("run", "", -1, err)
}

// process runs the element on one frame.
func (c *core[In, Out]) process(ctx context.Context, f Frame[In]) error {
	c.lend(f)
	start := time.Now()
	var err error
	switch e := c.elem.(type) {
	case Transform[In, Out]:
		err = protect(func() error { return e.Process(ctx, f, c) })
	case Sink[In]:
		err = protect(func() error { return e.Consume(ctx, f) })
	default:
		err = fmt.Errorf("%T takes steps, not frames", c.elem)
	}
	c.durations.Record(time.Since(start))
	if serr := c.settle(); err == nil {
		err = serr
	}
	return c.budget(c.wrap("process", f.Pad, int64(f.Seq), err))
}

// processStep runs an aligned element on one step.
func (c *core[In, Out]) processStep(ctx context.Context, step []Frame[In]) error {
	c.lend(step...)
	start := time.Now()
	var err error
	switch e := c.elem.(type) {
	case AlignedTransform[In, Out]:
		err = protect(func() error { return e.ProcessStep(ctx, step, c) })
	case AlignedSink[In]:
		err = protect(func() error { return e.ConsumeStep(ctx, step) })
	default:
		err = fmt.Errorf("%T takes frames, not steps", c.elem)
	}
	c.durations.Record(time.Since(start))
	if serr := c.settle(); err == nil {
		err = serr
	}
	pad, seq := "", int64(-1)
	for _, f := range step { // the step's first frame of data names it
		if !f.Gap {
			pad, seq = f.Pad, int64(f.Seq)
			break
		}
	}
	return c.budget(c.wrap("process", pad, seq, err))
}

// flush calls the element's Flush, at the end of its input.
func (c *core[In, Out]) flush(ctx context.Context) error {
	var err error
	switch e := c.elem.(type) {
	case Flusher[Out]:
		err = protect(func() error { return e.Flush(ctx, c) })
	case SinkFlusher:
		err = protect(func() error { return e.Flush(ctx) })
	}
	return c.wrap("flush", "", -1, err)
}

// endPads ends every source pad the element has not ended.
func (c *core[In, Out]) endPads() error {
	for i, ended := range c.ended {
		if !ended {
			if err := c.Emit(c.outputs[i], Frame[Out]{EOS: true, Gap: true}); err != nil {
				return err
			}
		}
	}
	return nil
}

// panicError is a panic in an element.
type panicError struct {
	value any
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

func protect(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v}
		}
	}()
	return fn()
}
