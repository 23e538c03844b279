// Package main is the ferry command: it runs ferry's benchmark suite
// (ferry bench) and its demos (ferry demo, ferry demo curate, ferry demo
// graph), and serves batch jobs (ferry worker).
//
// Usage:
//
//	ferry bench [--json] [--quick] [--filter PREFIX[,PREFIX...]]
//	ferry demo [flags]
//	ferry demo curate [--resume] [flags]
//	ferry demo graph [flags]
//	ferry worker --nats URL
//	ferry version (or ferry --version)
//
// Exit status: 0 on success, 1 when a run fails, 2 for a usage error (one
// line of error and a hint, no usage dump), 130 after Ctrl+C or SIGTERM
// (with a summary of what was done). --log-level, or FERRY_LOG_LEVEL, sets
// which log records reach stderr.
package main

import (
	"os"

	"github.com/ferrypipe/ferry/internal/benchsuite"
	"github.com/ferrypipe/ferry/proc"
)

func main() {
	proc.Main() // a worker process of the demo or the benchmarks runs here
	benchsuite.ExitIfStartProbe()
	os.Exit(run(os.Args[1:]))
}

// run runs the command with args, on the process's standard streams, and
// returns its exit status.
func run(args []string) int {
	root := newRootCmd()
	return execute(root, args)
}
