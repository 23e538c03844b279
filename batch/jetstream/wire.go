package jetstream

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ferrypipe/ferry/batch"
)

// What one run puts on the server (all names carry the run's id):
//
//	KV ferry_runs, key <run>      the run: its job, for workers to rebuild
//	stream FERRY_<run>_UNITS      work queue of units, subject ferry.<run>.unit
//	stream FERRY_<run>_OUT        what workers report, ferry.<run>.out.<unit>
//	ferry.<run>.live (request)    is this unit still wanted? (core NATS)
//	ferry.<run>.cancel            a unit given up by the coordinator (core NATS)
//	ferry.<run>.refused           a worker that cannot run the job (core NATS)
//
// A report's kind is in the Ferry-Kind header: start (the worker took the
// unit), outcomes (batch.AppendOutcome records), end (the unit is done),
// lost (a redelivered unit: its first worker stopped answering).

const runsBucket = "ferry_runs"

const (
	kindStart    = "start"
	kindOutcomes = "outcomes"
	kindEnd      = "end"
	kindLost     = "lost"

	hdrKind   = "Ferry-Kind"
	hdrWorker = "Ferry-Worker"
	hdrPID    = "Ferry-Pid"
	hdrHost   = "Ferry-Host"
)

// runInfo is the KV entry of a run.
type runInfo struct {
	Run     string          `json:"run"`
	Job     string          `json:"job"`
	ID      string          `json:"id"`
	Params  json.RawMessage `json:"params"`
	Len     int             `json:"len"`
	Timeout time.Duration   `json:"timeout"`
	AckWait time.Duration   `json:"ack_wait"`
}

func (ri *runInfo) spec() batch.JobSpec {
	return batch.JobSpec{Name: ri.Job, ID: ri.ID, Params: ri.Params, Len: ri.Len, Timeout: ri.Timeout}
}

// unitMsg is a unit of work: a batch.Task with its id.
type unitMsg struct {
	Unit        uint64 `json:"unit"`
	Indices     []int  `json:"indices"`
	Ordered     bool   `json:"ordered,omitempty"`
	StopOnError bool   `json:"stop_on_error,omitempty"`
	Alone       bool   `json:"alone,omitempty"`
	// Meta is the metadata of the task's context (package meta), which
	// the indices' contexts carry in the worker.
	Meta map[string]string `json:"meta,omitempty"`
}

func (u *unitMsg) task() batch.Task {
	return batch.Task{Indices: u.Indices, Ordered: u.Ordered, StopOnError: u.StopOnError, Alone: u.Alone}
}

// workersConsumer is the durable consumer of a run's units that its
// workers share.
const workersConsumer = "workers"

func streamUnits(run string) string { return "FERRY_" + run + "_UNITS" }
func streamOut(run string) string   { return "FERRY_" + run + "_OUT" }
func subjUnit(run string) string    { return "ferry." + run + ".unit" }
func subjOut(run string, u uint64) string {
	return "ferry." + run + ".out." + strconv.FormatUint(u, 10)
}
func subjOutAll(run string) string  { return "ferry." + run + ".out.>" }
func subjLive(run string) string    { return "ferry." + run + ".live" }
func subjCancel(run string) string  { return "ferry." + run + ".cancel" }
func subjRefused(run string) string { return "ferry." + run + ".refused" }

// unitOf parses the unit id at the end of an out subject.
func unitOf(subject, run string) (uint64, error) {
	prefix := "ferry." + run + ".out."
	if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
		return 0, fmt.Errorf("jetstream: a report on %q", subject)
	}
	return strconv.ParseUint(subject[len(prefix):], 10, 64)
}

// WorkerLostError is the cause of the indices of a unit whose worker
// stopped answering: it neither reported them nor renewed its hold on the
// unit within the ack wait (a machine that died, a network that broke).
// A worker process started by this backend that dies is reported with its
// *proc.WorkerError instead.
type WorkerLostError struct {
	Worker  string        // the worker that started the unit, "host pid N"; "" if none said so
	Unit    uint64        // the unit
	AckWait time.Duration // how long it had to answer
}

func (e *WorkerLostError) Error() string {
	if e.Worker == "" { // taken, but no worker said it started
		return fmt.Sprintf("jetstream: unit %d was taken by a worker that never reported on it (no report for %v)", e.Unit, e.AckWait)
	}
	return fmt.Sprintf("jetstream: %s stopped answering while running unit %d (no report for %v)", e.Worker, e.Unit, e.AckWait)
}
