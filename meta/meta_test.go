package meta_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
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
	//lint:ignore SA5012 the odd number of arguments is what this checks
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
	if got, err := meta.Outgoing(ctx); err != nil || !maps.Equal(got, map[string]string{"user": "ann"}) {
		t.Fatalf("Outgoing without propagators = %v", got)
	}
	meta.RegisterPropagator(tracer{})
	ctx = context.WithValue(ctx, spanKey{}, "00-abc-def-01")
	out, err := meta.Outgoing(ctx)
	if err != nil {
		t.Fatal(err)
	}
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
	if md, err := meta.Outgoing(context.Background()); md != nil || err != nil {
		t.Errorf("Outgoing of a bare context = %v, %v; want nothing", md, err)
	}
}

// TestOutgoingLimits: metadata over the limits is refused with the sizes.
func TestOutgoingLimits(t *testing.T) {
	ctx := context.Background()
	var kv []string
	for i := range meta.MaxEntries + 1 {
		kv = append(kv, strconv.Itoa(i), "")
	}
	var tl *meta.TooLargeError
	if _, err := meta.Outgoing(meta.With(ctx, kv...)); !errors.As(err, &tl) || tl.Entries != meta.MaxEntries+1 {
		t.Errorf("%d entries: %v", meta.MaxEntries+1, err)
	}
	big := strings.Repeat("x", meta.MaxBytes)
	if _, err := meta.Outgoing(meta.With(ctx, "k", big)); !errors.As(err, &tl) || tl.Bytes != meta.MaxBytes+1 {
		t.Errorf("%d bytes: %v", meta.MaxBytes+1, err)
	}
	if _, err := meta.Outgoing(meta.With(ctx, "", big[1:])); err != nil {
		t.Errorf("exactly %d bytes: %v", meta.MaxBytes, err)
	}
}

// Metadata set by the caller is what the code that runs the call reads,
// in a goroutine or in a worker process.
func ExampleWith() {
	ctx := meta.With(context.Background(), "tenant", "acme", "request", "r-17")
	tenant, _ := meta.Get(ctx, "tenant")
	fmt.Println(tenant, meta.From(ctx)["request"])
	// Output: acme r-17
}
