package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/internal/curate"
	"github.com/ferrypipe/ferry/progress"
)

// newCurateCmd returns "ferry demo curate": an indexed batch job over a
// generated data set (see package internal/curate).
func newCurateCmd() *cobra.Command {
	cfg := curate.Config{Files: 10000, Values: 2000, Workers: 2, Corrupt: 137, InterruptAt: -1, Seed: 1}
	var noProgress bool
	cmd := &cobra.Command{
		Use:   "curate",
		Short: "Run a demo curation job: convert a generated data set file by file, with a checkpoint and a resume",
		Long: `Run ferry's curation demo: an indexed batch job (package batch).

It generates --files small simulation outputs (FSIM files of float32 values;
input --corrupt is truncated on purpose), then converts them one per index —
read, calibrate, drop empty ones, write — in --workers worker processes, with
running statistics merged from every worker and a SQLite checkpoint.

The first run is interrupted after --interrupt-at indices (half, by
default): its context is cancelled, as Ctrl+C does (a kill -9 leaves the
checkpoint just as usable; the batch tests check that); the second resumes it from the
checkpoint and runs only what is left. The corrupted input fails three
attempts and is reported with its error and worker; the command checks that
every other input was converted exactly once and that the merged statistics
equal a direct pass over the inputs. --dir keeps the data set, the outputs
and the checkpoint (checkpoint.db, for sqlite3) in a directory of your choice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Files < 1 || cfg.Values < 1 || cfg.Workers < 1 {
				return fmt.Errorf("--files, --values and --workers must be at least 1")
			}
			if cfg.Backend != "processes" && cfg.Backend != "jetstream" {
				return fmt.Errorf("--backend %q: want processes or jetstream", cfg.Backend)
			}
			if cfg.Corrupt >= cfg.Files {
				return fmt.Errorf("--corrupt %d: there are only %d inputs (-1 for none)", cfg.Corrupt, cfg.Files)
			}
			if cfg.InterruptAt < 0 {
				cfg.InterruptAt = cfg.Files / 2
			}
			cmd.SilenceUsage = true
			out := cmd.OutOrStdout()
			if cfg.Dir == "" {
				dir, err := os.MkdirTemp("", "ferry-curate-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				cfg.Dir = dir
			}
			logs := cmd.ErrOrStderr()
			if !noProgress {
				// Bars on a terminal, a line every few seconds otherwise;
				// one display for both runs, with the log lines above it.
				display := progress.NewBatch(out)
				cfg.NewObserver = func() batch.Observer { return display }
				logs = display.LogWriter(logs)
			}
			// Failures are in the summary; the log keeps what went wrong for good.
			cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sum, err := curate.Run(ctx, out, cfg)
			if sum.Final != nil {
				fmt.Fprint(out, sum)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Files, "files", cfg.Files, "inputs in the generated data set")
	f.IntVar(&cfg.Values, "values", cfg.Values, "mean float32 values per input")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "worker processes")
	f.StringVar(&cfg.Backend, "backend", "processes", "the batch backend: processes, or jetstream (an embedded NATS JetStream server and its worker processes)")
	f.IntVar(&cfg.Corrupt, "corrupt", cfg.Corrupt, "index of the input to truncate on purpose (-1: none)")
	f.IntVar(&cfg.InterruptAt, "interrupt-at", cfg.InterruptAt, "interrupt the first run after `N` indices (0: no interruption; default: half)")
	f.StringVar(&cfg.Dir, "dir", "", "keep the data set, outputs and checkpoint in this directory (default: a temporary one, removed)")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the generated data set")
	f.BoolVar(&noProgress, "no-progress", false, "show no progress, only the summary")
	return cmd
}
