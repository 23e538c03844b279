package pipeline_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/ferrypipe/ferry/pipeline"
)

// Each queue names the stage that takes from it, and says how full it is
// now: here the queue before a stuck stage is full, the ones after it are
// empty.
func TestQueueStatsFillAndConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		nums := pipeline.FromSlice(make([]int, 1000), pipeline.Name("numbers"))
		stuck := pipeline.Pipe(nums, func(ctx context.Context, v int) (int, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return v, nil
		}, pipeline.Name("stuck"))
		p, err := pipeline.Build(pipeline.Sink(stuck, 4))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.Start()
		synctest.Wait() // everything waits for stuck
		type queue struct {
			consumer string
			fill     float64
		}
		want := map[string]queue{"numbers": {"stuck", 1}, "stuck": {"sink", 0}, "sink": {"", 0}}
		st := p.Stats()
		if len(st.Queues) != len(want) {
			t.Fatalf("queues %+v, want %v", st.Queues, want)
		}
		for _, q := range st.Queues {
			if got := (queue{q.Consumer, q.Fill}); got != want[q.Name] {
				t.Errorf("queue %q: consumer %q, fill %v; want %+v", q.Name, q.Consumer, q.Fill, want[q.Name])
			}
		}
		close(release)
	})
}
