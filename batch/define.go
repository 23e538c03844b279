package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync"

	"github.com/ferrypipe/ferry/internal/codec"
	"github.com/ferrypipe/ferry/proc"
)

// Definition is a job registered by name with Define. Its Run builds the
// job from parameters and runs it; worker processes rebuild it from the
// same name and parameters.
type Definition[P, T, R any] struct {
	name  string
	build func(params P) (*Job[T, R], error)
	fn    *proc.FlatFunction[[]byte, []byte]
}

// Define registers a job under name and returns its Definition. build
// makes the job from its parameters; it runs in the parent and, for the
// Processes backend, once per worker process and set of parameters, so it
// must be deterministic: same parameters, same job. P must survive a JSON
// round trip (the parameters travel to workers, and are part of the job's
// identity, as JSON): Run, ID and NewRunner refuse a P with an unexported
// field, a channel, a function or an interface anywhere in it (a field
// tagged json:"-" excepted), which would arrive zero, or not as the type
// it was, with an error that wraps a *proc.TypeError naming the field.
// The sink's result R and the accumulators' states are checked in the
// same way (see Sink and Accumulate), for every backend, so that a job
// that runs with one runs with all.
//
// Call Define at package level (var MyJob = batch.Define(...)), so that
// worker processes, which re-execute the same program, register it too.
// Defining a name twice panics. For the Processes backend it also
// registers a proc function named "ferry.batch/"+name.
func Define[P, T, R any](name string, build func(params P) (*Job[T, R], error)) *Definition[P, T, R] {
	if name == "" || build == nil {
		panic("batch: Define needs a name and a build function")
	}
	d := &Definition[P, T, R]{name: name, build: build}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("batch: job %q is defined twice", name))
	}
	registry[name] = d
	d.fn = proc.FlatFunc(procName(name), serveTask(name))
	return d
}

// procName is the proc registration of the job named name.
func procName(name string) string { return "ferry.batch/" + name }

// Name returns the name the job was defined with.
func (d *Definition[P, T, R]) Name() string { return d.name }

// ID returns the job's identity for params: the hex SHA-256 of a canonical
// encoding of its name, Version, the names of its filters and
// accumulators in order, its source's Len and the JSON of params. It is
// the same in every process and every run of the same definition, and is
// what a checkpoint is keyed by. It builds the job to compute it.
func (d *Definition[P, T, R]) ID(params P) (string, error) {
	j, err := d.compile(params)
	if err != nil {
		return "", err
	}
	return j.id, nil
}

// definition is a Definition with its types erased, as the registry holds
// it.
type definition interface {
	compileJSON(params json.RawMessage) (erasedJob, error)
	procFunc() *proc.FlatFunction[[]byte, []byte]
}

func (d *Definition[P, T, R]) procFunc() *proc.FlatFunction[[]byte, []byte] { return d.fn }

var (
	registryMu sync.Mutex
	registry   = map[string]definition{}
)

func lookupJob(name string) (definition, error) {
	registryMu.Lock()
	defer registryMu.Unlock()
	d := registry[name]
	if d == nil {
		return nil, fmt.Errorf("%w: %q (define it at package level with batch.Define, in the program that runs the workers too)", ErrUnknownJob, name)
	}
	return d, nil
}

func (d *Definition[P, T, R]) compileJSON(params json.RawMessage) (erasedJob, error) {
	var p P
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, fmt.Errorf("batch: job %q: decoding its parameters: %w", d.name, err)
	}
	return d.compile(p)
}

// compile builds the job for params, checks it and computes its identity.
func (d *Definition[P, T, R]) compile(params P) (j *compiled[T, R], err error) {
	if d == nil || d.build == nil {
		return nil, errors.New("batch: a Definition not made by Define")
	}
	if err := codec.JSON.Check(reflect.TypeFor[P]()); err != nil {
		return nil, fmt.Errorf("batch: job %q: params: %w", d.name, err)
	}
	pj, err := json.Marshal(&params)
	if err != nil {
		return nil, fmt.Errorf("batch: job %q: encoding its parameters as JSON: %w", d.name, err)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("batch: job %q: build: %w", d.name, &PanicError{Value: v, Stack: string(debug.Stack())})
		}
	}()
	job, err := d.build(params)
	if err != nil {
		return nil, fmt.Errorf("batch: job %q: build: %w", d.name, err)
	}
	return newCompiled(d.name, job, pj)
}

// identity is what the job's ID is a hash of, in this order; its JSON is
// JobInfo.Spec.
type identity struct {
	Name         string          `json:"name"`
	Version      string          `json:"version"`
	Filters      []string        `json:"filters"`
	Accumulators []string        `json:"accumulators"`
	Len          int             `json:"len"`
	Params       json.RawMessage `json:"params"`
}

// compiled is a built and checked job.
type compiled[T, R any] struct {
	name   string
	job    *Job[T, R]
	accs   []accOps[T]
	names  []string // of the accumulators
	params json.RawMessage
	spec   string // identity as JSON
	id     string
	n      int
	part   Partitioner
}

func newCompiled[T, R any](name string, job *Job[T, R], params json.RawMessage) (*compiled[T, R], error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("batch: job %q: %s", name, fmt.Sprintf(format, args...))
	}
	switch {
	case job == nil:
		return nil, bad("build returned a nil job")
	case job.Source == nil:
		return nil, bad("the job has no Source")
	case job.Sink == nil:
		return nil, bad("the job has no Sink")
	}
	if err := codec.JSON.Check(reflect.TypeFor[R]()); err != nil {
		return nil, fmt.Errorf("batch: job %q: output: %w", name, err)
	}
	c := &compiled[T, R]{name: name, job: job, params: params, n: job.Source.Len()}
	if c.n < 0 {
		return nil, bad("its source has a negative length (%d)", c.n)
	}
	id := identity{Name: name, Version: job.Version, Filters: []string{}, Accumulators: []string{}, Len: c.n, Params: params}
	for k, f := range job.Filters {
		if f.name == "" || f.apply == nil {
			return nil, bad("filter %d (%q) has no name or no function: make filters with Map, Expand or Keep", k, f.name)
		}
		id.Filters = append(id.Filters, f.name)
	}
	seen := map[string]bool{}
	for k, a := range job.Accumulators {
		if a == nil {
			return nil, bad("accumulator %d is nil", k)
		}
		name := a.Name()
		if name == "" || seen[name] {
			return nil, bad("accumulator %d has an empty or duplicate name %q", k, name)
		}
		ops := a.ops()
		if err := ops.valid(); err != nil {
			return nil, bad("accumulator %q: %v", name, err)
		}
		if err := codec.JSON.Check(ops.stateType()); err != nil {
			return nil, fmt.Errorf("batch: job %q: accumulator %q state: %w", c.name, name, err)
		}
		seen[name] = true
		c.accs = append(c.accs, ops)
		c.names = append(c.names, name)
		id.Accumulators = append(id.Accumulators, name)
	}
	spec, err := json.Marshal(id)
	if err != nil {
		return nil, bad("encoding its identity: %v", err)
	}
	sum := sha256.Sum256(spec)
	c.spec, c.id = string(spec), hex.EncodeToString(sum[:])
	if p, ok := job.Source.(Partitioner); ok {
		c.part = p
	} else if p, ok := job.Sink.(Partitioner); ok {
		c.part = p
	}
	return c, nil
}

// erasedJob is a compiled job with its types erased, for the dispatcher
// and the runners.
type erasedJob interface {
	jobName() string
	jobID() string
	length() int
	partitioner() Partitioner
	// runIndex runs index i and returns the sink's result and the
	// accumulators' states.
	runIndex(ctx context.Context, i int) (any, []any, error)
	encodeOutput(v any) (json.RawMessage, error)
	decodeOutput(b []byte) (any, error)
	encodeStates(states []any) (json.RawMessage, error)
	decodeStates(b []byte) ([]any, error)
	accNames() []string
	paramsJSON() json.RawMessage
	specJSON() string
	mergeStates(perIndex [][]any) []any
}

func (c *compiled[T, R]) jobName() string          { return c.name }
func (c *compiled[T, R]) jobID() string            { return c.id }
func (c *compiled[T, R]) length() int              { return c.n }
func (c *compiled[T, R]) partitioner() Partitioner { return c.part }

func (c *compiled[T, R]) runIndex(ctx context.Context, i int) (any, []any, error) {
	var items []T
	for v, err := range c.job.Source.Items(ctx, i) {
		if err != nil {
			return nil, nil, stageError("source", "", err)
		}
		items = append(items, v)
	}
	for _, f := range c.job.Filters {
		var err error
		if items, err = f.apply(ctx, items); err != nil {
			return nil, nil, stageError("filter", f.name, err)
		}
	}
	var states []any
	if len(c.accs) > 0 {
		states = make([]any, len(c.accs))
		for k, a := range c.accs {
			s := a.fresh()
			for _, v := range items {
				var err error
				if s, err = a.add(s, v); err != nil {
					return nil, nil, stageError("accumulator", c.names[k], err)
				}
			}
			states[k] = s
		}
	}
	out, err := c.job.Sink.Write(ctx, i, items)
	if err != nil {
		return nil, nil, stageError("sink", "", err)
	}
	return out, states, nil
}

func (c *compiled[T, R]) encodeOutput(v any) (json.RawMessage, error) {
	r := v.(R)
	b, err := json.Marshal(&r) // addressable, as codec.JSON checks it
	if err != nil {
		return nil, fmt.Errorf("encoding the sink's result as JSON: %w", err)
	}
	return b, nil
}

func (c *compiled[T, R]) decodeOutput(b []byte) (any, error) {
	var out R
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decoding the sink's result from JSON: %w", err)
	}
	return out, nil
}

// encodeStates encodes the states of one index as a JSON object keyed by
// accumulator name, or nil for a job without accumulators.
func (c *compiled[T, R]) encodeStates(states []any) (json.RawMessage, error) {
	if len(c.accs) == 0 {
		return nil, nil
	}
	m := make(map[string]json.RawMessage, len(c.accs))
	for k, a := range c.accs {
		b, err := a.encode(states[k])
		if err != nil {
			return nil, fmt.Errorf("encoding the state of accumulator %q as JSON: %w", c.names[k], err)
		}
		m[c.names[k]] = b
	}
	return json.Marshal(m)
}

func (c *compiled[T, R]) decodeStates(b []byte) ([]any, error) {
	if len(c.accs) == 0 {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding accumulator states: %w", err)
	}
	states := make([]any, len(c.accs))
	for k, a := range c.accs {
		raw, ok := m[c.names[k]]
		if !ok {
			return nil, fmt.Errorf("decoding accumulator states: no state for %q", c.names[k])
		}
		s, err := a.decode(raw)
		if err != nil {
			return nil, err
		}
		states[k] = s
	}
	return states, nil
}

func (c *compiled[T, R]) accNames() []string { return c.names }

// mergeStates folds the states of the successful indices, in index order,
// into fresh states, one per accumulator.
func (c *compiled[T, R]) mergeStates(perIndex [][]any) []any {
	merged := make([]any, len(c.accs))
	for k, a := range c.accs {
		merged[k] = a.fresh()
		for _, s := range perIndex {
			if s != nil {
				merged[k] = a.merge(merged[k], s[k])
			}
		}
	}
	return merged
}

func (c *compiled[T, R]) paramsJSON() json.RawMessage { return c.params }
func (c *compiled[T, R]) specJSON() string            { return c.spec }
