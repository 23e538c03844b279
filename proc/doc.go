// Package proc runs parts of a pipeline in worker processes: an iterable
// (Iterate), a whole pipeline (RunPipeline) or a stage function (NewPool),
// with their results streamed back as if they ran locally.
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
//
// # Failures
//
// Nothing hangs and nothing is lost silently: a worker that dies is
// reported as a *WorkerError (name, pid, exit status or signal, the tail of
// its stderr) to whatever was waiting on it; an error or a panic in worker
// code arrives as a *RemoteError (type, message, stack); a value that
// cannot be encoded fails its own item with a *CodecError. Workers exit when
// the parent dies (parent-death signal, and end of file on the control
// connection), and Close tears them down within a bounded time. The wire
// protocol is documented in docs/protocol.md.
package proc
