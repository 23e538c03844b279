//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"iter"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/proc"
)

// The caller's metadata, as every front door must deliver it.
var wantMeta = map[string]string{meta.TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"}

func metaCtx(t *testing.T) context.Context {
	return meta.With(t.Context(), meta.TraceParent, wantMeta[meta.TraceParent], "tenant", "acme")
}

var (
	metaFunc = proc.Func("test.meta-func", func(ctx context.Context, _ int) (map[string]string, error) { return meta.From(ctx), nil })
	metaFlat = proc.FlatFunc("test.meta-flat", func(ctx context.Context, n int) iter.Seq2[map[string]string, error] {
		return func(yield func(map[string]string, error) bool) {
			for range n {
				if !yield(meta.From(ctx), nil) {
					return
				}
			}
		}
	})
	metaIter = proc.Iter("test.meta-iter", func(ctx context.Context, _ int) iter.Seq2[map[string]string, error] {
		return func(yield func(map[string]string, error) bool) { yield(meta.From(ctx), nil) }
	})
	metaDuplex = proc.Duplex("test.meta-duplex", func(ctx context.Context, _ int, in iter.Seq2[int, error], out func(map[string]string) error) error {
		for _, err := range in {
			if err != nil {
				return err
			}
			if err := out(meta.From(ctx)); err != nil {
				return err
			}
		}
		return nil
	})
)

func checkMeta(t *testing.T, where string, got map[string]string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if !maps.Equal(got, wantMeta) {
		t.Errorf("%s: the worker's metadata = %v, want %v", where, got, wantMeta)
	}
}

// TestMetadataCrosses: the metadata of the caller's context is the
// metadata of the context the worker code runs with, through every front
// door, in a worker process and in process (InProcess).
func TestMetadataCrosses(t *testing.T) {
	for _, placement := range []struct {
		name string
		opts []proc.Option
	}{{"process", nil}, {"in-process", []proc.Option{proc.InProcess()}}} {
		t.Run(placement.name, func(t *testing.T) {
			ctx := metaCtx(t)
			var poolOpts []proc.PoolOption
			var flatOpts []proc.FlatPoolOption
			var iterOpts []proc.IterateOption
			for _, o := range placement.opts {
				poolOpts, flatOpts, iterOpts = append(poolOpts, o), append(flatOpts, o), append(iterOpts, o)
			}

			pool, err := proc.NewPool(ctx, metaFunc, poolOpts...)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			got, err := pool.Call(ctx, 1)
			checkMeta(t, "Pool.Call", got, err)
			if got, err := pool.Call(t.Context(), 1); err != nil || len(got) != 0 {
				t.Errorf("Pool.Call without metadata: %v, %v; want none", got, err)
			}
			flat, err := proc.NewFlatPool(ctx, metaFlat, flatOpts...)
			if err != nil {
				t.Fatal(err)
			}
			defer flat.Close()
			for got, err := range flat.Call(ctx, 2) {
				checkMeta(t, "FlatPool.Call", got, err)
			}

			it, err := proc.Iterate(t.Context(), metaIter, 0, iterOpts...)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			for got, err := range it.All(ctx) { // the pass's context, not the start's
				checkMeta(t, "Iterate pass", got, err)
			}

			d, err := proc.OpenDuplex(ctx, metaDuplex, 0, iterOpts...)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.Send(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if err := d.CloseSend(); err != nil {
				t.Fatal(err)
			}
			for got, err := range d.All(ctx) {
				checkMeta(t, "OpenDuplex", got, err)
			}
		})
	}
}

// TestMetadataTooLarge: a call whose metadata is over the limits fails at
// once with a *meta.TooLargeError, sent to no worker (so not retried).
func TestMetadataTooLarge(t *testing.T) {
	h := &hookRecorder{}
	pool, err := proc.NewPool(t.Context(), metaFunc, proc.Workers(1), proc.Retries(2), proc.WithCallHook(h.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := meta.With(t.Context(), "big", strings.Repeat("x", meta.MaxBytes))
	var tl *meta.TooLargeError
	if _, err := pool.Call(ctx, 1); !errors.As(err, &tl) {
		t.Fatalf("Call = %v, want a *meta.TooLargeError", err)
	}
	if len(h.ends) != 1 || h.ends[0].Attempts != 0 {
		t.Errorf("the call ended %+v, want no attempt", h.ends)
	}
	if got, err := pool.Call(metaCtx(t), 1); err != nil || got["tenant"] != "acme" {
		t.Errorf("the next call: %v, %v", got, err)
	}
}

// TestFlatCallRangedTwice: each range of a FlatPool call's sequence is a
// call of its own, with the caller's context (not the first range's).
func TestFlatCallRangedTwice(t *testing.T) {
	h := &hookRecorder{}
	flat, err := proc.NewFlatPool(t.Context(), whoAmIFlat, proc.Workers(1), proc.WithCallHook(h.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Close()
	seq := flat.Call(t.Context(), 1)
	var spans []string
	for range 2 {
		for span, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			spans = append(spans, span)
		}
	}
	if !slices.Equal(spans, []string{"span-1", "span-2"}) {
		t.Errorf("the two ranges saw spans %v, want span-1 then span-2", spans)
	}
}
