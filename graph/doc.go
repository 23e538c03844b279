// Package graph runs streaming graphs of elements — sources, transforms
// and sinks connected by named pads — with each element in a goroutine or
// in a worker process of its own, as SGN's Parallelize does, on ferry's
// one worker runtime.
//
// # The model
//
// A Frame carries a typed payload (Data) and what a stream needs around
// it: EOS (the last frame of its pad), Gap (no data for this stretch), a
// sequence number set by the graph (Seq: the frame's position on its
// source pad), optional Time and Rate for time series, and free-form Meta.
//
// An element is ordinary Go: a value with one method that handles a frame
// (Source.Run, Transform.Process, Sink.Consume), and optionally Setup,
// Flush (called once every sink pad has ended; a transform may emit final
// frames from it) and Teardown. Its state lives in the value between
// frames. Functions make elements too: SourceFunc, TransformFunc, Map,
// SinkFunc. Elements emit frames with an Emitter, which waits while the
// link is full: every link is a bounded buffer (BufferSize, LinkBuffer),
// so a slow element holds back what feeds it, and nothing piles up.
//
//	g := graph.New()
//	src := graph.AddSource(g, "numbers", graph.SourceFunc(numbers))
//	sq := graph.AddTransform(g, "square", graph.Map(square))
//	out := graph.AddSink(g, "print", graph.SinkFunc(print))
//	graph.Connect(g, src.Out(""), sq.In(""))
//	graph.Connect(g, sq.Out(""), out.In(""))
//	stats, err := g.Run(ctx)
//
// Pads are named with Inputs and Outputs (default "in" and "out"). Connect
// links a source pad to sink pads with the types checked by the compiler;
// Link takes SGN's link map of names ("element:pad"), and LinkByName links
// pads of the same name. One source pad may feed several sink pads (each
// gets every frame; in one process the frames are shared, read-only); a
// sink pad has exactly one source. Validate (also run by Start and Run)
// reports every mistake at once, naming elements and pads: unlinked pads,
// a sink pad linked twice, types that differ, cycles, ambiguous names.
//
// An element with several sink pads gets frames as they arrive (Frame.Pad
// says where from), or, added with AddAligned or AddAlignedSink, in steps
// of one frame per sink pad, matched by Seq (AlignBySeq) or by Time
// (AlignByTime): a pad without a frame for a step contributes a Gap frame,
// so nothing is dropped to keep pads in step. Only aligned elements pay
// for alignment; every element runs concurrently with the others.
//
// # Placement
//
// An element runs in a goroutine unless it is placed in a worker process:
// with Place(Process), or the graph's DefaultPlacement (SGN's
// _use_threading_override and use_threading_default). A worker process
// makes the element itself, from the arguments given to its kind, so the
// element must be registered at package level with RegisterSource,
// RegisterTransform, RegisterAligned, RegisterSink or RegisterAlignedSink,
// and the program must call proc.Main first in main (and tests, in
// TestMain):
//
//	var Square = graph.RegisterTransform("example.square",
//		func(args SquareArgs) (graph.Transform[int, int], error) { return &square{args}, nil })
//	...
//	sq := graph.AddTransform(g, "square", Square.New(SquareArgs{}), graph.Place(graph.Process))
//
// Placement changes where the element runs and nothing else: the same
// element core runs it in both places (its state, its failure budget, the
// sequence numbers of what it emits, the errors it returns), and its
// arguments pass through the codec in a goroutine as they do to a worker,
// so what the codec refuses is refused in both. Errors keep their
// identity across the boundary: an element's error arrives as a
// *proc.RemoteError that unwraps to the error's registered type or
// sentinel (proc.RegisterErrors, proc.RegisterErrorType). Frames cross
// through the codec; a Data that is a large numeric slice ([]byte,
// []float32, …) crosses through shared memory, copied in and out, when
// the graph has an arena (Arena). Read-only constants
// made with shm.Share reach worker elements with
// WorkerOptions(proc.Constants(c)) and shm.Lookup; they are memfds, freed
// by the kernel however the run ends.
//
// # Large frames without copies
//
// Frames of *shm.Buffer cross to and from worker processes without being
// copied. A source makes each with NewBuffer, which puts it in the
// graph's shared-memory arena (Arena; in ordinary memory without one),
// writes into it and emits it; when nobody else holds it, the segment
// itself changes hands at every process boundary:
//
//	g := graph.New(graph.Arena(pool)) // pool: shm.NewSegmentPool(1<<20, 48)
//	...
//	b, err := graph.NewBuffer(ctx, n)
//	fill(b.Bytes())
//	err = out.Emit("", graph.Frame[*shm.Buffer]{Data: b})
//
// The graph keeps each Buffer's references: a call holds the Buffers of
// its frames until it returns, and emitting one of them (once or more)
// passes it on; Emit takes the caller's reference to a Buffer it made; a
// frame fanned out to several sink pads holds one reference per link. Element code calls
// Retain only to keep a frame past its call (and Release when done with
// it). A Buffer may be written only by the holder of its only reference
// (Unique): a transform that holds it can change it in place and emit it,
// at no cost; otherwise it makes a new one. See shm.Buffer.
//
// # Ending a run
//
// A run ends when every sink has seen the end of all its pads: a source
// that returns ends its pads, and each element flushes and ends its own
// once all its sink pads have ended. It returns the stats of every
// element (frames in and out, gaps, failures, time per frame with mean,
// p90 and p99, and per pad the frames, the link's occupancy and the time
// spent waiting for it: Running.Stats shows them during the run).
//
// Running.Drain (or the first SIGINT or SIGTERM, with HandleSignals)
// stops the sources and lets every frame they produced flow through every
// element, in goroutines and in worker processes, to the sinks; past
// DrainTimeout, or at a second signal, the run stops hard. A run drained
// by a signal returns ErrInterrupted (a command exits 130). Worker
// processes never see the terminal's signals: they run in process groups
// of their own, and the parent coordinates.
//
// An element that fails (an error, a panic) fails the run with an
// *ElementError naming the element, what it was doing, the sink pad and
// the frame's Seq, unless its MaxFailures budget lets it drop the frame
// (logged and counted). A worker process that dies fails the run at once
// with an *ElementError wrapping the *proc.WorkerError (exit status and
// the tail of its output). Ending the caller's context, Running.Stop or a
// failure stops the run hard: every worker process is killed at once,
// with whatever it started, and every goroutine ends as soon as it sees
// its context end (a goroutine element that ignores its context cannot be
// killed, and Wait waits for it: code that may hang belongs in a worker
// process). A parent killed with SIGKILL takes its workers with it.
//
// Dot renders the graph in Graphviz's DOT language, with each element's
// placement.
package graph
