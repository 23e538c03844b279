package pipeline_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
)

type hookKey struct{}

// TestTaskHookContext: the context a Task hook returns is the one the stage
// function is called with.
func TestTaskHookContext(t *testing.T) {
	hooks := pipeline.Hooks{Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
		return context.WithValue(ctx, hookKey{}, "hooked "+stage), nil
	}}
	s := pipeline.Pipe(pipeline.FromSlice([]int{1, 2, 3}), func(ctx context.Context, _ int) (string, error) {
		v, _ := ctx.Value(hookKey{}).(string)
		return v, nil
	}, pipeline.Name("tag"))
	p, err := pipeline.Build(pipeline.Sink(s, 1), pipeline.WithHooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n := 0
	for v, err := range p.Epoch(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		if v != "hooked tag" {
			t.Fatalf("the stage saw %q, want the hook's context", v)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d items, want 3", n)
	}
}

// TestProfileLabels: a stage's goroutines carry its name as a pprof label.
func TestProfileLabels(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	s := pipeline.Pipe(pipeline.FromSlice([]int{1}), func(ctx context.Context, v int) (int, error) {
		close(inside)
		<-release
		return v, nil
	}, pipeline.Name("slow-stage"))
	p, err := pipeline.Build(pipeline.Sink(s, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range p.Epoch(t.Context()) {
		}
	}()
	<-inside
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	if want := `"` + pipeline.ProfileLabel + `":"slow-stage"`; !strings.Contains(b.String(), want) {
		t.Fatalf("no goroutine labelled %s in the profile", want)
	}
}

// TestHooksChain: several hooks all run, each Task hook on the context of
// the one before, and their ends in reverse order.
func TestHooksChain(t *testing.T) {
	var mu sync.Mutex
	var order []string
	hook := func(name string) pipeline.Hooks {
		return pipeline.Hooks{
			Stage: func(stage string) func() {
				mu.Lock()
				order = append(order, name+" stage")
				mu.Unlock()
				return nil
			},
			Task: func(ctx context.Context, stage string) (context.Context, func(error)) {
				prev, _ := ctx.Value(hookKey{}).(string)
				ctx = context.WithValue(ctx, hookKey{}, prev+name)
				return ctx, func(error) {
					mu.Lock()
					order = append(order, name+" done")
					mu.Unlock()
				}
			},
		}
	}
	s := pipeline.Pipe(pipeline.FromSlice([]int{1}), func(ctx context.Context, _ int) (string, error) {
		v, _ := ctx.Value(hookKey{}).(string)
		return v, nil
	}, pipeline.Name("tag"))
	p, err := pipeline.Build(pipeline.Sink(s, 1), pipeline.WithHooks(hook("a"), hook("b")), pipeline.WithHooks(hook("c")))
	if err != nil {
		t.Fatal(err)
	}
	for v, err := range p.Epoch(t.Context()) {
		if err != nil || v != "abc" {
			t.Fatalf("the stage saw %q, %v; want the three hooks' context, abc", v, err)
		}
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	done := slices.DeleteFunc(slices.Clone(order), func(s string) bool { return !strings.HasSuffix(s, "done") })
	if !slices.Equal(done, []string{"c done", "b done", "a done"}) {
		t.Errorf("ends in order %v, want c, b, a", done)
	}
	if n := len(order) - len(done); n%3 != 0 || n == 0 {
		t.Errorf("stage hooks ran %d times, want a multiple of 3", n)
	}
}
