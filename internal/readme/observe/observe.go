// Package observe is the README's example of traces, metrics and the
// tuning profile.
package observe

//lint:file-ignore SA4006 a README snippet shows the calls, not what is done with every error

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferrypipe/ferry/ferryotel"
	"github.com/ferrypipe/ferry/ferryprom"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
	"github.com/ferrypipe/ferry/tune"
	"github.com/ferrypipe/ferry/tune/tuneplot"
)

func decode(_ context.Context, path string) ([]byte, error) { return []byte(path), nil }

func resize(_ context.Context, b []byte) ([]byte, error) { return b, nil }

// Decode is the example's worker function.
var Decode = proc.Func("readme.observe.decode", decode)

var ctx = context.Background()

func observe(paths []string) error {
	// readme:begin observe
	pool, err := proc.NewPool(ctx, Decode, proc.WithCallHook(ferryotel.CallHook())) // a span per worker call
	if err != nil {
		return err
	}
	defer pool.Close()
	metrics := ferryprom.New()
	prometheus.MustRegister(metrics)
	http.Handle("/metrics", promhttp.Handler())

	s := pipeline.Pipe(pipeline.FromSlice(paths), pool.Call, pipeline.Name("decode"))
	p, err := pipeline.Build(pipeline.Sink(s, 8),
		pipeline.WithHooks(ferryotel.Hooks("train"), metrics.Hooks("train"))) // spans and histograms per stage call
	if err != nil {
		return err
	}
	defer p.Close()
	defer metrics.Pipeline("train", p.Stats)() // stages and queues, read at each scrape
	defer metrics.Pool("decode", pool.Stats)() // calls, timeouts, restarts, workers

	for img, err := range p.Epoch(ctx) {
		if err != nil {
			return err
		}
		use(img)
	}

	ctx := meta.With(ctx, "tenant", "acme") // in the worker, meta.Get(ctx, "tenant") is "acme"
	img, err := pool.Call(ctx, paths[0])    // (in a pipeline, a Task hook adds metadata to each call)
	// readme:end
	use(img)
	return nil
}

func use([]byte) {}

func profile(ctx context.Context, paths []string) error {
	// readme:begin profile
	in := tune.Sample(paths[:500])
	img := tune.Stage(in, "decode", decode)
	tune.Stage(img, "resize", resize)
	report, err := tune.Profile(ctx, in) // each stage alone at concurrency 1, 2, 4, …
	if err != nil {
		return err
	}
	fmt.Print(report)                           // throughput per concurrency, and where each stage saturates
	return tuneplot.Save(report, "profile.svg") // the same as a plot
	// readme:end
}

// Observe and Profile keep the examples from being dead code.
var (
	Observe = observe
	Profile = profile
)
