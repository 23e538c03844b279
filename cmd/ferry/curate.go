package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/internal/curate"
	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/progress"
)

// defaultCorrupt is the input --corrupt truncates when not given, if
// there are more inputs than that; with fewer, the middle one.
const defaultCorrupt = 137

// newCurateCmd returns "ferry demo curate": an indexed batch job over a
// generated data set (see package internal/curate).
func newCurateCmd() *cobra.Command {
	cfg := curate.Config{Files: 10000, Values: 2000, Workers: 2, Corrupt: defaultCorrupt, Seed: 1}
	var noProgress bool
	var statsJSON string
	cmd := &cobra.Command{
		Use:   "curate",
		Short: "Run a demo curation job: convert a generated data set file by file, with a checkpoint and a resume",
		Long: `Run ferry's curation demo: an indexed batch job (package batch).

It generates --files small simulation outputs (FSIM files of float32 values;
input --corrupt is truncated on purpose), then converts them one per index —
read, calibrate, drop empty ones, write — in --workers worker processes, with
running statistics merged from every worker and a SQLite checkpoint.

To show a resume, the first run is stopped on purpose after --interrupt-at
inputs (half of them by default; 0: no planned interruption), as Ctrl+C or
kill -9 would stop it; a second run resumes it from the checkpoint and runs
only what is left. The corrupted input fails three attempts and is reported
with its error and worker; the command checks that every other input was
converted exactly once and that the merged statistics equal a direct pass
over the inputs.

--dir keeps the data set, the outputs and the checkpoint (checkpoint.db, for
sqlite3) in a directory of your choice. A checkpoint is never deleted unless
you ask: in a --dir that holds one, --resume continues it (after Ctrl+C, say)
and --fresh deletes it and starts again; without either the command refuses.

A failed run exits 1. Ctrl+C or SIGTERM stops the run, prints what was done
and how to resume it, keeps the directory and exits 130.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("corrupt") && cfg.Files <= defaultCorrupt {
				cfg.Corrupt = cfg.Files / 2
			}
			if !f.Changed("interrupt-at") && !cfg.Resume {
				cfg.InterruptAt = cfg.Files / 2
			}
			if cfg.Resume && cfg.Dir == "" {
				return usagef(cmd, "--resume needs --dir: the directory of the run to resume")
			}
			tempDir := cfg.Dir == ""
			if tempDir {
				cfg.Dir = "(a temporary directory)" // for Validate
			}
			if err := cfg.Validate(); err != nil {
				return usageError(cmd, err)
			}
			if !tempDir {
				if err := cfg.CheckDir(); err != nil {
					return usageError(cmd, err)
				}
			}
			out, statsOut := cmd.OutOrStdout(), io.Writer(nil)
			if statsJSON == "-" {
				// The JSON alone on standard output, for a script to read.
				statsOut, out = out, cmd.ErrOrStderr()
			}
			if tempDir {
				dir, err := os.MkdirTemp("", "ferry-curate-")
				if err != nil {
					return err
				}
				cfg.Dir = dir
			}
			logw := cmd.ErrOrStderr()
			if !noProgress {
				// Bars on a terminal, a line every few seconds otherwise;
				// one display for both runs, with the log lines above it.
				display := progress.NewBatch(out)
				cfg.NewObserver = func() batch.Observer { return display }
				logw = display.LogWriter(logw)
			}
			// The log, above the display when there is one.
			level, err := logLevel(cmd)
			if err != nil {
				return err
			}
			cfg.Logger = logs.New(logw, level)
			ctx, stop := signalContext(cmd)
			defer stop()
			sum, err := curate.Run(ctx, out, cfg)
			if statsJSON != "" {
				if jerr := writeStatsJSON(statsJSON, statsOut, sum.JSON); jerr != nil {
					return errors.Join(err, jerr)
				}
			}
			if err != nil && ctx.Err() != nil {
				// Keep the directory, even a temporary one: it holds the
				// checkpoint to resume.
				fmt.Fprintf(out, "\n%s\n", stoppedSummary(sum))
				fmt.Fprintf(out, "to resume: %s\n", resumeCommand(cmd, cfg.Dir))
				return interrupted(err)
			}
			if tempDir {
				os.RemoveAll(cfg.Dir)
			}
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
	f.IntVar(&cfg.Corrupt, "corrupt", cfg.Corrupt, "index of the input to truncate on purpose (-1: none; with fewer inputs than the default, the middle one)")
	f.IntVar(&cfg.InterruptAt, "interrupt-at", 0, "stop the first run on purpose after `N` inputs, to show the resume (0: no planned interruption; default: half of --files)")
	f.StringVar(&cfg.Dir, "dir", "", "keep the data set, outputs and checkpoint in this directory (default: a temporary one, removed unless interrupted)")
	f.BoolVar(&cfg.Resume, "resume", false, "continue the run recorded in the checkpoint in --dir (after Ctrl+C, say)")
	f.BoolVar(&cfg.Fresh, "fresh", false, "delete the checkpoint in --dir, if any, and start again")
	f.StringVar(&statsJSON, "stats-json", "", "write each run's counts and the job's statistics as JSON to `FILE` (\"-\": standard output, and the rest of the output goes to standard error), also after an interruption")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the generated data set")
	f.BoolVar(&noProgress, "no-progress", false, "show no progress, only the summary")
	return cmd
}

// stoppedSummary says what a run stopped by a signal did.
func stoppedSummary(sum curate.Summary) string {
	res := sum.Stopped
	if res == nil {
		return "interrupted before any input was converted"
	}
	return fmt.Sprintf("interrupted: %d of %d inputs done (%d of them resumed), %d failed, %d not run; what is done is recorded in %s",
		res.Done, len(res.Indices), res.Resumed, res.Failed, res.NotRun, sum.Checkpoint)
}

// resumeCommand is the command line that resumes the run in dir: the
// flags that define the data set and the run, as given, with --dir and
// --resume.
func resumeCommand(cmd *cobra.Command, dir string) string {
	args := []string{cmd.CommandPath()}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "dir", "resume", "fresh", "interrupt-at":
			return
		}
		if f.Value.Type() == "bool" {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		} else {
			args = append(args, "--"+f.Name, shellQuote(f.Value.String()))
		}
	})
	return strings.Join(append(args, "--dir", shellQuote(dir), "--resume"), " ")
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
