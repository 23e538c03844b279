//go:build linux && !ferrynolinux

package graph_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/leakcheck"
	"github.com/ferrypipe/ferry/proc"
)

func TestMain(m *testing.M) {
	proc.Main()
	os.Exit(m.Run())
}

// errOdd is a user sentinel that crosses the process boundary.
var errOdd = errors.New("test: odd frame")

func init() { proc.RegisterErrors(errOdd) }

// ---- registered elements ----

type numbersArgs struct {
	N       int // frames to emit; 0: until drained
	Pads    []string
	Forever bool
}

// numbers emits 0, 1, 2, … on each of its pads, with Time = 10·i.
type numbers struct{ a numbersArgs }

func (s *numbers) Run(ctx context.Context, out graph.Emitter[int]) error {
	pads := s.a.Pads
	if len(pads) == 0 {
		pads = []string{""}
	}
	for i := 0; s.a.Forever || i < s.a.N; i++ {
		for _, p := range pads {
			if err := out.Emit(p, graph.Frame[int]{Data: i, Time: int64(10 * i), Rate: 100}); err != nil {
				return err
			}
		}
	}
	return nil
}

var numbersKind = graph.RegisterSource("test.numbers", func(a numbersArgs) (graph.Source[int], error) {
	return &numbers{a}, nil
})

type squareArgs struct {
	FailAt  int  // fail the frame with this value (-1: never)
	Crash   int  // exit the worker at this value (-1: never)
	Panic   bool // panic instead of failing
	Summary bool // emit the count of frames at the end
}

// square emits v² for each frame, and keeps the count of frames it saw.
type square struct {
	a     squareArgs
	count int
	setup bool
}

func (s *square) Setup(context.Context) error { s.setup = true; return nil }

func (s *square) Process(ctx context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
	if !s.setup {
		return errors.New("Process before Setup")
	}
	s.count++
	switch {
	case in.Data == s.a.FailAt && s.a.Panic:
		panic(fmt.Sprintf("square of %d", in.Data))
	case in.Data == s.a.FailAt:
		return fmt.Errorf("square of %d: %w", in.Data, errOdd)
	case in.Data == s.a.Crash:
		os.Exit(7)
	}
	return out.Emit("", graph.Frame[int]{Data: in.Data * in.Data, Time: in.Time, Rate: in.Rate, EOS: in.EOS})
}

func (s *square) Flush(ctx context.Context, out graph.Emitter[int]) error {
	if s.a.Summary {
		return out.Emit("", graph.Frame[int]{Data: -s.count})
	}
	return nil
}

var squareKind = graph.RegisterTransform("test.square", func(a squareArgs) (graph.Transform[int, int], error) {
	return &square{a: a}, nil
})

// sumAligned emits the sum of each step's data, and the count of gaps in
// it as Meta.
type sumAligned struct{}

func (sumAligned) ProcessStep(ctx context.Context, step []graph.Frame[int], out graph.Emitter[int]) error {
	sum, gaps := 0, 0
	for _, f := range step {
		if f.Gap {
			gaps++
			continue
		}
		sum += f.Data
	}
	return out.Emit("", graph.Frame[int]{Data: sum, Time: step[0].Time, Meta: map[string]string{"gaps": fmt.Sprint(gaps)}})
}

var sumKind = graph.RegisterAligned("test.sum", func(struct{}) (graph.AlignedTransform[int, int], error) {
	return sumAligned{}, nil
})

// collect is a sink that keeps what it receives (goroutine only).
type collect struct {
	mu     sync.Mutex
	frames []graph.Frame[int]
	pads   map[string][]int
}

func (c *collect) Consume(ctx context.Context, in graph.Frame[int]) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, in)
	if c.pads == nil {
		c.pads = map[string][]int{}
	}
	c.pads[in.Pad] = append(c.pads[in.Pad], in.Data)
	return nil
}

func (c *collect) data() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d []int
	for _, f := range c.frames {
		d = append(d, f.Data)
	}
	return d
}

var placements = []graph.Placement{graph.Goroutine, graph.Process}

// forEachPlacement runs body once per placement of the elements that can
// move, with a leak check when workers start.
func forEachPlacement(t *testing.T, body func(t *testing.T, p graph.Placement)) {
	for _, p := range placements {
		t.Run(p.String(), func(t *testing.T) {
			leakcheck.Check(t)
			body(t, p)
		})
	}
}

func TestChainPlacements(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New(graph.DefaultPlacement(p))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 1000}))
		sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1, Summary: true}))
		sink := &collect{}
		snk := graph.AddSink(g, "collect", sink)
		graph.Connect(g, src.Out(""), sq.In(""))
		graph.Connect(g, sq.Out(""), snk.In(""))
		st, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := sink.data()
		if len(got) != 1001 {
			t.Fatalf("%d frames at the sink, want 1001", len(got))
		}
		for i := range 1000 {
			if got[i] != i*i {
				t.Fatalf("frame %d = %d, want %d", i, got[i], i*i)
			}
			if f := sink.frames[i]; f.Seq != uint64(i) || f.Time != int64(10*i) || f.Rate != 100 || f.Pad != "in" {
				t.Fatalf("frame %d: %+v", i, f)
			}
		}
		if got[1000] != -1000 {
			t.Fatalf("the flushed summary is %d, want -1000 (the element's state between frames)", got[1000])
		}
		if e := st.Elements[1]; e.Name != "square" || e.Placement != p || e.FramesIn != 1001 || e.FramesOut != 1002 {
			t.Fatalf("square's stats: %+v", e)
		}
		if p == graph.Process && st.Elements[1].PID == os.Getpid() {
			t.Fatal("the process element ran in this process")
		}
	})
}

func TestErrorsNameElementPadFrame(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run(fmt.Sprint("panic=", panics), func(t *testing.T) {
			forEachPlacement(t, func(t *testing.T, p graph.Placement) {
				g := graph.New(graph.DefaultPlacement(p))
				src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 100}), graph.Place(graph.Goroutine))
				sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: 7, Crash: -1, Panic: panics}))
				snk := graph.AddSink(g, "collect", &collect{})
				graph.Connect(g, src.Out(""), sq.In(""))
				graph.Connect(g, sq.Out(""), snk.In(""))
				_, err := g.Run(context.Background())
				var ee *graph.ElementError
				if !errors.As(err, &ee) || ee.Element != "square" || ee.Op != "process" || ee.Pad != "in" || ee.Seq != 7 {
					t.Fatalf("Run: %v; want an *ElementError for square, pad in, frame 7", err)
				}
				if panics {
					if !strings.Contains(err.Error(), "panic: square of 7") {
						t.Fatalf("Run: %v; want the panic's value", err)
					}
				} else if !errors.Is(err, errOdd) {
					t.Fatalf("Run: %v; want the element's sentinel to match", err)
				}
			})
		})
	}
}

func TestMaxFailures(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New(graph.DefaultPlacement(p))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 20}))
		sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: 3, Crash: -1}), graph.MaxFailures(1))
		sink := &collect{}
		snk := graph.AddSink(g, "collect", sink)
		graph.Connect(g, src.Out(""), sq.In(""))
		graph.Connect(g, sq.Out(""), snk.In(""))
		st, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n := len(sink.data()); n != 19 {
			t.Fatalf("%d frames at the sink, want 19", n)
		}
		if f := st.Elements[1].Failures; f != 1 {
			t.Fatalf("square's stats count %d failures, want 1", f)
		}
	})
}

func TestWorkerDeathFailsTheRun(t *testing.T) {
	leakcheck.Check(t)
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: 5}), graph.Place(graph.Process))
	snk := graph.AddSink(g, "collect", &collect{})
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	_, err := g.Run(context.Background())
	var ee *graph.ElementError
	var we *proc.WorkerError
	if !errors.As(err, &ee) || ee.Element != "square" || !errors.As(err, &we) || we.ExitCode != 7 {
		t.Fatalf("Run: %v; want an *ElementError for square wrapping a *proc.WorkerError with exit status 7", err)
	}
}

func TestFanOutAndFanIn(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		g := graph.New(graph.DefaultPlacement(p))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 50, Pads: []string{"a", "b"}}), graph.Outputs("a", "b"))
		sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Inputs("x", "y"))
		left, right := &collect{}, &collect{}
		l := graph.AddSink(g, "left", left)
		r := graph.AddSink(g, "right", right)
		graph.Connect(g, src.Out("a"), sq.In("x"))
		graph.Connect(g, src.Out("b"), sq.In("y"))
		graph.Connect(g, sq.Out(""), l.In(""), r.In(""))
		if _, err := g.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*collect{left, right} {
			got := c.data()
			slices.Sort(got)
			var want []int
			for i := range 50 {
				want = append(want, i*i, i*i)
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("a fan-out sink got %v, want %v", got, want)
			}
		}
	})
}

func TestAligned(t *testing.T) {
	for _, align := range []graph.Align{graph.AlignBySeq, graph.AlignByTime} {
		t.Run(fmt.Sprint("align=", align), func(t *testing.T) {
			forEachPlacement(t, func(t *testing.T, p graph.Placement) {
				g := graph.New(graph.DefaultPlacement(p))
				a := graph.AddSource(g, "a", numbersKind.New(numbersArgs{N: 10}))
				// b's frames are every other frame of a's in time: they
				// meet a's even frames (AlignByTime), and b ends first.
				b := graph.AddSource(g, "b", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
					for i := 0; i < 10; i += 2 {
						if err := out.Emit("", graph.Frame[int]{Data: 1000, Time: int64(10 * i)}); err != nil {
							return err
						}
					}
					return nil
				}))
				sum := graph.AddAligned(g, "sum", sumKind.New(struct{}{}), align, graph.Inputs("a", "b"))
				sink := &collect{}
				snk := graph.AddSink(g, "collect", sink)
				graph.Connect(g, a.Out(""), sum.In("a"))
				graph.Connect(g, b.Out(""), sum.In("b"))
				graph.Connect(g, sum.Out(""), snk.In(""))
				if _, err := g.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				got := sink.data()
				var want []int
				for i := range 10 {
					switch {
					case align == graph.AlignBySeq && i < 5, align == graph.AlignByTime && i%2 == 0:
						want = append(want, i+1000)
					default:
						want = append(want, i)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("steps summed to %v, want %v", got, want)
				}
			})
		})
	}
}

func TestValidation(t *testing.T) {
	sq := func(g *graph.Graph, name string) graph.TransformNode[int, int] {
		return graph.AddTransform(g, name, graph.Map(func(_ context.Context, v int) (int, error) { return v, nil }))
	}
	cases := []struct {
		name  string
		build func(g *graph.Graph)
		want  []string
	}{
		{"unlinked", func(g *graph.Graph) {
			graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 1}))
			sq(g, "t")
		}, []string{`sink pad t:in is not linked`, `source pad src:out is not linked`, `source pad t:out is not linked`}},
		{"two sources for one sink pad", func(g *graph.Graph) {
			a := graph.AddSource(g, "a", numbersKind.New(numbersArgs{N: 1}))
			b := graph.AddSource(g, "b", numbersKind.New(numbersArgs{N: 1}))
			s := graph.AddSink(g, "s", &collect{})
			graph.Connect(g, a.Out(""), s.In(""))
			graph.Connect(g, b.Out(""), s.In(""))
		}, []string{`sink pad s:in is linked to both a:out and b:out`}},
		{"cycle", func(g *graph.Graph) {
			src := graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 1}))
			m := graph.AddTransform(g, "m", squareKind.New(squareArgs{}), graph.Inputs("in", "back"))
			t2 := sq(g, "t2")
			s := graph.AddSink(g, "s", &collect{})
			graph.Connect(g, src.Out(""), m.In("in"))
			graph.Connect(g, m.Out(""), t2.In(""), s.In(""))
			graph.Connect(g, t2.Out(""), m.In("back"))
		}, []string{"a cycle: m → t2 → m"}},
		{"types", func(g *graph.Graph) {
			graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 1}))
			graph.AddSink(g, "s", graph.SinkFunc(func(context.Context, graph.Frame[string]) error { return nil }))
			g.Link(map[string]string{"s:in": "src:out"})
		}, []string{"source pad src:out carries int, sink pad s:in takes string"}},
		{"no such pad", func(g *graph.Graph) {
			graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 1}))
			graph.AddSink(g, "s", &collect{})
			g.Link(map[string]string{"s:input": "src:out"})
		}, []string{`element "s" has no sink pad "input" (its sink pads: in)`}},
		{"ambiguous by name", func(g *graph.Graph) {
			graph.AddSource(g, "a", numbersKind.New(numbersArgs{N: 1}), graph.Outputs("x"))
			graph.AddSource(g, "b", numbersKind.New(numbersArgs{N: 1}), graph.Outputs("x"))
			graph.AddSink(g, "s", &collect{}, graph.Inputs("x"))
			g.LinkByName()
		}, []string{"sink pad s:x matches the source pads a:x, b:x"}},
		{"unregistered in a process", func(g *graph.Graph) {
			src := graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 1}))
			s := graph.AddSink(g, "s", &collect{}, graph.Place(graph.Process))
			graph.Connect(g, src.Out(""), s.In(""))
		}, []string{`element "s" is placed in a worker process but is not registered`}},
		{"duplicate name", func(g *graph.Graph) {
			src := graph.AddSource(g, "x", numbersKind.New(numbersArgs{N: 1}))
			s := graph.AddSink(g, "x", &collect{})
			graph.Connect(g, src.Out(""), s.In(""))
		}, []string{`two elements named "x"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := graph.New()
			c.build(g)
			err := g.Validate()
			if err == nil {
				t.Fatal("Validate accepted the graph")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant it to say %q", err, w)
				}
			}
			if _, err := g.Run(context.Background()); err == nil {
				t.Fatal("Run accepted the graph")
			}
		})
	}
}

func TestLinkByName(t *testing.T) {
	g := graph.New()
	graph.AddSource(g, "src", numbersKind.New(numbersArgs{N: 3}), graph.Outputs("numbers"))
	graph.AddTransform(g, "sq", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Inputs("numbers"), graph.Outputs("squares"))
	sink := &collect{}
	graph.AddSink(g, "sink", sink, graph.Inputs("squares"))
	g.LinkByName()
	if _, err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.data(); !slices.Equal(got, []int{0, 1, 4}) {
		t.Fatalf("got %v", got)
	}
}

// TestDrain drains a run whose source never ends: every frame the source
// produced reaches the sink, through a transform in each placement.
func TestDrain(t *testing.T) {
	for _, srcPlace := range placements {
		t.Run("source="+srcPlace.String(), func(t *testing.T) {
			forEachPlacement(t, func(t *testing.T, p graph.Placement) {
				g := graph.New(graph.BufferSize(4))
				src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}), graph.Place(srcPlace))
				sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Place(p))
				reached := make(chan struct{})
				var once sync.Once
				var n int
				snk := graph.AddSink(g, "count", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
					if n++; n == 100 {
						once.Do(func() { close(reached) })
					}
					return nil
				}))
				graph.Connect(g, src.Out(""), sq.In(""))
				graph.Connect(g, sq.Out(""), snk.In(""))
				r, err := g.Start(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				<-reached
				r.Drain()
				st, err := r.Wait()
				if err != nil {
					t.Fatal(err)
				}
				if !st.Drained {
					t.Fatal("the stats do not say drained")
				}
				produced := st.Elements[0].FramesOut - 1 // less its end-of-stream frame
				if int64(n) != produced {
					t.Fatalf("the source produced %d frames, the sink got %d", produced, n)
				}
			})
		})
	}
}

func TestSignalDrainsThenStops(t *testing.T) {
	leakcheck.Check(t)
	g := graph.New(graph.HandleSignals())
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}), graph.Place(graph.Process))
	reached := make(chan struct{})
	var once sync.Once
	n := 0
	snk := graph.AddSink(g, "count", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
		if n++; n == 10 {
			once.Do(func() { close(reached) })
		}
		return nil
	}))
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	r, err := g.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	st, err := r.Wait()
	if !errors.Is(err, graph.ErrInterrupted) {
		t.Fatalf("Wait after SIGINT: %v; want ErrInterrupted", err)
	}
	if produced := st.Elements[0].FramesOut - 1; int64(n) != produced {
		t.Fatalf("the source produced %d frames, the sink got %d", produced, n)
	}
}

func TestStopAndContext(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		ctx, cancel := context.WithCancel(context.Background())
		g := graph.New(graph.DefaultPlacement(p))
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{Forever: true}))
		sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: -1, Crash: -1}))
		started := make(chan struct{})
		var once sync.Once
		snk := graph.AddSink(g, "count", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
			once.Do(func() { close(started) })
			return nil
		}))
		graph.Connect(g, src.Out(""), sq.In(""))
		graph.Connect(g, sq.Out(""), snk.In(""))
		r, err := g.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		<-started
		cancel()
		if _, err := r.Wait(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait after the context ended: %v", err)
		}
	})
}

func TestDot(t *testing.T) {
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 1}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{}), graph.Place(graph.Process))
	snk := graph.AddSink(g, "collect", &collect{})
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	dot := g.Dot()
	for _, want := range []string{`"numbers" -> "square" [label="out → in"]`, `square\ntransform · process`, `peripheries=2`, `collect\nsink · goroutine`} {
		if !strings.Contains(dot, want) {
			t.Errorf("Dot lacks %q:\n%s", want, dot)
		}
	}
}

// TestCompose builds square → square as a part of its own and uses it as
// one element between a source and a sink.
func TestCompose(t *testing.T) {
	forEachPlacement(t, func(t *testing.T, p graph.Placement) {
		part := graph.New(graph.DefaultPlacement(p))
		a := graph.AddTransform(part, "a", squareKind.New(squareArgs{FailAt: -1, Crash: -1}))
		b := graph.AddTransform(part, "b", squareKind.New(squareArgs{FailAt: -1, Crash: -1}))
		graph.Connect(part, a.Out(""), b.In(""))

		g := graph.New()
		g.Compose("fourth", part)
		src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 5}))
		sink := &collect{}
		snk := graph.AddSink(g, "collect", sink)
		graph.Connect(g, src.Out(""), a.In(""))
		graph.Connect(g, b.Out(""), snk.In(""))
		st, err := g.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := sink.data(); !slices.Equal(got, []int{0, 1, 16, 81, 256}) {
			t.Fatalf("got %v", got)
		}
		if st.Elements[0].Name != "fourth/a" || st.Elements[0].Placement != p {
			t.Fatalf("the part's first element: %+v", st.Elements[0])
		}
		if dot := g.Dot(); !strings.Contains(dot, `label="fourth"`) {
			t.Fatalf("Dot does not draw the part:\n%s", dot)
		}
	})
}

// hangArgs makes hang ignore its context at the given frame.
type hangArgs struct{ At int }

// hang passes frames on, and at frame At blocks for good, ignoring its
// context, as code stuck in a C library would.
var hangKind = graph.RegisterTransform("test.hang", func(a hangArgs) (graph.Transform[int, int], error) {
	return graph.TransformFunc(func(ctx context.Context, in graph.Frame[int], out graph.Emitter[int]) error {
		if in.Data == a.At {
			select {}
		}
		return out.Emit("", graph.Frame[int]{Data: in.Data})
	}), nil
})

// startHung starts endless numbers → hang (in a worker, stuck at frame
// 10) → sink, and returns once the sink has seen frame 9, with a channel
// closed when the source has returned.
func startHung(t *testing.T, opts ...graph.Option) (*graph.Running, <-chan struct{}) {
	t.Helper()
	g := graph.New(opts...)
	sourceDone := make(chan struct{})
	src := graph.AddSource(g, "numbers", graph.SourceFunc(func(ctx context.Context, out graph.Emitter[int]) error {
		defer close(sourceDone)
		for i := 0; ; i++ {
			if err := out.Emit("", graph.Frame[int]{Data: i}); err != nil {
				return err
			}
		}
	}))
	h := graph.AddTransform(g, "hang", hangKind.New(hangArgs{At: 10}), graph.Place(graph.Process))
	reached := make(chan struct{})
	var once sync.Once
	snk := graph.AddSink(g, "count", graph.SinkFunc(func(ctx context.Context, f graph.Frame[int]) error {
		if f.Data == 9 {
			once.Do(func() { close(reached) })
		}
		return nil
	}))
	graph.Connect(g, src.Out(""), h.In(""))
	graph.Connect(g, h.Out(""), snk.In(""))
	r, err := g.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-reached
	return r, sourceDone
}

// TestHungWorkerStopsHard drains a run whose element in a worker process
// hangs: past DrainTimeout the run stops hard, the worker is killed, and
// nothing is left behind.
func TestHungWorkerStopsHard(t *testing.T) {
	leakcheck.Check(t)
	r, _ := startHung(t, graph.DrainTimeout(100*time.Millisecond))
	r.Drain()
	st, err := r.Wait()
	if !errors.Is(err, graph.ErrStopped) || !strings.Contains(err.Error(), "drain did not finish") {
		t.Fatalf("Wait: %v; want the drain deadline's ErrStopped", err)
	}
	if !st.Drained {
		t.Fatal("the stats do not say drained")
	}
}

// TestSecondSignalStopsHard sends two SIGINTs to a run whose drain cannot
// finish: the second stops it at once.
func TestSecondSignalStopsHard(t *testing.T) {
	leakcheck.Check(t)
	r, sourceDone := startHung(t, graph.HandleSignals(), graph.DrainTimeout(time.Hour))
	// Two signals sent at once may arrive as one: the second goes once
	// the first has started the drain (the source has returned).
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-sourceDone
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_, err := r.Wait()
	if !errors.Is(err, graph.ErrInterrupted) || !errors.Is(err, graph.ErrStopped) {
		t.Fatalf("Wait after two signals: %v; want ErrInterrupted and ErrStopped", err)
	}
}

// TestTeardownRunsOnFailure checks that an element's Teardown runs when
// the run fails elsewhere.
func TestTeardownRunsOnFailure(t *testing.T) {
	td := &tearDown{}
	g := graph.New()
	src := graph.AddSource(g, "numbers", numbersKind.New(numbersArgs{N: 10}))
	sq := graph.AddTransform(g, "square", squareKind.New(squareArgs{FailAt: 3, Crash: -1}))
	snk := graph.AddSink(g, "td", td)
	graph.Connect(g, src.Out(""), sq.In(""))
	graph.Connect(g, sq.Out(""), snk.In(""))
	if _, err := g.Run(context.Background()); !errors.Is(err, errOdd) {
		t.Fatalf("Run: %v", err)
	}
	if !td.setup || !td.torn {
		t.Fatalf("setup %v, teardown %v", td.setup, td.torn)
	}
}

type tearDown struct{ setup, torn bool }

func (d *tearDown) Setup(context.Context) error                     { d.setup = true; return nil }
func (d *tearDown) Teardown(context.Context) error                  { d.torn = true; return nil }
func (d *tearDown) Consume(context.Context, graph.Frame[int]) error { return nil }
