package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/graph"
	"github.com/ferrypipe/ferry/internal/gwdemo"
)

// newGraphCmd returns "ferry demo graph": a streaming element graph (see
// package internal/gwdemo).
func newGraphCmd() *cobra.Command {
	cfg := gwdemo.DefaultConfig()
	var placement string
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Run a demo element graph: a search for chirps in two detectors' streams",
		Long: `Run ferry's element-graph demo (package graph), in the spirit of SGN's
gravitational-wave searches:

  H1 ─ whiten-H1 ─ filter-H1 ─┐
                              coincidence ─ triggers
  L1 ─ whiten-L1 ─ filter-L1 ─┘

Two synthetic detector streams (coloured noise, chirps injected every --every
seconds) come a frame per second, at --speed times real time. Each is whitened
(an FFT, the noise spectrum estimated as the run goes) and matched-filtered
against a bank of --templates chirps shared read-only with the workers
(shm.Share); whitening and filtering run in worker processes (--placement
goroutine runs them in goroutines: same results). The coincidence element
aligns the two detectors by time and keeps what both saw within 15 ms; the
sink writes the triggers to triggers.txt in --dir, beside graph.dot (and
graph.svg when Graphviz's dot is installed).

At the end it prints how many injections were found and every element's
stats. Ctrl+C drains the graph (every second of data read is searched) and
exits 130; a second Ctrl+C stops at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch placement {
			case "process":
				cfg.Placement = graph.Process
			case "goroutine":
				cfg.Placement = graph.Goroutine
			default:
				return usagef(cmd, "--placement %q: want process or goroutine", placement)
			}
			if err := cfg.Validate(); err != nil {
				return usageError(cmd, err)
			}
			out := cmd.OutOrStdout()
			if cfg.Dir == "" {
				dir, err := os.MkdirTemp("", "ferry-graph-")
				if err != nil {
					return err
				}
				cfg.Dir = dir
			} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
				return err
			}
			cfg.Live = !noProgress && isTerminal(out)
			sum, err := gwdemo.Run(cmd.Context(), out, cfg)
			if sum.Stats.Elements != nil {
				fmt.Fprint(out, sum)
			}
			if errors.Is(err, graph.ErrInterrupted) {
				fmt.Fprintf(out, "interrupted: drained after %d s of data\n", sum.Seconds)
				return interrupted(err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Seconds, "seconds", cfg.Seconds, "seconds of data per detector")
	f.Float64Var(&cfg.Speed, "speed", cfg.Speed, "times real time the detectors deliver data at (0: as fast as the graph goes)")
	f.IntVar(&cfg.Rate, "rate", cfg.Rate, "samples per second (a power of two)")
	f.IntVar(&cfg.Templates, "templates", cfg.Templates, "chirp templates in the bank")
	f.IntVar(&cfg.Every, "every", cfg.Every, "seconds between injected chirps")
	f.Float64Var(&cfg.Threshold, "threshold", cfg.Threshold, "SNR each detector must reach for a coincidence")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the synthetic data")
	f.StringVar(&placement, "placement", "process", "where whitening and filtering run: process or goroutine")
	f.StringVar(&cfg.Dir, "dir", "", "directory for triggers.txt and graph.dot (default: a new temporary directory)")
	f.BoolVar(&noProgress, "no-progress", false, "no live status line")
	return cmd
}
