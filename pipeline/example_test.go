package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"strings"

	"github.com/ferrypipe/ferry/pipeline"
)

// A pipeline that parses records concurrently, keeps their order, drops a
// bad record within its failure budget and batches the rest, for two epochs.
func Example() {
	records := []string{"1", "2", "x", "4", "5", "6", "7"}
	parse := func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }

	src := pipeline.FromSlice(records)
	nums := pipeline.Pipe(src, parse, pipeline.Name("parse"), pipeline.Concurrency(4), pipeline.Ordered())
	batches := pipeline.Aggregate(nums, 3)
	p, err := pipeline.Build(pipeline.Sink(batches, 2),
		pipeline.MaxFailures(pipeline.Count(2)),
		pipeline.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	ctx := context.Background()
	for epoch := range 2 {
		for b, err := range p.Epoch(ctx) {
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Println(epoch, b)
		}
	}
	fmt.Println("failed:", p.Stats().Failures)
	// Output:
	// 0 [1 2 4]
	// 0 [5 6 7]
	// 1 [1 2 4]
	// 1 [5 6 7]
	// failed: 2
}

// A filter and a one-to-many stage; ErrSkip drops an item without failing it.
func ExampleFlatPipe() {
	words := func(_ context.Context, line string) iter.Seq2[string, error] {
		return func(yield func(string, error) bool) {
			for _, w := range strings.Fields(line) {
				if !yield(w, nil) {
					return
				}
			}
		}
	}
	notStop := func(_ context.Context, w string) (string, error) {
		if w == "the" {
			return "", pipeline.ErrSkip
		}
		return strings.ToUpper(w), nil
	}
	src := pipeline.FromSlice([]string{"the quick fox", "jumps over the dog"})
	s := pipeline.Pipe(pipeline.FlatPipe(src, words), notStop)
	p, err := pipeline.Build(pipeline.Sink(s, 8))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for w, err := range p.Epoch(context.Background()) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Print(w, " ")
	}
	fmt.Println()
	// Output: QUICK FOX JUMPS OVER DOG
}

// Route sends items down different chains and merges them back.
func ExampleRoute() {
	src := pipeline.FromSlice([]int{1, 2, 3, 4})
	small := func(s *pipeline.Stage[int]) *pipeline.Stage[string] {
		return pipeline.Pipe(s, func(_ context.Context, v int) (string, error) { return fmt.Sprint("small ", v), nil })
	}
	large := func(s *pipeline.Stage[int]) *pipeline.Stage[string] {
		return pipeline.Pipe(s, func(_ context.Context, v int) (string, error) { return fmt.Sprint("large ", v), nil })
	}
	byValue := func(v int) int {
		if v <= 2 {
			return 0
		}
		return 1
	}
	r := pipeline.Route(src, byValue, []func(*pipeline.Stage[int]) *pipeline.Stage[string]{small, large})
	p, err := pipeline.Build(pipeline.Sink(r, 4))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	n := 0
	for _, err := range p.Epoch(context.Background()) {
		if err != nil {
			fmt.Println(err)
			return
		}
		n++
	}
	fmt.Println(n, "items")
	// Output: 4 items
}

// Next pulls items one at a time and reports the end of each epoch.
func ExamplePipeline_Next() {
	p, err := pipeline.Build(pipeline.Sink(pipeline.FromSlice([]string{"a", "b"}), 1), pipeline.Continuous())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	ctx := context.Background()
	for range 5 {
		v, err := p.Next(ctx)
		if errors.Is(err, pipeline.ErrEpochEnd) {
			fmt.Println("--")
			continue
		}
		fmt.Println(v)
	}
	// Output:
	// a
	// b
	// --
	// a
	// b
}

// Aggregate batches what a stage produced; MaxFailures lets a few records
// fail (each is logged and dropped) without stopping the pipeline, and the
// batches close over the gaps.
func ExampleAggregate() {
	records := []string{"1", "2", "x", "4", "5", "y", "7", "8"}
	parse := func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }

	nums := pipeline.Pipe(pipeline.FromSlice(records), parse, pipeline.Name("parse"))
	batches := pipeline.Aggregate(nums, 4)
	p, err := pipeline.Build(pipeline.Sink(batches, 1),
		pipeline.MaxFailures(pipeline.Fraction(1, 3)), // up to 1 record in 3, judged from the 3rd
		pipeline.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for b, err := range p.Epoch(context.Background()) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(b)
	}
	st := p.Stats()
	fmt.Printf("%d records, %d failed\n", st.Stages[0].Invocations, st.Failures)

	// One bad record in two is over the budget: the pipeline stops with a
	// *BudgetError whose causes are the records that failed.
	bad := pipeline.Aggregate(pipeline.Pipe(pipeline.FromSlice([]string{"1", "x", "3", "y", "5"}), parse, pipeline.Name("parse")), 4)
	p2, err := pipeline.Build(pipeline.Sink(bad, 1),
		pipeline.MaxFailures(pipeline.Fraction(1, 3)),
		pipeline.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p2.Close()
	for _, err := range p2.Epoch(context.Background()) {
		var be *pipeline.BudgetError
		if errors.As(err, &be) {
			fmt.Printf("stopped: %d of %d failed, over %v\n", be.Failures, be.Invocations, be.Budget)
			for _, c := range be.Causes {
				fmt.Println(" ", c)
			}
		}
	}
	// Output:
	// [1 2 4 5]
	// [7 8]
	// 8 records, 2 failed
	// stopped: 2 of 4 failed, over 1/3 after 3 invocations
	//   stage "parse", epoch 0, item 1: strconv.Atoi: parsing "x": invalid syntax
	//   stage "parse", epoch 0, item 3: strconv.Atoi: parsing "y": invalid syntax
}
