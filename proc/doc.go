// Package proc runs parts of a pipeline in worker processes: an iterable
// (Iterate), a whole pipeline (RunPipeline), a stage function (NewPool), a
// one-to-many stage (NewFlatPool) or a stateful stream function fed by its
// caller (OpenDuplex: the shape of a graph element), with their results
// streamed back as if they ran locally: the same values, the same errors
// (errors.Is and errors.As, pipeline.ErrSkip included) and the same
// cancellation.
//
// A worker process can be killed when it hangs, crashes without taking the
// program down, and has its own heap, GOMAXPROCS and memory limit. Go
// cannot send closures to another process, so code that runs in workers is
// registered by name at package level, and a worker is the same binary
// re-executed in worker mode:
//
//	var Shards = proc.Iter("shards", readShards) // func(ctx, Args) iter.Seq2[T, error]
//	var Decode = proc.Func("decode", decode)     // func(ctx, In) (Out, error)
//
//	func main() {
//		proc.Main() // first: in a worker process, this serves and never returns
//		...
//		it, err := proc.Iterate(ctx, Shards, args, proc.BufferSize(64))
//		pool, err := proc.NewPool(ctx, Decode, proc.Workers(4), proc.CallTimeout(10*time.Second))
//		dec := pipeline.Pipe(pipeline.From(it), pool.Call, pipeline.Concurrency(16))
//	}
//
// Call Main first in TestMain too, so that a test binary can be its own
// worker (under -race, the workers run under the race detector as well).
// A program that forgets fails at once with ErrNoBootstrap, never with a
// cascade of processes. To unit-test registered code without processes,
// start it with the InProcess option: the same protocol, in goroutines.
//
// # One runtime
//
// Every front door is a layer on one runtime (docs/decisions/0008): a
// session over each worker's control connection (requests and streams
// with credits, cancellable), an open worker host where kinds of work
// register, and one supervisor that starts, replaces, recycles and kills
// workers. Options say where they apply: an Option applies to every front
// door, a PoolOption to pools, an IterateOption to iterables.
//
// # Failures
//
// Nothing hangs and nothing is lost silently: a worker that dies is
// reported as a *WorkerError (name, pid, exit status or signal, whether it
// hit its MemoryLimit, the first and last bytes of its output) to whatever
// was waiting on it; an error or a panic in worker code arrives as a
// *RemoteError (type, message, stack) that unwraps to the registered
// errors it matched (RegisterErrors, RegisterErrorType); a value that
// cannot be encoded fails its own item with a *CodecError, and a type the
// codec cannot carry faithfully is refused at its first use (see Codec).
// Workers, and every process their code starts in their process group,
// end when the parent dies (parent-death signal, and end of file on the
// control connection), when they crash, and at Close. Worker logs written
// with log/slog reach the parent's Logger with their level and attributes.
// The wire protocol is documented in docs/protocol.md.
//
// # Platforms
//
// Worker processes need Linux (memfd, SCM_RIGHTS, the parent-death signal,
// process groups). The package builds on every OS, so that a program using
// it compiles everywhere; elsewhere every front door (InProcess included)
// fails at once with ErrUnsupported, which names the OS, and Main is a
// no-op. Stages that run in goroutines (package pipeline) and batch jobs
// with the Sequential or Goroutines backend work on every OS.
package proc
