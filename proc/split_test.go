//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

// sample is an item with two large slices and small fields: the large ones
// travel through the arena, the rest through the codec (CBOR).
type sample struct {
	Name   string
	Pixels []byte
	Feats  []float32
	Small  []byte
	Labels []int64
}

func makeSample(i, size int) *sample {
	s := &sample{Name: "s" + string(rune('a'+i%26)), Pixels: make([]byte, size), Feats: make([]float32, size/4), Small: []byte{byte(i)}, Labels: []int64{int64(i), -1}}
	for j := range s.Pixels {
		s.Pixels[j] = byte(i + j)
	}
	for j := range s.Feats {
		s.Feats[j] = float32(i) + float32(j)/2
	}
	return s
}

func sameSample(a, b *sample) bool {
	return a.Name == b.Name && bytes.Equal(a.Pixels, b.Pixels) && slices.Equal(a.Feats, b.Feats) &&
		bytes.Equal(a.Small, b.Small) && slices.Equal(a.Labels, b.Labels)
}

var splitSamples = proc.Iter("split.samples", func(ctx context.Context, n int) iter.Seq2[*sample, error] {
	return func(yield func(*sample, error) bool) {
		for i := range n {
			if !yield(makeSample(i, 256<<10), nil) {
				return
			}
		}
	}
})

// splitFlip returns its input with every byte and float negated; a
// Pixels of one byte asks for an output larger than a segment.
var splitFlip = proc.Func("split.flip", func(ctx context.Context, s *sample) (*sample, error) {
	if len(s.Pixels) == 1 {
		return &sample{Pixels: make([]byte, 9<<20)}, nil
	}
	out := &sample{Name: s.Name + "!", Small: s.Small, Labels: s.Labels, Pixels: make([]byte, len(s.Pixels)), Feats: make([]float32, len(s.Feats))}
	for j, b := range s.Pixels {
		out.Pixels[j] = ^b
	}
	for j, f := range s.Feats {
		out.Feats[j] = -f
	}
	return out, nil
})

var splitEcho = proc.Func("split.echo", func(ctx context.Context, b []byte) ([]byte, error) {
	return append([]byte("echo:"), b...), nil
})

// splitWait waits until something writes to the FIFO named in its input,
// then returns a large output.
var splitWait = proc.Func("split.wait", func(ctx context.Context, fifo string) ([]byte, error) {
	if fifo == "" {
		return make([]byte, 1<<20), nil
	}
	f, err := os.Open(fifo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 1))
	return make([]byte, 1<<20), err
})

// TestArenaSplitIterate sends struct items whose large fields go through
// the arena and whose small ones go through the codec (CBOR).
func TestArenaSplitIterate(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 1<<20, 4, shm.AcquireTimeout(10*time.Second))
	it, err := proc.Iterate(context.Background(), splitSamples, 20, proc.Arena(arena), proc.BufferSize(3))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for pass := range 2 {
		before := arena.Published()
		i := 0
		for s, err := range it.All(context.Background()) {
			if err != nil {
				t.Fatalf("pass %d item %d: %v", pass, i, err)
			}
			if want := makeSample(i, 256<<10); !sameSample(s, want) {
				t.Fatalf("pass %d item %d: got %q with %d pixels, %d feats", pass, i, s.Name, len(s.Pixels), len(s.Feats))
			}
			i++
		}
		if i != 20 {
			t.Fatalf("pass %d: %d items, want 20", pass, i)
		}
		// Pixels and Feats of every item, not Small nor Labels.
		if got := arena.Published() - before; got != 40 {
			t.Errorf("pass %d: %d segments published, want 40", pass, got)
		}
		if h := arena.Held(); h != 0 {
			t.Errorf("pass %d: %d segments held after the pass", pass, h)
		}
	}
}

// TestArenaSplitPool sends inputs and outputs through the arena, both
// ways, and checks that every segment comes back.
func TestArenaSplitPool(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 1<<20, 8, shm.AcquireTimeout(10*time.Second))
	ctx := context.Background()
	pool, err := proc.NewPool(ctx, splitFlip, proc.Workers(2), proc.Arena(arena))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	before := arena.Published()
	for i := range 10 {
		in := makeSample(i, 128<<10)
		out, err := pool.Call(ctx, in)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if out.Name != in.Name+"!" || len(out.Pixels) != len(in.Pixels) || out.Pixels[7] != ^in.Pixels[7] || out.Feats[9] != -in.Feats[9] || !slices.Equal(out.Labels, in.Labels) {
			t.Fatalf("call %d: wrong output %q", i, out.Name)
		}
	}
	// Pixels and Feats in, and out, of every call.
	if got := arena.Published() - before; got != 40 {
		t.Errorf("%d segments published, want 40", got)
	}
	if h := arena.Held(); h != 0 {
		t.Errorf("%d segments held after the calls", h)
	}

	// A small value goes through the codec; a bare []byte through the arena.
	echo, err := proc.NewPool(ctx, splitEcho, proc.Workers(1), proc.Arena(arena), proc.ArenaThreshold(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	for _, size := range []int{10, 999, 1000, 500 << 10} {
		in := bytes.Repeat([]byte{'x'}, size)
		before := arena.Published()
		out, err := echo.Call(ctx, in)
		if err != nil {
			t.Fatalf("echo %d bytes: %v", size, err)
		}
		if !bytes.Equal(out, append([]byte("echo:"), in...)) {
			t.Fatalf("echo %d bytes: wrong output of %d bytes", size, len(out))
		}
		want := uint64(2) // in and out
		if size < 1000 {
			want = 0
			if size+5 >= 1000 {
				want = 1 // the output has grown past the threshold
			}
		}
		if got := arena.Published() - before; got != want {
			t.Errorf("echo %d bytes: %d segments published, want %d", size, got, want)
		}
	}
	if h := arena.Held(); h != 0 {
		t.Errorf("%d segments held after the echo calls", h)
	}
}

// TestArenaSplitTooLarge fails a call whose input, or whose output, is
// larger than a segment, with an error naming both sizes; the worker lives on.
func TestArenaSplitTooLarge(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 8<<20, 2, shm.AcquireTimeout(10*time.Second))
	ctx := context.Background()
	pool, err := proc.NewPool(ctx, splitFlip, proc.Workers(1), proc.Arena(arena))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pid := pool.Stats().Workers[0].PID

	_, err = pool.Call(ctx, &sample{Pixels: make([]byte, 9<<20)})
	var ce *proc.CodecError
	if !errors.As(err, &ce) || ce.What != "input" || !strings.Contains(err.Error(), "9 MiB") || !strings.Contains(err.Error(), "8 MiB") {
		t.Fatalf("input larger than a segment: %v", err)
	}
	_, err = pool.Call(ctx, &sample{Pixels: []byte{1}})
	var re *proc.RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "output") || !strings.Contains(err.Error(), "9 MiB") || !strings.Contains(err.Error(), "8 MiB") {
		t.Fatalf("output larger than a segment: %v", err)
	}
	if _, err := pool.Call(ctx, makeSample(1, 100<<10)); err != nil {
		t.Fatalf("a call after the failures: %v", err)
	}
	if st := pool.Stats(); st.Workers[0].PID != pid || st.Restarts != 0 {
		t.Errorf("the worker was replaced: %+v", st)
	}
	if h := arena.Held(); h != 0 {
		t.Errorf("%d segments held", h)
	}
}

// TestArenaSplitAbandonedCall: a caller that gives up on a call does not
// leave the call's output in the arena.
func TestArenaSplitAbandonedCall(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 2<<20, 2, shm.AcquireTimeout(10*time.Second))
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := proc.NewPool(context.Background(), splitWait, proc.Workers(1), proc.Arena(arena))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := pool.Call(ctx, fifo)
		done <- err
	}()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // returns once the worker runs the call
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned call: %v", err)
	}
	w.Write([]byte{1}) // the worker returns a 1 MiB output nobody waits for
	w.Close()
	// The worker answers in order: once the next call is back, the
	// abandoned one's output has arrived and been released.
	if out, err := pool.Call(context.Background(), ""); err != nil || len(out) != 1<<20 {
		t.Fatalf("next call: %d bytes, %v", len(out), err)
	}
	if h := arena.Held(); h != 0 {
		t.Errorf("%d segments held after an abandoned call", h)
	}
}

// tensors writes Count float32 tensors of shape 3×H×W in place in the
// worker's arena.
var tensors = proc.Iter("split.tensors", func(ctx context.Context, hw [3]int) iter.Seq2[proc.Shared, error] {
	return func(yield func(proc.Shared, error) bool) {
		for i := range hw[2] {
			var s proc.Shared
			lease, err := proc.WorkerArena().Acquire(ctx)
			if err == nil {
				f := shm.Float32s(lease.Bytes())[:3*hw[0]*hw[1]]
				for j := range f {
					f[j] = float32(i*1000 + j)
				}
				s.Ref, err = lease.PublishTyped(shm.Float32, 3, hw[0], hw[1])
				lease.Abandon()
			}
			if !yield(s, err) {
				return
			}
		}
	}
})

// TestArenaTypedViews: a typed array written in place in a worker reaches
// the consumer as a typed view with its shape, without a copy.
func TestArenaTypedViews(t *testing.T) {
	noLeaks(t)
	arena := newArena(t, 1<<20, 3, shm.AcquireTimeout(10*time.Second))
	it, err := proc.IterateShared(context.Background(), tensors, [3]int{64, 32, 5}, proc.Arena(arena), proc.BufferSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	i := 0
	for v, err := range it.All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		f := v.Float32s()
		if !slices.Equal(v.Shape(), []int{3, 64, 32}) || v.DType() != shm.Float32 || len(f) != 3*64*32 || f[0] != float32(i*1000) || f[len(f)-1] != float32(i*1000+len(f)-1) {
			t.Fatalf("item %d: shape %v dtype %v, %d floats", i, v.Shape(), v.DType(), len(f))
		}
		v.Release()
		i++
	}
	if i != 5 || arena.Held() != 0 {
		t.Fatalf("%d items, %d segments held", i, arena.Held())
	}
}
