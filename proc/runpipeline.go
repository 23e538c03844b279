package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/pipeline"
)

// RunPipeline starts a worker process that builds the pipeline registered
// as p, from args, and returns it as an Iterable: each All is one epoch of
// that pipeline, streamed to the parent. The pipeline is built once and
// stays warm across epochs (make it continuous with
// pipeline.Config.With(pipeline.Continuous())); an epoch the parent breaks
// out of is abandoned in the worker, and the next one is complete.
func RunPipeline[A, T any](ctx context.Context, p *PipelineFunc[A, T], args A, opts ...IterateOption) (*Iterable[T], error) {
	if p == nil {
		return nil, errors.New("proc: RunPipeline with a nil PipelineFunc")
	}
	if _, err := lookup(p.name, kindPipeline); err != nil {
		return nil, err
	}
	raw, err := p.args.Append(nil, args)
	if err != nil {
		return nil, &CodecError{What: "argument", Err: err}
	}
	return startIterable(ctx, kindPipeline, p.name, raw, p.item, opts)
}

// PipelineStats returns the per-stage and per-queue stats of the pipeline a
// RunPipeline worker runs. It may be called during a pass.
func (it *Iterable[T]) PipelineStats(ctx context.Context) (pipeline.Stats, error) {
	var st pipeline.Stats
	body, err := it.sup.request(ctx, it.m, wire.Head{Op: wire.OpStats, Target: 1}, nil)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("proc: worker %q sent unreadable stats: %w", it.sup.name, err)
	}
	return st, nil
}
