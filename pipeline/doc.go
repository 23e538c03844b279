// Package pipeline is ferry's in-process engine: typed stages connected by
// bounded queues, run by goroutines.
//
// A pipeline is described from its source to its sink with top-level
// generic functions (Go methods cannot add type parameters), then built and
// consumed one epoch at a time:
//
//	src := pipeline.FromSlice(paths)
//	img := pipeline.Pipe(src, decode, pipeline.Concurrency(8), pipeline.Ordered())
//	batch := pipeline.Aggregate(img, 32)
//	p, err := pipeline.Build(pipeline.Sink(batch, 4), pipeline.MaxFailures(pipeline.Fraction(1, 100)))
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//	for range 10 {
//		for b, err := range p.Epoch(ctx) {
//			if err != nil {
//				return err
//			}
//			train(b)
//		}
//	}
//
// # Epochs
//
// An epoch is one pass over the sources. Without Continuous, a pass starts
// when the consumer asks for it; with Continuous the next pass starts as soon
// as the last one has been read, so every stage stays busy across the
// boundary. Either way an end-of-epoch marker travels behind the last item
// of each pass, batches never span two epochs, and an epoch the consumer
// abandons (by breaking out of the loop or cancelling its context) is
// discarded without disturbing the next one.
//
// # Failures
//
// A stage function that returns an error (or panics) fails its item. A
// failed item is counted, logged once with its stage, epoch and index, and
// dropped as long as the stage's and the pipeline's budgets allow (see
// Budget); past a budget the pipeline stops with a *BudgetError whose causes
// are *ItemError values. Returning ErrSkip drops an item on purpose.
//
// # Placement
//
// A stage's work is a func(context.Context, In) (Out, error). Anything with
// that signature can be a stage, which is how later packages put stages in
// worker processes without the engine knowing about processes.
//
// # Performance
//
// Items move between goroutines in chunks of up to 64, sent early whenever
// the next stage has nothing to do, so hand-off costs are paid per chunk
// under load and latency stays low when the pipeline is idle. See
// docs/decisions/0002-pipeline-engine.md.
package pipeline
