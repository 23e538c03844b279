package progress_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/progress"
)

// fakeSource is a pipeline whose stats are known at any time: its stages
// take perSec items per second each, the consumer consumer per second,
// and its queues are as full as fill says.
type fakeSource struct {
	start    time.Time
	perSec   int64
	consumer int64

	mu   sync.Mutex
	fill map[string]float64
}

// setFill changes how full the queues are.
func (f *fakeSource) setFill(fill map[string]float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fill = fill
}

func (f *fakeSource) Stats() pipeline.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	el := time.Since(f.start).Seconds()
	n := int64(float64(f.perSec)*el + 0.5)
	st := pipeline.Stats{Stages: []pipeline.StageStats{
		{Name: "read", Concurrency: 1, Invocations: n},
		{Name: "parse", Concurrency: 4, Invocations: n},
		{Name: "batch", Concurrency: 1, Invocations: n},
	}}
	for _, q := range []struct{ name, consumer string }{{"read", "parse"}, {"parse", "batch"}, {"batch", "sink"}, {"sink", ""}} {
		items := n
		if q.name == "sink" {
			items = int64(float64(f.consumer)*el + 0.5)
		}
		st.Queues = append(st.Queues, pipeline.QueueStats{Name: q.name, Consumer: q.consumer, Items: items, Fill: f.fill[q.name]})
	}
	return st
}

// busy makes n calls of stage start, as the pipeline would, and returns
// the function that ends them.
func busy(h pipeline.Hooks, stage string, n int) func() {
	var dones []func(error)
	for range n {
		_, done := h.Task(context.Background(), stage)
		dones = append(dones, done)
	}
	return func() {
		for _, d := range dones {
			d(nil)
		}
	}
}

// The view shows each stage's rate, its busy workers (where the hooks saw
// calls) and its input queue, and marks the stage whose input queue is
// full and whose output queue is not.
func TestPipelineBars(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		view := progress.NewPipeline(&out, progress.Bars(true), progress.Width(100))
		defer view.Stop()
		end := busy(view.Hooks(), "parse", 4)
		defer end()
		src := &fakeSource{start: time.Now(), perSec: 3000, consumer: 100, fill: map[string]float64{"read": 1, "parse": 0.25}}
		view.SetStatus("epoch 1/2")
		view.Watch(src)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// A frame drawn while it runs (the time in its first line depends
		// on which frame it is).
		want := []string{
			"pipeline: epoch 1/2; ",
			"  stage     items/s   busy  input queue",
			"  read         3.0k      -",
			"  parse        3.0k  4.0/4  [##########] 100%  <- bottleneck",
			"  batch        3.0k      -  [###.......]  25%",
			"  consumer      100      -  [..........]   0%",
		}
		if got := lastFrame(out.String()); len(got) != len(want) || !strings.HasPrefix(got[0], want[0]) || !slices.Equal(got[1:], want[1:]) {
			t.Fatalf("frame\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// The consumer falls behind: its queue fills, parse's empties.
		src.setFill(map[string]float64{"read": 1, "parse": 1, "batch": 1, "sink": 1})
		end()
		time.Sleep(10 * time.Second) // the figures are smoothed over a second
		view.Stop()
		want = []string{
			"pipeline: epoch 1/2; 12s",
			"  stage     items/s   busy  input queue",
			"  read         3.0k      -",
			"  parse        3.0k  0.0/4  [##########] 100%",
			"  batch        3.0k      -  [##########] 100%",
			"  consumer      100      -  [##########] 100%  <- bottleneck",
		}
		if got := lastFrame(out.String()); !slices.Equal(got, want) {
			t.Fatalf("final frame\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		view.Stop() // a no-op
	})
}

// Elsewhere than on a terminal, the same figures come as a line every
// interval and one at Stop; before Watch, the line has the status only.
func TestPipelineLines(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		view := progress.NewPipeline(&out, progress.Bars(false), progress.Interval(time.Second))
		defer view.Stop()
		view.SetStatus("loading")
		view.Start()
		time.Sleep(time.Second)
		synctest.Wait()
		src := &fakeSource{start: time.Now(), perSec: 3000, consumer: 100, fill: map[string]float64{"read": 1, "parse": 0.25}}
		end := busy(view.Hooks(), "parse", 3)
		defer end()
		view.SetStatus("epoch 1/2")
		view.Watch(src)
		time.Sleep(time.Second)
		synctest.Wait()
		view.Stop()
		line := "pipeline: epoch 1/2; 2s; bottleneck: parse; read 3.0k/s; parse 3.0k/s, busy 3.0/4, input queue 100%; " +
			"batch 3.0k/s, input queue 25%; consumer 100/s, input queue 0%\n"
		want := []string{"pipeline: loading; 1s\n", line, line}
		if got := out.lines(); !slices.Equal(got, want) {
			t.Fatalf("got\n%q\nwant\n%q", got, want)
		}
	})
}

// The view of a real pipeline whose one stage is stuck: the queue before
// it is full, its workers are busy, and it is the bottleneck.
func TestPipelineWatchesPipeline(t *testing.T) {
	noLeaks(t)
	synctest.Test(t, func(t *testing.T) {
		var out syncBuffer
		view := progress.NewPipeline(&out, progress.Bars(true))
		defer view.Stop()
		release := make(chan struct{})
		nums := pipeline.FromSlice(make([]int, 1000), pipeline.Name("numbers"))
		stuck := pipeline.Pipe(nums, func(ctx context.Context, v int) (int, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return v, nil
		}, pipeline.Name("stuck"), pipeline.Concurrency(2))
		p, err := pipeline.Build(pipeline.Sink(stuck, 4), pipeline.WithHooks(view.Hooks()))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		p.Start()
		synctest.Wait() // everything waits for stuck
		view.Watch(p)
		time.Sleep(time.Second)
		view.Stop()
		want := []string{
			"pipeline: 1s",
			"  stage     items/s   busy  input queue",
			"  numbers         0      -",
			"  stuck           0  2.0/2  [##########] 100%  <- bottleneck",
			"  consumer        0      -  [..........]   0%",
		}
		if got := lastFrame(out.String()); !slices.Equal(got, want) {
			t.Fatalf("frame\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		close(release)
	})
}
