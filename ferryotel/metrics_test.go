package ferryotel_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/ferryotel"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/shm"
)

var double = proc.Func("ferryotel.test/double", func(_ context.Context, v int) (int, error) { return 2 * v, nil })

var fifths = batch.Define("ferryotel.test/fifths", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(_ context.Context, i int) (int, error) {
			if i%5 == 4 {
				return 0, errors.New("every fifth index fails")
			}
			return i, nil
		}),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, _ int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// value finds the data point of metric name with the attribute k=v.
func value(t *testing.T, rm metricdata.ResourceMetrics, name string, k, v string) float64 {
	t.Helper()
	match := func(set attribute.Set) bool {
		got, ok := set.Value(attribute.Key(k))
		return ok && got.AsString() == v
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						return float64(p.Value)
					}
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						return p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if match(p.Attributes) {
						return float64(p.Count)
					}
				}
			}
		}
	}
	t.Errorf("no %s{%s=%q} among the metrics", name, k, v)
	return -1
}

// TestMetrics: a pipeline whose stage calls a worker pool, an arena and a
// batch run, collected with a manual reader.
func TestMetrics(t *testing.T) {
	ctx := t.Context()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	m, err := ferryotel.NewMetrics(ferryotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	pool, err := proc.NewPool(ctx, double, proc.Workers(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	defer m.Pool("double", pool.Stats)()
	s := pipeline.Pipe(pipeline.FromSlice(make([]int, 50)), pool.Call, pipeline.Name("double"))
	p, err := pipeline.Build(pipeline.Sink(s, 4), pipeline.WithHooks(m.Hooks("train")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	defer m.Pipeline("train", p.Stats)()
	for _, err := range p.Epoch(ctx) {
		if err != nil {
			t.Fatal(err)
		}
	}
	arena, err := shm.NewSegmentPool(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	defer m.Arena("frames", arena)()
	if _, err := fifths.Run(ctx, 10, batch.WithBackend(batch.Goroutines(2)), batch.ContinueOnError(), batch.Events(m.Batch())); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, k, v string
		want       float64
	}{
		{"ferry.stage.calls", "ferry.stage", "double", 50},
		{"ferry.stage.call.duration", "ferry.stage", "double", 50},
		{"ferry.pool.calls", "ferry.pool", "double", 50},
		{"ferry.pool.workers", "ferry.pool", "double", 2},
		{"ferry.pool.timeouts", "ferry.pool", "double", 0},
		{"ferry.arena.segments", "state", "free", 3},
		{"ferry.batch.attempts", "ferry.job", "ferryotel.test/fifths", 10},
		{"ferry.batch.outcomes", "outcome", "done", 8},
		{"ferry.batch.outcomes", "outcome", "failed", 2},
	} {
		if got := value(t, rm, c.name, c.k, c.v); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.k, c.v, got, c.want)
		}
	}
	value(t, rm, "ferry.queue.occupancy", "ferry.stage", "double")
}
