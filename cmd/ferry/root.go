package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/internal/logs"
)

// Exit statuses of the ferry command.
const (
	exitFailure     = 1   // a run failed
	exitUsage       = 2   // the command line is wrong
	exitInterrupted = 130 // Ctrl+C or SIGTERM (128 + SIGINT, as shells report it)
)

// newRootCmd returns the ferry command with all its subcommands.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "ferry runs high-throughput data pipelines",
		Long: "ferry is a library and command for high-throughput data pipelines:\n" +
			"in-process stages, worker processes and shared memory.",
		// execute prints errors itself: one line and a hint, never the usage.
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: setUpLogs,
	}
	root.AddCommand(newBenchCmd())
	root.AddCommand(newDemoCmd())
	root.AddCommand(newWorkerCmd())
	root.AddCommand(newVersionCmd())
	root.Version = version()
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().String("log-level", "", "log records to show on stderr: debug, info, warn or error (default $"+logs.EnvLevel+", else warn)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, err) })
	markRunErrors(root)
	return root
}

// markRunErrors makes every error a command's RunE returns an *exitError,
// and every error of its Args check a usage error, so that execute tells
// the errors of a run (exit 1, or the code the command chose) from those
// cobra finds in the command line (exit 2).
func markRunErrors(c *cobra.Command) {
	if runE := c.RunE; runE != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			err := runE(cmd, args)
			var e *exitError
			if err == nil || errors.As(err, &e) {
				return err
			}
			return &exitError{code: exitFailure, err: err}
		}
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usageError(cmd, err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRunErrors(sub)
	}
}

// execute runs root with args and returns the exit status. It prints an
// error as one line on root's stderr; a usage error gets a hint on how to
// get help, and an interruption nothing more than the command printed.
// slog's default logger is the same after as before.
func execute(root *cobra.Command, args []string) int {
	defer slog.SetDefault(slog.Default())
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	var e *exitError
	if !errors.As(err, &e) {
		// Not from a command's RunE: cobra found the command line wrong
		// (an unknown command, say).
		e = usageError(cmd, err)
	}
	if e.code != exitInterrupted {
		fmt.Fprintf(root.ErrOrStderr(), "Error: %v\n", e.err)
	}
	if e.hint != "" {
		fmt.Fprintln(root.ErrOrStderr(), e.hint)
	}
	return e.code
}

// exitError makes the command exit with a status of its own.
type exitError struct {
	code int
	err  error
	hint string // a line printed after the error, or ""
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command-line mistake in cmd: its message, then how to
// get help; it exits 2.
func usageError(cmd *cobra.Command, err error) *exitError {
	return &exitError{code: exitUsage, err: err, hint: "Run '" + cmd.CommandPath() + " --help' for usage."}
}

// usagef is a usageError with a formatted message.
func usagef(cmd *cobra.Command, format string, args ...any) *exitError {
	return usageError(cmd, fmt.Errorf(format, args...))
}

// interrupted is the error of a run stopped by Ctrl+C or SIGTERM, once the
// command has printed what it did: it exits 130 and prints nothing more.
func interrupted(err error) *exitError {
	return &exitError{code: exitInterrupted, err: err}
}

// signalContext returns a context that ends at the first SIGINT or
// SIGTERM; stop releases the signals (a second one then kills the process).
func signalContext(cmd *cobra.Command) (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

// defaultLogLevel is the level of the log records shown without
// --log-level or $FERRY_LOG_LEVEL: warnings and errors.
const defaultLogLevel = slog.LevelWarn

// logLevel returns the level --log-level or $FERRY_LOG_LEVEL asks for
// (the flag wins), or defaultLogLevel; a bad value is a usage error.
func logLevel(cmd *cobra.Command) (slog.Level, error) {
	if f := cmd.Flags().Lookup("log-level"); f != nil && f.Changed {
		l, err := logs.ParseLevel(f.Value.String())
		if err != nil {
			return l, usagef(cmd, "--log-level: %w", err)
		}
		return l, nil
	}
	l, err := logs.LevelFromEnv(defaultLogLevel)
	if err != nil {
		return l, usageError(cmd, err)
	}
	return l, nil
}

// setUpLogs makes slog's default logger the command's: ferry's line format
// on its stderr at the chosen level, for every package that logs through
// the default. It runs before every subcommand.
func setUpLogs(cmd *cobra.Command, _ []string) error {
	level, err := logLevel(cmd)
	if err != nil {
		return err
	}
	slog.SetDefault(logs.New(cmd.ErrOrStderr(), level))
	return nil
}
