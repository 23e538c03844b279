package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
)

// Job describes a batch job: a Source of indexed items, Filters applied to
// the items of each index in order, Accumulators that fold the filtered
// items into running state, and a Sink that writes the items of each index
// and returns what it wrote.
//
// Everything in a Job may be called from several goroutines at once (the
// Goroutines backend runs indices concurrently), so its functions must be
// safe for concurrent use.
type Job[T, R any] struct {
	// Source produces the items of each index.
	Source Source[T]
	// Filters transform, expand or drop the items of an index, in order.
	Filters []Filter[T]
	// Accumulators fold the items that leave the filters into state that
	// Run merges over every successful index (see Accumulate).
	Accumulators []Accumulator[T]
	// Sink writes the items of an index.
	Sink Sink[T, R]
	// Version is part of the job's identity: change it when the code
	// changes what the job produces, so that a checkpoint of the old code
	// is not resumed.
	Version string
}

// Source is an indexed input: Len indices, each of which yields zero, one
// or many items.
type Source[T any] interface {
	// Len returns the number of indices; it must not change during a run.
	Len() int
	// Items yields the items of index i (0 ≤ i < Len). An error fails the
	// index.
	Items(ctx context.Context, i int) iter.Seq2[T, error]
}

// Partitioner is implemented by a Source or a Sink whose indices must be
// grouped: indices with the same non-negative key run on the same worker,
// one after the other, in index order (for example the members of one
// archive). A negative key leaves an index ungrouped. Partition is called
// once per index, in the parent process, before the run starts. When both
// the Source and the Sink implement it, the Source's groups are used and
// the Sink's Partition is not called.
type Partitioner interface {
	// Partition returns the group of index i: a key ≥ 0, or a negative
	// number for none.
	Partition(i int) int
}

// SourceFunc is a Source made of a length and a function yielding the
// items of an index.
type SourceFunc[T any] struct {
	// N is the number of indices (Len).
	N int
	// Fn yields the items of index i (Items).
	Fn func(ctx context.Context, i int) iter.Seq2[T, error]
}

// Len returns s.N.
func (s SourceFunc[T]) Len() int { return s.N }

// Items returns s.Fn(ctx, i).
func (s SourceFunc[T]) Items(ctx context.Context, i int) iter.Seq2[T, error] { return s.Fn(ctx, i) }

// FromSlice is a Source with one index per element of items, each yielding
// that element.
func FromSlice[T any](items []T) Source[T] {
	return SourceFunc[T]{N: len(items), Fn: func(_ context.Context, i int) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) { yield(items[i], nil) }
	}}
}

// FromFunc is a Source of n indices, each yielding the one item fn returns
// for it (or failing with its error).
func FromFunc[T any](n int, fn func(ctx context.Context, i int) (T, error)) Source[T] {
	return SourceFunc[T]{N: n, Fn: func(ctx context.Context, i int) iter.Seq2[T, error] {
		return func(yield func(T, error) bool) { yield(fn(ctx, i)) }
	}}
}

// Partitioned returns src with its indices grouped by key (see
// Partitioner): key(i) ≥ 0 puts index i in that group, a negative key
// leaves it ungrouped.
func Partitioned[T any](src Source[T], key func(i int) int) Source[T] {
	return partitioned[T]{src, key}
}

type partitioned[T any] struct {
	Source[T]
	key func(int) int
}

func (p partitioned[T]) Partition(i int) int { return p.key(i) }

// Filter is one step of a job's filter chain, made by Map, Expand or Keep.
// Its name is part of the job's identity and of the errors it causes.
type Filter[T any] struct {
	name  string
	apply func(ctx context.Context, items []T) ([]T, error)
}

// Name returns the filter's name.
func (f Filter[T]) Name() string { return f.name }

// Map is a filter that replaces each item by fn's result.
func Map[T any](name string, fn func(ctx context.Context, v T) (T, error)) Filter[T] {
	if fn == nil {
		return Filter[T]{name: name}
	}
	return Filter[T]{name: name, apply: func(ctx context.Context, items []T) ([]T, error) {
		for i, v := range items {
			out, err := fn(ctx, v)
			if err != nil {
				return nil, err
			}
			items[i] = out
		}
		return items, nil
	}}
}

// Expand is a filter that replaces each item by the items fn returns for
// it: none, one or several.
func Expand[T any](name string, fn func(ctx context.Context, v T) ([]T, error)) Filter[T] {
	if fn == nil {
		return Filter[T]{name: name}
	}
	return Filter[T]{name: name, apply: func(ctx context.Context, items []T) ([]T, error) {
		out := make([]T, 0, len(items))
		for _, v := range items {
			more, err := fn(ctx, v)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
		return out, nil
	}}
}

// Keep is a filter that keeps the items for which fn returns true and
// drops the others.
func Keep[T any](name string, fn func(ctx context.Context, v T) (bool, error)) Filter[T] {
	if fn == nil {
		return Filter[T]{name: name}
	}
	return Filter[T]{name: name, apply: func(ctx context.Context, items []T) ([]T, error) {
		out := items[:0]
		for _, v := range items {
			keep, err := fn(ctx, v)
			if err != nil {
				return nil, err
			}
			if keep {
				out = append(out, v)
			}
		}
		return out, nil
	}}
}

// Sink writes the items of one index (after the filters; possibly none)
// and returns what it wrote, for example the paths of its output files.
// The result is JSON-encoded when it crosses a process boundary or goes
// into a checkpoint, so R must survive a JSON round trip: a job whose R
// has an unexported field, a channel, a function or an interface in it
// (outside fields tagged json:"-") is refused before it runs (see Define).
type Sink[T, R any] interface {
	// Write writes items, what the filters left of index i, and returns
	// what it wrote. An error fails the index.
	Write(ctx context.Context, i int, items []T) (R, error)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc[T, R any] func(ctx context.Context, i int, items []T) (R, error)

// Write calls f.
func (f SinkFunc[T, R]) Write(ctx context.Context, i int, items []T) (R, error) {
	return f(ctx, i, items)
}

// Accumulator is a stateful filter made by Accumulate: it folds the items
// that leave the filters into a state, and Run merges the states.
type Accumulator[T any] interface {
	// Name returns the accumulator's name, unique within its job.
	Name() string
	ops() accOps[T]
}

// accOps is an accumulator with its state type erased.
type accOps[T any] interface {
	fresh() any
	add(state any, v T) (any, error)
	merge(a, b any) any
	encode(state any) (json.RawMessage, error)
	decode(b []byte) (any, error)
	valid() error
	stateType() reflect.Type
}

// Accumulate makes an Accumulator named name. Each index accumulates its
// items into a fresh state (newState, then add for each item that leaves
// the filters, in order); the state of an index travels back with its
// outcome (JSON-encoded when it crosses a process boundary or goes into a
// checkpoint, so S must survive a JSON round trip: a job whose S has an
// unexported field, a channel, a function or an interface in it, outside
// fields tagged json:"-", is refused before it runs), and Run merges the
// states of the successful indices, in index order, with merge. Because
// only successful indices count and each counts once, a retried or lost
// attempt never counts twice, and a resumed run merges the states recorded
// by the earlier one. merge must be associative; it may modify and return
// a. Read the merged state with State.
func Accumulate[T, S any](name string, newState func() S, add func(state S, v T) (S, error), merge func(a, b S) S) Accumulator[T] {
	return &accumulator[T, S]{name: name, newState: newState, addFn: add, mergeFn: merge}
}

type accumulator[T, S any] struct {
	name     string
	newState func() S
	addFn    func(S, T) (S, error)
	mergeFn  func(a, b S) S
}

func (a *accumulator[T, S]) Name() string       { return a.name }
func (a *accumulator[T, S]) ops() accOps[T]     { return a }
func (a *accumulator[T, S]) fresh() any         { return a.newState() }
func (a *accumulator[T, S]) merge(x, y any) any { return a.mergeFn(x.(S), y.(S)) }

func (a *accumulator[T, S]) add(state any, v T) (any, error) { return a.addFn(state.(S), v) }

func (a *accumulator[T, S]) encode(state any) (json.RawMessage, error) {
	s := state.(S)
	return json.Marshal(&s) // addressable, as codec.JSON checks it
}

func (a *accumulator[T, S]) stateType() reflect.Type { return reflect.TypeFor[S]() }

func (a *accumulator[T, S]) decode(b []byte) (any, error) {
	s := a.newState()
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decoding the state of accumulator %q: %w", a.name, err)
	}
	return s, nil
}

func (a *accumulator[T, S]) valid() error {
	if a.newState == nil || a.addFn == nil || a.mergeFn == nil {
		return errors.New("nil function")
	}
	return nil
}
