// Package main is the ferry command: it runs ferry's benchmark suite
// (ferry bench) and its demo (ferry demo).
//
// Usage:
//
//	ferry bench [--json] [--quick] [--filter PREFIX]
//	ferry demo
//	ferry worker --nats URL
//	ferry version (or ferry --version)
package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/internal/benchsuite"
	"github.com/ferrypipe/ferry/proc"
)

func main() {
	proc.Main() // a worker process of the demo or the benchmarks runs here
	benchsuite.ExitIfStartProbe()
	os.Exit(run(os.Args[1:]))
}

// run runs the command with args and returns its exit status.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var e *exitError
		if errors.As(err, &e) {
			return e.code
		}
		return 1
	}
	return 0
}

// newRootCmd returns the ferry command with all its subcommands.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "ferry runs high-throughput data pipelines",
		Long: "ferry is a library and command for high-throughput data pipelines:\n" +
			"in-process stages, worker processes and shared memory.",
	}
	root.AddCommand(newBenchCmd())
	root.AddCommand(newDemoCmd())
	root.AddCommand(newWorkerCmd())
	root.AddCommand(newVersionCmd())
	root.Version = version()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}
