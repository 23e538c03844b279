package graph

import (
	"context"
	"fmt"
	"reflect"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// Frames of *shm.Buffer cross between processes without a copy. Each
// frame on a link holds one reference to its Buffer; the graph hands it
// over as the frame moves:
//
//   - an element's call (Process, Consume, a step) holds the references of
//     the frames it was given, and the graph releases them when it
//     returns;
//   - Emit gives the frame a reference of its own to a Buffer that is one
//     of the call's frames (so it may be emitted any number of times), and
//     takes the caller's reference to any other (one from NewBuffer, or
//     one it retained), sent or not;
//   - in a worker process, what a call emits is sent when it returns,
//     after its own references are released: a Buffer passed on is then
//     held by its frame alone;
//   - a source pad linked to several sink pads holds one reference per
//     link; frames left on links when a run ends are released;
//   - a frame sent to or from a worker process gives its reference away
//     (shm.Buffer.Send): the segment changes hands when nobody else holds
//     the Buffer, and is copied otherwise.
//
// So a Buffer written by a source, read by a transform in a worker process
// and consumed by a sink crosses both ways with no copy at all.

var bufferType = reflect.TypeFor[*shm.Buffer]()

// isBuffer reports whether frames of T hold a *shm.Buffer.
func isBuffer[T any]() bool { return reflect.TypeFor[T]() == bufferType }

// bufferOf returns the Buffer of f, if T is *shm.Buffer (check isBuffer
// first: for other types the conversion may allocate).
func bufferOf[T any](f *Frame[T]) *shm.Buffer {
	b, _ := any(f.Data).(*shm.Buffer)
	return b
}

type arenaKey struct{}

// withArena gives the elements of a run the arena their NewBuffer uses.
func withArena(ctx context.Context, arena *shm.SegmentPool) context.Context {
	if arena == nil {
		return ctx
	}
	return context.WithValue(ctx, arenaKey{}, arena)
}

// NewBuffer returns a Buffer of n bytes for a frame, which the caller
// holds (see Emitter): in the shared-memory arena of the run (see Arena;
// in a worker process, the worker's) when there is one, so that it
// crosses to and from worker processes without a copy, and in ordinary
// memory otherwise. ctx is the element's (or one derived from it); the
// Buffer must fit in a segment of the arena (*shm.TooLargeError).
func NewBuffer(ctx context.Context, n int) (*shm.Buffer, error) {
	arena, _ := ctx.Value(arenaKey{}).(*shm.SegmentPool)
	if arena == nil {
		arena = proc.WorkerArena()
	}
	return shm.NewBuffer(ctx, arena, n)
}

// releaseFrames releases the Buffers of frames that nobody will take.
func releaseFrames[T any](frames ...Frame[T]) {
	if !isBuffer[T]() {
		return
	}
	for i := range frames {
		if b := bufferOf(&frames[i]); b != nil {
			b.Release()
		}
	}
}

// checkNoInnerBuffer fails for a frame type that holds a *shm.Buffer other
// than as the frame's Data itself: the graph manages the references of
// Frame[*shm.Buffer] only, and could not give such a Buffer away to a
// worker process.
func checkNoInnerBuffer(t reflect.Type) error {
	if t == bufferType {
		return nil
	}
	seen := map[reflect.Type]bool{}
	var holds func(t reflect.Type) bool
	holds = func(t reflect.Type) bool {
		if t == bufferType {
			return true
		}
		if seen[t] {
			return false
		}
		seen[t] = true
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			return holds(t.Elem())
		case reflect.Map:
			return holds(t.Key()) || holds(t.Elem())
		case reflect.Struct:
			for i := range t.NumField() {
				if holds(t.Field(i).Type) {
					return true
				}
			}
		}
		return false
	}
	if holds(t) {
		return fmt.Errorf("frames of %v hold a *shm.Buffer inside, whose references the graph cannot hand to a worker process: use frames of *shm.Buffer itself (with what else travels in Meta), or place the element in a goroutine", t)
	}
	return nil
}
