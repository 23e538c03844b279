// Package meta carries per-call metadata — a W3C trace context, your own
// key/values — with a context.Context, across every placement ferry has:
// a stage in a goroutine sees its caller's context, and a call, a pass or
// a batch task that runs in a worker process gets the same metadata in the
// context of the code that runs it there.
//
// Metadata is a set of string keys and values. Set it on the caller's
// context with With; read it with Get or From, in the same process or in a
// worker. Values that are not strings — an OpenTelemetry span, say — cross
// through a Propagator, which writes them into the metadata as a call
// leaves (Inject) and reads them back into the worker's context (Extract);
// register one with RegisterPropagator in every process (at package level,
// so that workers, which are the same binary, register it too). The OTel
// adapter of ferry registers one for the W3C traceparent.
//
// Keys are compared as given; the W3C names TraceParent and TraceState are
// lower case.
package meta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// The W3C trace-context keys.
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
)

type key struct{}

// With returns a context whose metadata is ctx's with the given key/value
// pairs added (a later value of a key replaces an earlier one). kv must
// have an even length; With panics otherwise, as a programming error.
func With(ctx context.Context, kv ...string) context.Context {
	if len(kv)%2 != 0 {
		panic("meta.With: an odd number of arguments (want key/value pairs)")
	}
	if len(kv) == 0 {
		return ctx
	}
	old, _ := ctx.Value(key{}).(map[string]string)
	md := make(map[string]string, len(old)+len(kv)/2)
	maps.Copy(md, old)
	for i := 0; i < len(kv); i += 2 {
		md[kv[i]] = kv[i+1]
	}
	return context.WithValue(ctx, key{}, md)
}

// WithMap is With for a map of pairs.
func WithMap(ctx context.Context, pairs map[string]string) context.Context {
	if len(pairs) == 0 {
		return ctx
	}
	old, _ := ctx.Value(key{}).(map[string]string)
	md := make(map[string]string, len(old)+len(pairs))
	maps.Copy(md, old)
	maps.Copy(md, pairs)
	return context.WithValue(ctx, key{}, md)
}

// Get returns the value of one key of ctx's metadata.
func Get(ctx context.Context, k string) (string, bool) {
	md, _ := ctx.Value(key{}).(map[string]string)
	v, ok := md[k]
	return v, ok
}

// From returns a copy of ctx's metadata (nil if it has none).
func From(ctx context.Context) map[string]string {
	md, _ := ctx.Value(key{}).(map[string]string)
	return maps.Clone(md)
}

// A Propagator moves what a context holds besides metadata (a trace span)
// into the metadata of a call that leaves the process, and back into the
// context of the code that runs it in a worker.
type Propagator interface {
	// Inject adds to md what ctx holds, as a call leaves with ctx.
	Inject(ctx context.Context, md map[string]string)
	// Extract returns ctx with what md holds, in the worker.
	Extract(ctx context.Context, md map[string]string) context.Context
}

// propagators is read on every call that leaves or enters a process:
// a pointer swapped under propMu, read without a lock.
var (
	propMu      sync.Mutex
	propagators atomic.Pointer[[]Propagator]
)

// RegisterPropagator adds p to the propagators every outgoing call and
// every incoming one goes through, in the order registered. Register at
// package level (or in init), so that worker processes register it too.
func RegisterPropagator(p Propagator) {
	propMu.Lock()
	defer propMu.Unlock()
	var ps []Propagator
	if old := propagators.Load(); old != nil {
		ps = slices.Clone(*old)
	}
	ps = append(ps, p)
	propagators.Store(&ps)
}

// The limits of the metadata one call carries to another process.
const (
	MaxEntries = 1024     // keys
	MaxBytes   = 64 << 10 // bytes of its keys and values together
)

// TooLargeError is the error of a call whose metadata is over MaxEntries
// or MaxBytes: it is not sent (and not retried: it would fail again).
type TooLargeError struct {
	Entries, Bytes int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("meta: the call's metadata has %d entries of %d bytes; the limits are %d entries and %d bytes", e.Entries, e.Bytes, MaxEntries, MaxBytes)
}

// Outgoing returns the metadata a call made with ctx carries to another
// process: ctx's metadata and what the propagators inject (nil if none),
// or a *TooLargeError.
func Outgoing(ctx context.Context) (map[string]string, error) {
	md := From(ctx)
	if ps := propagators.Load(); ps != nil {
		if md == nil {
			md = map[string]string{}
		}
		for _, p := range *ps {
			p.Inject(ctx, md)
		}
	}
	if len(md) == 0 {
		return nil, nil
	}
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
	}
	if len(md) > MaxEntries || n > MaxBytes {
		return nil, &TooLargeError{Entries: len(md), Bytes: n}
	}
	return md, nil
}

// Incoming returns ctx with the metadata md that came with a call from
// another process, and what the propagators extract from it.
func Incoming(ctx context.Context, md map[string]string) context.Context {
	if len(md) == 0 {
		return ctx
	}
	ctx = WithMap(ctx, md)
	if ps := propagators.Load(); ps != nil {
		for _, p := range *ps {
			ctx = p.Extract(ctx, md)
		}
	}
	return ctx
}
