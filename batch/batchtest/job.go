package batchtest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/retry"
)

// Params are the parameters of the suite's job. Behaviours are keyed by
// index and are carried out by the source of that index (by its sink for
// "flaky-sink").
type Params struct {
	N   int    // the number of indices
	Dir string // scratch directory shared with worker processes
	// Fail gives indices a behaviour: "error" (the source fails), "panic",
	// "crash" (a worker process exits with status 3; in-process, a panic),
	// "crash-once" (crash on the first attempt only), "block" (until the
	// index's context ends), "block-once" (block on the first attempt
	// only), "flaky" (the source fails the first two attempts),
	// "flaky-sink" (the sink fails the first two attempts, after the
	// accumulator has seen the items), "poison" (the source fails while
	// the file Dir/poison exists), "hold" (block while Dir/hold exists),
	// "permanent" (the source fails with an error marked retry.Permanent).
	Fail map[int]string
	// Group > 0 groups indices by i/Group, except those with i%10 ≥ 8.
	Group int
	// GroupOn says what declares the groups of Group (see
	// batch.Partitioner): "" or "source", the source; "sink", the sink;
	// "both", both, the source with the groups of Group and the sink with
	// other groups (i%2), which must not be used.
	GroupOn string `json:",omitempty"`
	// Mode "nil-source" or "negative-len" makes a broken job.
	Mode string
}

// Out is what the suite's sink returns for an index.
type Out struct {
	Index int   `json:"index"` // the index
	Items []int `json:"items"` // the items the sink received
}

// Stats is the state of the suite's accumulator.
type Stats struct {
	Count int `json:"count"` // items seen
	Sum   int `json:"sum"`   // their sum
}

// sourceItems is what the source yields for index i: i%3 items.
func sourceItems(i int) []int {
	var items []int
	for k := range i % 3 {
		items = append(items, i*10+k)
	}
	return items
}

// Expected returns what the sink should receive (and return) for index i:
// the source's items through the suite's filters, computed directly.
func Expected(i int) []int {
	var out []int
	for _, v := range sourceItems(i) {
		v++ // "add1"
		vs := []int{v}
		if v%2 == 0 { // "dup-even"
			vs = []int{v, v}
		}
		for _, w := range vs {
			if w%7 != 0 { // "not-div-by-7"
				out = append(out, w)
			}
		}
	}
	return out
}

// Job is the job the suite runs.
var Job = batch.Define("ferry.batchtest/job", func(p Params) (*batch.Job[int, Out], error) {
	var src batch.Source[int] = batch.SourceFunc[int]{N: p.N, Fn: func(ctx context.Context, i int) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			if err := behave(ctx, p, i); err != nil {
				yield(0, err)
				return
			}
			for _, v := range sourceItems(i) {
				if !yield(v, nil) {
					return
				}
			}
		}
	}}
	switch p.Mode {
	case "nil-source":
		src = nil
	case "negative-len":
		src = batch.SourceFunc[int]{N: -1}
	}
	groupOf := func(i int) int {
		if i%10 >= 8 {
			return -1
		}
		return i / p.Group
	}
	if p.Group > 0 && src != nil && (p.GroupOn == "" || p.GroupOn == "source" || p.GroupOn == "both") {
		src = batch.Partitioned(src, groupOf)
	}
	var sink batch.Sink[int, Out] = batch.SinkFunc[int, Out](func(_ context.Context, i int, items []int) (Out, error) {
		if p.Fail[i] == "flaky-sink" {
			if err := flaky(p.Dir, i); err != nil {
				return Out{}, err
			}
		}
		if err := appendLine(filepath.Join(p.Dir, "sink.log"), i); err != nil {
			return Out{}, err
		}
		if p.Group > 0 && i%10 < 8 {
			if err := appendLine(filepath.Join(p.Dir, fmt.Sprintf("group-%d", i/p.Group)), i); err != nil {
				return Out{}, err
			}
		}
		return Out{Index: i, Items: append([]int(nil), items...)}, nil
	})
	switch {
	case p.Group > 0 && p.GroupOn == "sink":
		sink = partitionedSink{sink, groupOf}
	case p.Group > 0 && p.GroupOn == "both":
		sink = partitionedSink{sink, func(i int) int { return i % 2 }}
	}
	return &batch.Job[int, Out]{
		Source: src,
		Filters: []batch.Filter[int]{
			batch.Map("add1", func(_ context.Context, v int) (int, error) { return v + 1, nil }),
			batch.Expand("dup-even", func(_ context.Context, v int) ([]int, error) {
				if v%2 == 0 {
					return []int{v, v}, nil
				}
				return []int{v}, nil
			}),
			batch.Keep("not-div-by-7", func(_ context.Context, v int) (bool, error) { return v%7 != 0, nil }),
		},
		Accumulators: []batch.Accumulator[int]{
			batch.Accumulate("stats", func() Stats { return Stats{} },
				func(s Stats, v int) (Stats, error) { return Stats{s.Count + 1, s.Sum + v}, nil },
				func(a, b Stats) Stats { return Stats{a.Count + b.Count, a.Sum + b.Sum} }),
		},
		Sink:    sink,
		Version: "1",
	}, nil
})

// partitionedSink is a sink that declares the groups (batch.Partitioner).
type partitionedSink struct {
	batch.Sink[int, Out]
	key func(int) int
}

func (s partitionedSink) Partition(i int) int { return s.key(i) }

// behave carries out the behaviour params give index i.
func behave(ctx context.Context, p Params, i int) error {
	switch p.Fail[i] {
	case "":
		return nil
	case "error":
		return fmt.Errorf("bad input at index %d", i)
	case "panic":
		panic(fmt.Sprintf("index %d is poisoned", i))
	case "crash", "crash-once":
		if p.Fail[i] == "crash-once" && count(p.Dir, fmt.Sprintf("crashed-%d-", i)) > 0 {
			return nil
		}
		if err := mark(p.Dir, fmt.Sprintf("crashed-%d-", i)); err != nil {
			return err
		}
		if proc.IsWorker() { // a worker process: crash it
			fmt.Fprintf(os.Stderr, "batchtest: index %d crashes its worker\n", i)
			os.Exit(3)
		}
		panic(fmt.Sprintf("index %d crashes", i))
	case "block", "block-once":
		if p.Fail[i] == "block-once" {
			n := count(p.Dir, fmt.Sprintf("blocked-%d-", i))
			if err := mark(p.Dir, fmt.Sprintf("blocked-%d-", i)); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
		}
		<-ctx.Done()
		return ctx.Err()
	case "flaky":
		return flaky(p.Dir, i)
	case "permanent":
		if err := mark(p.Dir, fmt.Sprintf("attempt-%d-", i)); err != nil {
			return err
		}
		return fmt.Errorf("index %d: %w", i, retry.Permanent(errors.New("not UTF-8")))
	case "flaky-sink":
		return nil // the sink fails, once the accumulators have run
	case "poison":
		if _, err := os.Stat(filepath.Join(p.Dir, "poison")); err == nil {
			return fmt.Errorf("index %d is poisoned", i)
		}
		return nil
	case "hold":
		if _, err := os.Stat(filepath.Join(p.Dir, "hold")); err == nil {
			<-ctx.Done() // until the run ends, or the process dies
			return ctx.Err()
		}
		return nil
	}
	return fmt.Errorf("batchtest: unknown behaviour %q", p.Fail[i])
}

// flaky fails the first two attempts at index i, and lets the third and
// later ones succeed.
func flaky(dir string, i int) error {
	n := count(dir, fmt.Sprintf("attempt-%d-", i))
	if err := mark(dir, fmt.Sprintf("attempt-%d-", i)); err != nil {
		return err
	}
	if n < 2 {
		return fmt.Errorf("flaky failure %d at index %d", n+1, i)
	}
	return nil
}

// appendLine appends i as a line to the file at path: one small write
// with O_APPEND, so that processes appending at once do not mix lines.
func appendLine(path string, i int) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(i) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readLines returns the integers in the lines of the file at path (none if
// it does not exist).
func readLines(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		i, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, i)
	}
	return out, nil
}

// mark creates a new file in dir whose name starts with prefix.
func mark(dir, prefix string) error {
	if dir == "" {
		return errors.New("batchtest: Params.Dir is empty")
	}
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return err
	}
	return f.Close()
}

// count returns the number of files in dir whose names start with prefix.
func count(dir, prefix string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			n++
		}
	}
	return n
}

// groupOrder returns the indices each group's sink saw, in order.
func groupOrder(dir string) (map[int][]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	groups := map[int][]int{}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "group-")
		if !ok {
			continue
		}
		g, err := strconv.Atoi(name)
		if err != nil {
			return nil, err
		}
		if groups[g], err = readLines(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
	}
	return groups, nil
}
