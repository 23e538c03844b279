// Package jetstream is a batch backend on NATS JetStream: the same job
// definition runs unchanged on N machines, and on one machine with no
// set-up at all.
//
//	res, err := Convert.Run(ctx, params, batch.WithBackend(jetstream.Local(4)))
//
// Local starts a NATS server with JetStream inside the coordinating process
// (loopback only, a random port, a generated password, storage in a
// temporary directory removed at the end) and worker processes of the same
// program that connect to it — exactly the distributed code path. Connect
// uses an existing server or cluster (NATS options carry credentials and
// TLS); workers on other machines run Serve (a user's own binary, since jobs
// are defined in it) or `ferry worker --nats URL` (ferry's demo jobs).
//
// # How a run goes
//
// The dispatcher of package batch decides everything but execution (which
// indices go together, retries, the failure policy, partitions, the
// checkpoint), as for every backend. Each task it hands this backend is
// published as one unit on a work-queue stream of the run; a worker pulls
// it, renews its hold while it runs (in-progress acknowledgements, every
// third of AckWait), publishes the outcome of each index as it ends
// (outcomes of quick indices travel together), then an end report, and only
// then acknowledges the unit. Delivery is at least once, results are
// exactly once: the coordinator keeps the first outcome of each index of a
// unit and drops any other.
//
// A worker that dies loses only what it was running: a local worker process
// is reported by the worker runtime at once, with its *proc.WorkerError; a
// worker elsewhere that stops answering loses its unit after AckWait, when
// the unit is delivered again — the worker that gets it reports it lost
// (*WorkerLostError) instead of running it. Either way the dispatcher runs
// the indices without an outcome again, alone, so that an index that kills
// its worker fails by itself. Sinks can therefore see an index twice when a
// worker dies: write outputs idempotently (batch's file helpers).
//
// What one run puts on the server is named for the run (see wire.go); Close
// deletes it.
package jetstream
