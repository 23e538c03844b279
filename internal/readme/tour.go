package readme

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ferrypipe/ferry/pipeline"
)

func parse(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }

func decode(_ context.Context, path string) (int, error) { return len(path), nil }

func train([]int) {}

func tour(ctx context.Context, records []string) error {
	// readme:begin tour
	src := pipeline.FromSlice(records) // or FromSeq, FromSeq2, FromChan, From(Source)
	nums := pipeline.Pipe(src, parse, pipeline.Concurrency(4), pipeline.Ordered())
	batches := pipeline.Aggregate(nums, 32) // []int batches; DropLast() to drop the tail
	p, err := pipeline.Build(pipeline.Sink(batches, 4),
		pipeline.MaxFailures(pipeline.Fraction(1, 100)), // tolerate 1 % bad records
		pipeline.Continuous())                           // stay warm across epochs
	if err != nil {
		return err
	}
	defer p.Close()

	for range 10 {
		for batch, err := range p.Epoch(ctx) {
			if err != nil {
				return err // e.g. a *pipeline.BudgetError
			}
			train(batch)
		}
	}
	fmt.Print(p.Stats()) // per-stage and per-queue stats
	// readme:end
	return nil
}

// pipelineDoc is the example of the pipeline package's doc comment.
func pipelineDoc(ctx context.Context, paths []string) error {
	// readme:begin pipeline-doc
	src := pipeline.FromSlice(paths)
	img := pipeline.Pipe(src, decode, pipeline.Concurrency(8), pipeline.Ordered())
	batch := pipeline.Aggregate(img, 32)
	p, err := pipeline.Build(pipeline.Sink(batch, 4), pipeline.MaxFailures(pipeline.Fraction(1, 100)))
	if err != nil {
		return err
	}
	defer p.Close()
	for range 10 {
		for b, err := range p.Epoch(ctx) {
			if err != nil {
				return err
			}
			train(b)
		}
	}
	// readme:end
	return nil
}

// Tour and PipelineDoc keep the examples from being dead code.
var (
	Tour        = tour
	PipelineDoc = pipelineDoc
)
