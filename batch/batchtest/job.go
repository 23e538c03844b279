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
)

// Params are the parameters of the suite's job. Behaviours are keyed by
// index and are carried out by the source of that index.
type Params struct {
	N    int
	Dir  string         // scratch directory shared with worker processes
	Fail map[int]string // index → "error", "panic", "crash", "crash-once", "block", "flaky", "poison", "hold"
	// Group > 0 groups indices by i/Group, except those with i%10 ≥ 8.
	Group int
	// Mode "nil-source" or "negative-len" makes a broken job.
	Mode string
}

// Out is what the suite's sink returns for an index.
type Out struct {
	Index int   `json:"index"`
	Items []int `json:"items"`
}

// Stats is the state of the suite's accumulator.
type Stats struct {
	Count int `json:"count"`
	Sum   int `json:"sum"`
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
	if p.Group > 0 && src != nil {
		src = batch.Partitioned(src, func(i int) int {
			if i%10 >= 8 {
				return -1
			}
			return i / p.Group
		})
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
		Sink: batch.SinkFunc[int, Out](func(_ context.Context, i int, items []int) (Out, error) {
			if err := appendLine(filepath.Join(p.Dir, "sink.log"), i); err != nil {
				return Out{}, err
			}
			if p.Group > 0 && i%10 < 8 {
				if err := appendLine(filepath.Join(p.Dir, fmt.Sprintf("group-%d", i/p.Group)), i); err != nil {
					return Out{}, err
				}
			}
			return Out{Index: i, Items: append([]int(nil), items...)}, nil
		}),
		Version: "1",
	}, nil
})

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
		if os.Getenv("FERRY_WORKER") != "" { // a worker process: crash it
			fmt.Fprintf(os.Stderr, "batchtest: index %d crashes its worker\n", i)
			os.Exit(3)
		}
		panic(fmt.Sprintf("index %d crashes", i))
	case "block":
		<-ctx.Done()
		return ctx.Err()
	case "flaky":
		n := count(p.Dir, fmt.Sprintf("attempt-%d-", i))
		if err := mark(p.Dir, fmt.Sprintf("attempt-%d-", i)); err != nil {
			return err
		}
		if n < 2 {
			return fmt.Errorf("flaky failure %d at index %d", n+1, i)
		}
		return nil
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
