package batch

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
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
	// To resume a job of which it holds no run, but holds runs of a job of
	// the same name under another ID, it returns a *JobChangedError and
	// begins nothing: Begin may then be called again.
	Begin(ctx context.Context, job JobInfo, resume bool) ([]Record, error)
	// Record queues r for writing and returns at once; writes are batched.
	Record(r Record)
	// Close writes everything queued and returns the first write error.
	Close() error
}

// ResumeOrRestart is Resume for a job that may have changed: when the
// checkpoint holds a run of the job with other parameters, another
// Version, other filters or accumulators or another length (a
// *JobChangedError for Resume), the run starts afresh, and a warning says
// what changed. The runs recorded under the old ID stay in the
// checkpoint. It needs WithCheckpoint.
func ResumeOrRestart() Option {
	return func(o *options) { o.resume, o.restart = true, true }
}

// JobChangedError is the error of a Run with Resume when the checkpoint
// holds no run of the job as it is now but holds runs of a job of the same
// name under another ID: its parameters, its Version, its filters or
// accumulators, or its length changed, so that nothing recorded can be
// resumed. Run with ResumeOrRestart, or without Resume, to start afresh.
type JobChangedError struct {
	Job      JobInfo // the job as it is now
	Recorded JobInfo // the run the checkpoint holds under the job's name (the latest one, if several)
}

// Error names the job, what changed and how to start afresh.
func (e *JobChangedError) Error() string {
	what := "its definition"
	if c := e.Changed(); len(c) > 0 {
		what = strings.Join(c, ", ")
	}
	return fmt.Sprintf("batch: job %q changed since the checkpoint was written (%s differ; recorded ID %s, now %s): "+
		"nothing to resume; run it with ResumeOrRestart or without Resume to start afresh",
		e.Job.Name, what, short(e.Recorded.ID), short(e.Job.ID))
}

// Changed lists what differs between the two specs (JobInfo.Spec): the
// names of the fields of the job's identity, and of its parameters, e.g.
// ["params.Files", "version"]. It is empty when the specs cannot be
// compared.
func (e *JobChangedError) Changed() []string {
	var was, now map[string]json.RawMessage
	if json.Unmarshal([]byte(e.Recorded.Spec), &was) != nil || json.Unmarshal([]byte(e.Job.Spec), &now) != nil {
		return nil
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(union(was, now))) {
		if sameJSON(was[k], now[k]) {
			continue
		}
		var pw, pn map[string]json.RawMessage
		if k == "params" && json.Unmarshal(was[k], &pw) == nil && json.Unmarshal(now[k], &pn) == nil && pw != nil && pn != nil {
			for _, pk := range slices.Sorted(maps.Keys(union(pw, pn))) {
				if !sameJSON(pw[pk], pn[pk]) {
					out = append(out, "params."+pk)
				}
			}
			continue
		}
		out = append(out, k)
	}
	return out
}

func union(a, b map[string]json.RawMessage) map[string]json.RawMessage {
	u := maps.Clone(a)
	if u == nil {
		u = map[string]json.RawMessage{}
	}
	maps.Copy(u, b)
	return u
}

// sameJSON reports whether a and b encode the same value (absent is null).
func sameJSON(a, b json.RawMessage) bool {
	var va, vb any
	if len(a) > 0 && json.Unmarshal(a, &va) != nil {
		return false
	}
	if len(b) > 0 && json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// short abbreviates a job ID for messages.
func short(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}
