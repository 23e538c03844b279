package batchtest

import (
	"context"
	"slices"
	"sync"

	"github.com/ferrypipe/ferry/batch"
)

// Checkpoint is an in-memory batch.Checkpointer for tests. Unlike a
// database, it survives Close: a later run may Begin on it again, which is
// how tests resume.
type Checkpoint struct {
	mu      sync.Mutex
	jobs    map[string]map[int]batch.Record // by job ID, then index
	infos   map[string]batch.JobInfo        // by job ID
	order   []string                        // job IDs, the one begun last at the end
	current string
	calls   map[int]int // Record calls per index since the last Begin
	begins  int
	closes  int
}

// NewCheckpoint returns an empty Checkpoint.
func NewCheckpoint() *Checkpoint {
	return &Checkpoint{jobs: map[string]map[int]batch.Record{}, infos: map[string]batch.JobInfo{}}
}

// Begin starts or resumes job; see batch.Checkpointer.
func (c *Checkpoint) Begin(ctx context.Context, job batch.JobInfo, resume bool) ([]batch.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if resume && c.jobs[job.ID] == nil {
		// The latest other run of a job of that name, if any.
		for _, id := range slices.Backward(c.order) {
			if c.infos[id].Name == job.Name {
				return nil, &batch.JobChangedError{Job: job, Recorded: c.infos[id]}
			}
		}
	}
	c.begins++
	c.infos[job.ID] = job
	c.order = append(slices.DeleteFunc(c.order, func(id string) bool { return id == job.ID }), job.ID)
	c.current = job.ID
	c.calls = map[int]int{}
	if !resume || c.jobs[job.ID] == nil {
		c.jobs[job.ID] = map[int]batch.Record{}
	}
	var ok []batch.Record
	for _, r := range c.jobs[job.ID] {
		if r.OK {
			ok = append(ok, r)
		}
	}
	slices.SortFunc(ok, func(a, b batch.Record) int { return a.Index - b.Index })
	return ok, nil
}

// Record stores r under the job of the last Begin.
func (c *Checkpoint) Record(r batch.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.jobs[c.current]; m != nil {
		m[r.Index] = r
	}
	if c.calls != nil {
		c.calls[r.Index]++
	}
}

// Close does nothing but count.
func (c *Checkpoint) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	return nil
}

// Records returns what is recorded for the job with the given ID, by
// index.
func (c *Checkpoint) Records(id string) map[int]batch.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]batch.Record{}
	for i, r := range c.jobs[id] {
		out[i] = r
	}
	return out
}

// RecordCalls returns how many times Record was called for each index
// since the last Begin.
func (c *Checkpoint) RecordCalls() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]int{}
	for i, n := range c.calls {
		out[i] = n
	}
	return out
}

// Counts returns how many times Begin and Close were called.
func (c *Checkpoint) Counts() (begins, closes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.begins, c.closes
}
