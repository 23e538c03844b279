package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrypipe/ferry/ferryprom"
	"github.com/ferrypipe/ferry/internal/demo"
)

// newDemoCmd returns the demo command, which runs a data-loading pipeline
// over a synthetic image data set (see package internal/demo).
func newDemoCmd() *cobra.Command {
	cfg := demo.DefaultConfig()
	var noProgress bool
	var metricsAddr, statsJSON, profileDir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo data-loading pipeline over synthetic images",
		Long: `Run ferry's demo: the data-loading side of a training job.

It generates a data set of small PNG images in memory (no input, no network),
then runs several epochs of one warm pipeline:

  samples → batches of --batch samples → load, in --workers worker processes
  (decode the PNG, crop, resize, normalize to a 3x64x64 float32 tensor,
  collate) → each batch back to the parent through shared memory → training
  step

and checks that every sample comes through exactly once per epoch. At the
end it prints a summary and the pipeline's per-stage stats.

On a terminal it draws the pipeline live (each stage's items/s, busy
workers and input queue, the bottleneck marked) under a line per epoch;
otherwise it prints a line per epoch.
--corrupt N damages N samples on purpose: each fails to decode in its worker
every epoch, is logged with its worker and dropped from its batch, and the
run goes on as long as no more than --max-failures samples fail in any one
epoch (so --corrupt 20 needs --max-failures 20 or more).

A failed run exits 1. Ctrl+C or SIGTERM stops the run, prints what was done
and exits 130.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return usageError(cmd, err)
			}
			level, err := logLevel(cmd)
			if err != nil {
				return err
			}
			cfg.LogLevel = level
			out, statsOut := cmd.OutOrStdout(), io.Writer(nil)
			switch {
			case noProgress:
				cfg.Progress = demo.ProgressNone
			case isTerminal(out):
				cfg.Progress = demo.ProgressBars
			default:
				cfg.Progress = demo.ProgressLines
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			if profileDir != "" && (metricsAddr != "" || statsJSON != "") {
				return usagef(cmd, "--profile measures the stages instead of running the demo: it takes neither --metrics nor --stats-json")
			}
			if statsJSON == "-" {
				// The JSON alone on standard output, for a script to read.
				statsOut = out
				out = cmd.ErrOrStderr()
			}
			if profileDir != "" {
				_, err := demo.Profile(ctx, out, profileDir, demo.ProfileConfig{Samples: min(cfg.Samples, 512),
					BatchSize: cfg.BatchSize, Workers: cfg.Workers, Seed: cfg.Seed})
				if err != nil && ctx.Err() != nil {
					fmt.Fprintln(out, "\ninterrupted: no profile written")
					return interrupted(err)
				}
				if err == nil {
					fmt.Fprintf(out, "\nwrote %s and %s\n", filepath.Join(profileDir, "profile.txt"), filepath.Join(profileDir, "profile.svg"))
				}
				return err
			}
			if metricsAddr != "" {
				shutdown, err := serveMetrics(cmd, metricsAddr, &cfg)
				if err != nil {
					return err
				}
				defer shutdown()
			}
			if cfg.CPUProfileDir != "" {
				stopProfile, err := startCPUProfile(cfg.CPUProfileDir)
				if err != nil {
					return usagef(cmd, "--cpuprofile: %w", err)
				}
				defer stopProfile()
			}
			sum, err := demo.Run(ctx, out, cfg)
			if statsJSON != "" {
				if jerr := writeStatsJSON(statsJSON, statsOut, sum.JSON); jerr != nil {
					return errors.Join(err, jerr)
				}
			}
			if err != nil && ctx.Err() != nil {
				fmt.Fprintf(out, "\ninterrupted in epoch %d of %d: %s\n", len(sum.Epochs)+1, cfg.Epochs, epochsDone(sum))
				return interrupted(err)
			}
			return err
		},
	}
	cmd.AddCommand(newCurateCmd())
	cmd.AddCommand(newGraphCmd())
	f := cmd.Flags()
	f.IntVar(&cfg.Samples, "samples", cfg.Samples, "number of images in the synthetic data set")
	f.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "passes over the data set")
	f.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "samples per batch")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "worker processes of the load stage; the default is the number of CPUs")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the synthetic data set")
	f.IntVar(&cfg.Corrupt, "corrupt", cfg.Corrupt, "damage `N` samples on purpose, to see failure handling")
	f.IntVar(&cfg.MaxFailures, "max-failures", cfg.MaxFailures, "failed samples tolerated in each epoch: the run fails in the first epoch with more")
	f.BoolVar(&noProgress, "no-progress", false, "show no progress, only failures and the summary")
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus metrics on `ADDR`/metrics while the demo runs (\":9090\" listens on 127.0.0.1 only; give a host, e.g. 0.0.0.0:9090, to listen elsewhere)")
	f.StringVar(&statsJSON, "stats-json", "", "write the final stats as JSON to `FILE` (\"-\": standard output, and the rest of the output goes to standard error), also after an interruption")
	f.StringVar(&cfg.CPUProfileDir, "cpuprofile", "", "write CPU profiles to `DIR`: ferry-PID.pprof for this process, worker-NAME-PID.pprof for each load worker (go tool pprof -tagfocus ferry.stage=load …)")
	f.StringVar(&profileDir, "profile", "", "instead of the demo, measure how each stage scales with its concurrency and write a table and a plot to `DIR`")
	return cmd
}

// serveMetrics serves the metrics of the demo run cfg describes (it sets
// cfg.Metrics) on addr until shutdown is called. A bare ":port" listens on
// loopback only.
func serveMetrics(cmd *cobra.Command, addr string, cfg *demo.Config) (shutdown func(), err error) {
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usagef(cmd, "--metrics %s: %w", addr, err)
	}
	cfg.Metrics = ferryprom.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(cfg.Metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(cmd.ErrOrStderr(), "serving metrics on http://%s/metrics\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// startCPUProfile profiles this process into dir/ferry-PID.pprof until
// stop is called.
func startCPUProfile(dir string) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("ferry-%d.pprof", os.Getpid())))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeStatsJSON writes what encode makes to path ("-": out).
func writeStatsJSON(path string, out io.Writer, encode func() ([]byte, error)) error {
	b, err := encode()
	if err != nil {
		return fmt.Errorf("--stats-json: %w", err)
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = out.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("--stats-json: %w", err)
	}
	return nil
}

// isTerminal reports whether w is a terminal that progress bars can be
// drawn on: one with a size (a pseudo-terminal may have none).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	width, height, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0 && height > 0
}

// epochsDone says what the epochs that ended delivered, e.g. "2 epochs
// done (5994 samples in 188 batches, 6 failed)".
func epochsDone(s demo.Summary) string {
	n := len(s.Epochs)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	if n == 0 {
		return "no epoch done"
	}
	return fmt.Sprintf("%d epoch%s done (%d samples in %d batches, %d failed)", n, plural, s.Items, s.Batches, s.Failed)
}
