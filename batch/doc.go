// Package batch runs indexed batch jobs: a source of N indices, each of
// which yields zero, one or many items, a chain of filters, stateful
// accumulators, and a sink that writes the items of each index and returns
// what it wrote — run by interchangeable backends with one failure policy,
// results in index order, progress events, and checkpoint and resume.
//
// # The model
//
// A job is defined once, at package level, by name, with a function that
// builds it from parameters:
//
//	var Convert = batch.Define("convert", func(p Params) (*batch.Job[Frame, []string], error) {
//		return &batch.Job[Frame, []string]{
//			Source:       batch.FromFunc(len(p.Inputs), readInput),    // or any Source[T]
//			Filters:      []batch.Filter[Frame]{batch.Map("normalise", norm), batch.Keep("valid", valid)},
//			Accumulators: []batch.Accumulator[Frame]{batch.Accumulate("stats", newStats, addStats, mergeStats)},
//			Sink:         batch.SinkFunc[Frame, []string](writeFrames), // returns the paths it wrote
//			Version:      "2",
//		}, nil
//	})
//
//	res, err := Convert.Run(ctx, params, batch.WithBackend(batch.Processes(4)), batch.Retries(2))
//	stats, err := batch.State[Stats](res, "stats")
//
// Registering by name is what lets worker processes rebuild the job: Go
// cannot send closures, so a worker (the same program, re-executed; call
// proc.Main first in main) calls the same build function with the same
// parameters, and checks that it gets a job with the same identity
// (Definition.ID: a hash of the name, Version, filter and accumulator
// names, the source's length and the parameters' JSON).
//
// The items of one index flow source → filters → accumulators → sink, in
// one worker; the index succeeds when the sink returns. Indices whose
// source or sink implements Partitioner are grouped: a group runs on one
// worker, in index order. Each index accumulates into a fresh state that
// travels back with its outcome; Run merges the states of the successful
// indices in index order, so a retried or lost attempt never counts twice
// and a resumed run counts what the earlier run recorded.
//
// # Failure policy
//
// The same for every backend, decided in one place (the dispatcher inside
// Run):
//
//	situation                         FailFast (default)                  ContinueOnError
//	index fails, attempts left        runs again (Retries), after a       runs again (Retries)
//	                                  backoff (RetryBackoff)
//	error marked retry.Permanent      fails for good at once              same
//	index fails for good              run stops: in-flight indices are    recorded; the run goes on
//	                                  cancelled, the rest are ErrNotRun;
//	                                  Run returns its *IndexError
//	error, panic (*PanicError),       one attempt each                    one attempt each
//	timeout (*TimeoutError)
//	worker process dies               its indices run again alone; the    same
//	(*proc.WorkerError)               one that kills a worker alone
//	                                  fails (one attempt per death)
//	ctx ends                          Run returns ctx's error; what did   same
//	                                  not finish is ErrNotRun
//
// Every index appears in the Result exactly once: OK with its Output, or
// with an *IndexError (job, index, attempts, worker, cause). Nothing is
// dropped silently. A sink, though, runs at least once per index: a worker
// that dies after an index's sink ran and before its outcome reached Run
// has that index run again. Write output files with WriteFileAtomic (a
// temporary file renamed on success), so that a second write replaces the
// first whole.
//
// # Backends
//
//   - Sequential: one index after the other, in the caller's process.
//   - Goroutines(n): n goroutines. A panic fails its index; a timeout
//     cancels the index's context, and Run waits for the code to return.
//   - Processes(n, procOpts...): n worker processes (one proc.FlatPool;
//     each task's outcomes stream back as its indices end). A crash is
//     contained and the worker replaced; a timeout kills and replaces the
//     worker. Outputs and states cross the process boundary as JSON, errors
//     as *proc.RemoteError (or *PanicError).
//
// Backend is an interface; a backend that ships tasks elsewhere (a message
// queue, other machines) implements Open and an Executor, and its workers
// run tasks with NewRunner. See docs/decisions/0005-batch-jobs.md.
//
// # Checkpoint and resume
//
// WithCheckpoint records each finished index (its output, states, attempts,
// worker and times) through a Checkpointer; Resume skips the indices an
// earlier run of the same job ID finished, before dispatch, and takes their
// outputs and states from the checkpoint; a checkpoint of the job with
// other parameters or another Version is a *JobChangedError
// (ResumeOrRestart starts afresh instead), and one that holds nothing of
// the job is logged ("nothing to resume"). Only Run talks to the
// Checkpointer; workers never do. Package batch/checkpoint is a
// Checkpointer in a SQLite file (checkpoint.Open(path); one DB per run),
// which keeps what it committed when the process is killed: a run killed
// at any point resumes with every index done exactly once in its Result.
//
// # Progress
//
// Events(obs) sends start, done and failed events, with the worker id, to
// an Observer. progress.NewBatch(w) (package
// github.com/ferrypipe/ferry/progress) is one that renders them: bars with
// a line per worker on a terminal, a line every few seconds elsewhere. It
// lives apart so that importing batch does not link terminal libraries.
//
// # Testing a backend
//
// Package batch/batchtest is the conformance suite every backend passes
// (batchtest.RunNamed), killing a run with SIGKILL and resuming it
// included.
package batch
