package batch

import (
	"context"
	"time"
)

// EventKind says what happened to an index.
type EventKind uint8

// The kinds of Event.
const (
	EventStart  EventKind = iota + 1 // a worker began the index
	EventDone                        // the index succeeded
	EventFailed                      // an attempt failed (Final says whether it will be retried)
)

// Event is a progress event: what happened to one index, and where. The
// backends push them as they happen; one goroutine renders them.
type Event struct {
	Kind    EventKind // what happened
	Index   int       // to which index
	Worker  string    // e.g. "goroutine 2", "pid 4711"; "" for a start on a worker not known yet (a replacement still starting)
	Attempt int       // 1 for the first attempt
	Final   bool      // EventFailed: no attempt will follow
	Err     error     // EventFailed: why
	Time    time.Time // when it happened
}

// JobInfo identifies a run's job to a Checkpointer.
type JobInfo struct {
	Name string // the name the job was defined with
	ID   string // the stable hash of its definition and parameters
	Len  int    // the number of indices
	Spec string // the definition and parameters, as JSON (for people who inspect the checkpoint)
}

// Record is what a checkpoint keeps of one finished index.
type Record struct {
	Index    int       // the index
	OK       bool      // it succeeded; otherwise it failed for good
	Output   []byte    // the sink's result, JSON-encoded (OK only)
	State    []byte    // the accumulators' partial states for this index, JSON-encoded, or nil
	Err      string    // why it failed (!OK only)
	Attempts int       // attempts made (see IndexResult.Attempts)
	Worker   string    // the worker of the last attempt, e.g. "pid 4711"
	Started  time.Time // when the last attempt began (zero if unknown)
	Finished time.Time // when it ended
}

// A Checkpointer records finished indices so that an interrupted run can
// resume. Run is its only caller: workers never touch it.
type Checkpointer interface {
	// Begin starts (resume false: afresh, forgetting what an earlier run of
	// the same job recorded) or resumes a run of job, and returns the
	// records of the indices an earlier run of it finished successfully.
	Begin(ctx context.Context, job JobInfo, resume bool) ([]Record, error)
	// Record queues r for writing and returns at once; writes are batched.
	Record(r Record)
	// Close writes everything queued and returns the first write error.
	Close() error
}
