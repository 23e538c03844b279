package meta_test

import (
	"context"
	"maps"
	"testing"

	"github.com/ferrypipe/ferry/meta"
)

func TestWithGetFrom(t *testing.T) {
	ctx := context.Background()
	if md := meta.From(ctx); md != nil {
		t.Fatalf("From(Background) = %v, want nil", md)
	}
	a := meta.With(ctx, "k", "1", "j", "2")
	b := meta.With(a, "k", "3")
	if v, ok := meta.Get(a, "k"); !ok || v != "1" {
		t.Errorf("Get(a, k) = %q, %v: a changed by a later With", v, ok)
	}
	if got, want := meta.From(b), map[string]string{"k": "3", "j": "2"}; !maps.Equal(got, want) {
		t.Errorf("From(b) = %v, want %v", got, want)
	}
	md := meta.From(b)
	md["k"] = "changed"
	if v, _ := meta.Get(b, "k"); v != "3" {
		t.Errorf("a change to From's copy reached the context: %q", v)
	}
	defer func() {
		if recover() == nil {
			t.Error("With with an odd number of arguments did not panic")
		}
	}()
	meta.With(ctx, "k")
}

type spanKey struct{}

// tracer is a Propagator of a value kept under spanKey.
type tracer struct{}

func (tracer) Inject(ctx context.Context, md map[string]string) {
	if s, ok := ctx.Value(spanKey{}).(string); ok {
		md[meta.TraceParent] = s
	}
}

func (tracer) Extract(ctx context.Context, md map[string]string) context.Context {
	if s, ok := md[meta.TraceParent]; ok {
		return context.WithValue(ctx, spanKey{}, "remote:"+s)
	}
	return ctx
}

func TestPropagators(t *testing.T) {
	ctx := meta.With(context.Background(), "user", "ann")
	if got := meta.Outgoing(ctx); !maps.Equal(got, map[string]string{"user": "ann"}) {
		t.Fatalf("Outgoing without propagators = %v", got)
	}
	meta.RegisterPropagator(tracer{})
	ctx = context.WithValue(ctx, spanKey{}, "00-abc-def-01")
	out := meta.Outgoing(ctx)
	if want := map[string]string{"user": "ann", meta.TraceParent: "00-abc-def-01"}; !maps.Equal(out, want) {
		t.Fatalf("Outgoing = %v, want %v", out, want)
	}
	in := meta.Incoming(context.Background(), out)
	if s, _ := in.Value(spanKey{}).(string); s != "remote:00-abc-def-01" {
		t.Errorf("Incoming's span = %q", s)
	}
	if v, _ := meta.Get(in, "user"); v != "ann" {
		t.Errorf("Incoming's user = %q", v)
	}
	if meta.Outgoing(context.Background()) != nil {
		t.Error("Outgoing of a bare context is not nil")
	}
}
