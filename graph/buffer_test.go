//go:build linux && !ferrynolinux

package graph_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/shm"
)

// bufArgs configures the test's Buffer transform: it adds one to every
// byte, in place when it holds the only reference (InPlace), or into a
// new Buffer; it fails at frame FailAt and exits at frame Crash.
type bufArgs struct {
	InPlace       bool
	FailAt, Crash int
}

var bufAddKind = graph.RegisterTransform("test.buf.add", func(a bufArgs) (graph.Transform[*shm.Buffer, *shm.Buffer], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[*shm.Buffer], out graph.Emitter[*shm.Buffer]) error {
		switch int(in.Seq) {
		case a.FailAt:
			return errOdd
		case a.Crash:
			os.Exit(3)
		}
		b := in.Data
		if !a.InPlace || !b.Unique() {
			c, err := graph.NewBuffer(ctx, b.Len())
			if err != nil {
				return err
			}
			copy(c.Bytes(), b.Bytes())
			b = c
		}
		for i, v := range b.Bytes() {
			b.Bytes()[i] = v + 1
		}
		return out.Emit("", graph.Frame[*shm.Buffer]{Data: b, Time: in.Time})
	}), nil
})

// bufJoinKind joins the Buffers of an aligned step into one.
var bufJoinKind = graph.RegisterAligned("test.buf.join", func(struct{}) (graph.AlignedTransform[*shm.Buffer, *shm.Buffer], error) {
	return graph.AlignedTransformFunc(func(ctx context.Context, step []graph.Frame[*shm.Buffer], out graph.Emitter[*shm.Buffer]) error {
		var all []byte
		for _, f := range step {
			if !f.Gap {
				all = append(all, f.Data.Bytes()...)
			}
		}
		b, err := graph.NewBuffer(ctx, len(all))
		if err != nil {
			return err
		}
		copy(b.Bytes(), all)
		return out.Emit("", graph.Frame[*shm.Buffer]{Data: b})
	}), nil
})

// bufSource emits n Buffers of size bytes, frame i holding byte(i).
func bufSource(n, size int) graph.Source[*shm.Buffer] {
	return graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
		for i := 0; n < 0 || i < n; i++ {
			b, err := graph.NewBuffer(ctx, size)
			if err != nil {
				return err
			}
			for j := range b.Bytes() {
				b.Bytes()[j] = byte(i)
			}
			if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: b, Time: int64(i)}); err != nil {
				return err
			}
		}
		return nil
	})
}

// checkBuf reports whether b holds size bytes of v.
func checkBuf(b *shm.Buffer, size int, v byte) error {
	if !bytes.Equal(b.Bytes(), bytes.Repeat([]byte{v}, size)) {
		return fmt.Errorf("%d bytes starting %v, want %d of %d", b.Len(), b.Bytes()[:min(4, b.Len())], size, v)
	}
	return nil
}

func checkArenaFree(t *testing.T, arena *shm.SegmentPool, when string) {
	t.Helper()
	if arena == nil {
		return
	}
	if st := arena.Stats(); st.Free != st.Count {
		t.Fatalf("%s: %d of %d segments are not free (%+v)", when, st.Count-st.Free, st.Count, st)
	}
}

// TestBufferFrames: frames of *shm.Buffer through a transform in each
// placement, with and without an arena, changed in place or into new
// Buffers, fanned out to a sink that checks them and one that keeps some
// (Retain) past the run: every frame arrives intact, and every segment is
// free once the kept ones are released.
func TestBufferFrames(t *testing.T) {
	const n, size = 60, 100 << 10
	for _, withArena := range []bool{true, false} {
		for _, inPlace := range []bool{true, false} {
			t.Run(fmt.Sprintf("arena=%v/inplace=%v", withArena, inPlace), func(t *testing.T) {
				forEachPlacement(t, func(t *testing.T, p graph.Placement) {
					var arena *shm.SegmentPool
					opts := []graph.Option{graph.BufferSize(3)}
					if withArena {
						var err error
						if arena, err = shm.NewSegmentPool(size, 24); err != nil {
							t.Fatal(err)
						}
						defer arena.Close()
						opts = append(opts, graph.Arena(arena))
					}
					g := graph.New(opts...)
					// Where each frame's bytes were written: a frame
					// changed in place reaches the sinks in the same
					// memory, from a worker process too when there is an
					// arena.
					var mu sync.Mutex
					written := map[int64]*byte{}
					src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
						for i := range n {
							b, err := graph.NewBuffer(ctx, size)
							if err != nil {
								return err
							}
							for j := range b.Bytes() {
								b.Bytes()[j] = byte(i)
							}
							mu.Lock()
							written[int64(i)] = &b.Bytes()[0]
							mu.Unlock()
							if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: b, Time: int64(i)}); err != nil {
								return err
							}
						}
						return nil
					}))
					add := graph.AddTransform(g, "add", bufAddKind.New(bufArgs{InPlace: inPlace, FailAt: -1, Crash: -1}), graph.Place(p))
					got := 0
					check := graph.AddSink(g, "check", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
						if err := checkBuf(f.Data, size, byte(f.Time)+1); err != nil {
							return fmt.Errorf("frame %d: %w", f.Seq, err)
						}
						mu.Lock()
						at := written[f.Time]
						mu.Unlock()
						want := inPlace && (withArena || p == graph.Goroutine)
						if moved := at == &f.Data.Bytes()[0]; moved != want {
							return fmt.Errorf("frame %d: in the memory the source wrote: %v, want %v", f.Seq, moved, want)
						}
						got++
						return nil
					}))
					var kept []*shm.Buffer
					keep := graph.AddSink(g, "keep", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
						if f.Seq%20 == 0 {
							kept = append(kept, f.Data.Retain())
						}
						return nil
					}))
					graph.Connect(g, src.Out(""), add.In(""))
					graph.Connect(g, add.Out(""), check.In(""), keep.In(""))
					if _, err := g.Run(context.Background()); err != nil {
						t.Fatal(err)
					}
					if got != n || len(kept) != n/20 {
						t.Fatalf("%d frames checked, %d kept; want %d and %d", got, len(kept), n, n/20)
					}
					for i, b := range kept {
						if err := checkBuf(b, size, byte(20*i)+1); err != nil {
							t.Fatalf("kept frame %d after the run: %v", 20*i, err)
						}
						b.Release()
					}
					checkArenaFree(t, arena, "after the run")
				})
			})
		}
	}
}

// TestBufferAligned: aligned steps of Buffers, joined in each placement.
func TestBufferAligned(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		arena, err := shm.NewSegmentPool(64<<10, 32)
		if err != nil {
			t.Fatal(err)
		}
		defer arena.Close()
		g := graph.New(graph.BufferSize(2), graph.Arena(arena))
		a := graph.AddSource(g, "a", bufSource(10, 1000))
		b := graph.AddSource(g, "b", bufSource(7, 500))
		join := graph.AddAligned(g, "join", bufJoinKind.New(struct{}{}), graph.AlignBySeq, graph.Inputs("a", "b"), graph.Place(p))
		var lens []int
		snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
			d := f.Data.Bytes()
			if d[0] != byte(f.Seq) || d[len(d)-1] != byte(f.Seq) {
				return fmt.Errorf("step %d: bytes %d … %d", f.Seq, d[0], d[len(d)-1])
			}
			lens = append(lens, len(d))
			return nil
		}))
		graph.Connect(g, a.Out(""), join.In("a"))
		graph.Connect(g, b.Out(""), join.In("b"))
		graph.Connect(g, join.Out(""), snk.In(""))
		if _, err := g.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []int{1500, 1500, 1500, 1500, 1500, 1500, 1500, 1000, 1000, 1000}
		if fmt.Sprint(lens) != fmt.Sprint(want) {
			t.Fatalf("joined lengths %v, want %v", lens, want)
		}
		checkArenaFree(t, arena, "after the run")
	})
}

// TestBufferFaults: Buffers in flight when an element fails, its worker
// dies, the run is stopped or an Emit is refused all go back to the arena.
func TestBufferFaults(t *testing.T) {
	arena, err := shm.NewSegmentPool(64<<10, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	cases := []struct {
		name string
		p    graph.Placement
		args bufArgs
		stop bool
	}{
		{"fail/goroutine", graph.Goroutine, bufArgs{FailAt: 7, Crash: -1}, false},
		{"fail/process", graph.Process, bufArgs{FailAt: 7, Crash: -1}, false},
		{"crash/process", graph.Process, bufArgs{FailAt: -1, Crash: 7}, false},
		{"stop/goroutine", graph.Goroutine, bufArgs{FailAt: -1, Crash: -1, InPlace: true}, true},
		{"stop/process", graph.Process, bufArgs{FailAt: -1, Crash: -1, InPlace: true}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 5 {
				g := graph.New(graph.BufferSize(4), graph.Arena(arena))
				src := graph.AddSource(g, "source", bufSource(-1, 64<<10))
				add := graph.AddTransform(g, "add", bufAddKind.New(tc.args), graph.Place(tc.p))
				var once sync.Once
				flowing := make(chan struct{})
				snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
					if f.Seq == 3 {
						once.Do(func() { close(flowing) })
					}
					return nil
				}))
				graph.Connect(g, src.Out(""), add.In(""))
				graph.Connect(g, add.Out(""), snk.In(""))
				r, err := g.Start(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if tc.stop {
					<-flowing
					r.Stop()
				}
				_, err = r.Wait()
				switch {
				case tc.stop && !errors.Is(err, graph.ErrStopped):
					t.Fatalf("round %d: %v, want ErrStopped", round, err)
				case !tc.stop && err == nil:
					t.Fatalf("round %d: the run did not fail", round)
				}
				checkArenaFree(t, arena, fmt.Sprintf("round %d", round))
			}
		})
	}
}

// TestBufferEmitErrors: a Buffer given to an Emit that fails (no such pad)
// is released, as is one emitted in a Gap frame.
func TestBufferEmitErrors(t *testing.T) {
	arena, err := shm.NewSegmentPool(4096, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	g := graph.New(graph.Arena(arena))
	src := graph.AddSource(g, "source", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[*shm.Buffer]) error {
		for range 10 {
			b, err := graph.NewBuffer(ctx, 10)
			if err != nil {
				return err
			}
			if err := out.Emit("nope", graph.Frame[*shm.Buffer]{Data: b}); err == nil {
				return errors.New("Emit on no such pad succeeded")
			}
			if b, err = graph.NewBuffer(ctx, 10); err != nil {
				return err
			}
			if err := out.Emit("", graph.Frame[*shm.Buffer]{Data: b, Gap: true}); err != nil {
				return err
			}
		}
		return nil
	}))
	gaps := 0
	snk := graph.AddSink(g, "sink", graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
		if f.Gap && f.Data == nil {
			gaps++
		}
		return nil
	}))
	graph.Connect(g, src.Out(""), snk.In(""))
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if gaps != 10 {
		t.Fatalf("%d gap frames without data, want 10", gaps)
	}
	checkArenaFree(t, arena, "after the run")
}

// bufTwiceKind emits each frame it gets on both of its source pads.
var bufTwiceKind = graph.RegisterTransform("test.buf.twice", func(struct{}) (graph.Transform[*shm.Buffer, *shm.Buffer], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[*shm.Buffer], out graph.Emitter[*shm.Buffer]) error {
		if err := out.Emit("a", graph.Frame[*shm.Buffer]{Data: in.Data, Time: in.Time}); err != nil {
			return err
		}
		return out.Emit("b", graph.Frame[*shm.Buffer]{Data: in.Data, Time: in.Time})
	}), nil
})

// TestBufferEmittedTwice: a frame's Buffer emitted on two pads reaches
// both, intact, in each placement, and goes back to the arena.
func TestBufferEmittedTwice(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		arena, err := shm.NewSegmentPool(4096, 16)
		if err != nil {
			t.Fatal(err)
		}
		defer arena.Close()
		g := graph.New(graph.BufferSize(2), graph.Arena(arena))
		src := graph.AddSource(g, "source", bufSource(50, 4096))
		twice := graph.AddTransform(g, "twice", bufTwiceKind.New(struct{}{}), graph.Outputs("a", "b"), graph.Place(p))
		counts := make([]int, 2)
		for k, pad := range []string{"a", "b"} {
			snk := graph.AddSink(g, "sink-"+pad, graph.SinkFunc(func(_ context.Context, f graph.Frame[*shm.Buffer]) error {
				if err := checkBuf(f.Data, 4096, byte(f.Time)); err != nil {
					return err
				}
				counts[k]++
				return nil
			}))
			graph.Connect(g, twice.Out(pad), snk.In(""))
		}
		graph.Connect(g, src.Out(""), twice.In(""))
		if _, err := g.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if counts[0] != 50 || counts[1] != 50 {
			t.Fatalf("frames at the sinks: %v, want 50 each", counts)
		}
		checkArenaFree(t, arena, "after the run")
	})
}

// labeled is a frame type with a Buffer inside, which only a goroutine
// can take.
type labeled struct {
	Label string
	B     *shm.Buffer
}

var labeledSinkKind = graph.RegisterSink("test.buf.labeled", func(struct{}) (graph.Sink[labeled], error) {
	return graph.SinkFunc(func(context.Context, graph.Frame[labeled]) error { return nil }), nil
})

// TestBufferInsideAFrameType: an element whose frames hold a Buffer in a
// field cannot be placed in a worker process.
func TestBufferInsideAFrameType(t *testing.T) {
	g := graph.New()
	src := graph.AddSource(g, "source", graph.SourceFunc(func(context.Context, graph.Emitter[labeled]) error { return nil }))
	snk := graph.AddSink(g, "sink", labeledSinkKind.New(struct{}{}), graph.Place(graph.Process))
	graph.Connect(g, src.Out(""), snk.In(""))
	err := g.Validate()
	if err == nil || !strings.Contains(err.Error(), "hold a *shm.Buffer inside") || !strings.Contains(err.Error(), `"sink"`) {
		t.Fatalf("Validate: %v", err)
	}
}
