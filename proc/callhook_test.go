//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"iter"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/proc"
)

// whoAmI returns its worker's pid and the "span" of its metadata; a
// negative input fails.
var whoAmI = proc.Func("test.who-am-i", func(ctx context.Context, n int) ([2]string, error) {
	if n < 0 {
		return [2]string{}, errors.New("negative")
	}
	span, _ := meta.Get(ctx, "span")
	return [2]string{span, strconv.Itoa(os.Getpid())}, nil
})

var whoAmIFlat = proc.FlatFunc("test.who-am-i-flat", func(ctx context.Context, n int) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		span, _ := meta.Get(ctx, "span")
		if !yield(span, nil) {
			return
		}
		if n < 0 {
			yield("", errors.New("negative"))
		}
	}
})

// hookRecorder is a CallHook that marks each call's context with a span
// name and keeps how each call ended.
type hookRecorder struct {
	mu   sync.Mutex
	n    int
	ends []proc.CallEnd
	pool string
}

func (h *hookRecorder) hook(ctx context.Context, pool string) (context.Context, func(proc.CallEnd)) {
	h.mu.Lock()
	h.n++
	h.pool = pool
	span := "span-" + strconv.Itoa(h.n)
	h.mu.Unlock()
	return meta.With(ctx, "span", span), func(e proc.CallEnd) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.ends = append(h.ends, e)
	}
}

// TestCallHook: the hook's context is the call's (its metadata reaches the
// worker), and it learns the worker's pid, the attempts and the error.
func TestCallHook(t *testing.T) {
	ctx := t.Context()
	h := &hookRecorder{}
	pool, err := proc.NewPool(ctx, whoAmI, proc.Workers(1), proc.WithCallHook(h.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	got, err := pool.Call(ctx, 1)
	if err != nil || got[0] != "span-1" {
		t.Fatalf("Call = %v, %v; want the hook's span in the worker", got, err)
	}
	if _, err := pool.Call(ctx, -1); err == nil {
		t.Fatal("a failing call succeeded")
	}
	pid := pool.Stats().Workers[0].PID
	if h.pool != "test.who-am-i" || len(h.ends) != 2 {
		t.Fatalf("hook saw pool %q and %d ends", h.pool, len(h.ends))
	}
	if e := h.ends[0]; e.PID != pid || e.Attempts != 1 || e.Err != nil {
		t.Errorf("first call ended %+v, want pid %d, 1 attempt, no error", e, pid)
	}
	if e := h.ends[1]; e.PID != pid || e.Attempts != 1 || e.Err == nil {
		t.Errorf("second call ended %+v, want pid %d, 1 attempt and its error", e, pid)
	}

	hf := &hookRecorder{}
	flat, err := proc.NewFlatPool(ctx, whoAmIFlat, proc.Workers(1), proc.WithCallHook(hf.hook))
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Close()
	for span, err := range flat.Call(ctx, -1) {
		if err == nil && span != "span-1" {
			t.Errorf("FlatPool output %q, want the hook's span", span)
		}
	}
	if len(hf.ends) != 1 || hf.ends[0].Err == nil || hf.ends[0].Attempts != 1 || hf.ends[0].PID == 0 {
		t.Errorf("FlatPool call ended %+v, want its error, 1 attempt and a pid", hf.ends)
	}
}
