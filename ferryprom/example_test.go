package ferryprom_test

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrypipe/ferry/ferryprom"
	"github.com/ferrypipe/ferry/pipeline"
)

// A pipeline's stats and its stage calls' durations, served on /metrics.
func Example() {
	c := ferryprom.New()
	prometheus.MustRegister(c)
	parse := func(_ context.Context, s string) (int, error) { return len(s), nil }
	p, err := pipeline.Build(pipeline.Sink(pipeline.Pipe(pipeline.FromSlice([]string{"a", "bc"}), parse, pipeline.Name("parse")), 4),
		pipeline.WithHooks(c.Hooks("lengths")))
	if err != nil {
		panic(err)
	}
	defer p.Close()
	defer c.Pipeline("lengths", p.Stats)()
	http.Handle("/metrics", promhttp.Handler())
	go func() { _ = http.ListenAndServe("127.0.0.1:9090", nil) }()
	for range p.Epoch(context.Background()) {
	}
}
