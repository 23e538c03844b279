package pipeline_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
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
