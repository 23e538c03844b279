package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/ferrypipe/ferry/batch/jetstream"
)

// newWorkerCmd returns "ferry worker": a worker of the JetStream batch
// backend for the jobs defined in this program (the demos' and the
// benchmarks'), on this machine.
func newWorkerCmd() *cobra.Command {
	var (
		url, user, password, token, creds, host string
		concurrency                             int
	)
	cmd := &cobra.Command{
		Use:   "worker --nats URL",
		Short: "Serve batch jobs from a NATS JetStream server (ferry's own jobs)",
		Long: `Run a worker of the JetStream batch backend (package batch/jetstream): it connects
to the NATS server at --nats and runs the units of every run announced there whose job
this program defines — here, ferry's demo and benchmark jobs; a program of your own
runs jetstream.Serve for yours. It advertises its host and pid, and runs --concurrency
units at once. Ctrl+C or SIGTERM stops it: the units it was running go to other workers,
and it exits 130 (under systemd, SuccessExitStatus=130 makes that a clean stop).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return usageError(cmd, errors.New("--nats URL is required: the NATS server to serve"))
			}
			var natsOpts []nats.Option
			switch {
			case creds != "":
				natsOpts = append(natsOpts, nats.UserCredentials(creds))
			case token != "":
				natsOpts = append(natsOpts, nats.Token(token))
			case user != "":
				natsOpts = append(natsOpts, nats.UserInfo(user, password))
			}
			opts := []jetstream.ServeOption{jetstream.ServeNATS(natsOpts...)}
			if host != "" {
				opts = append(opts, jetstream.ServeHost(host))
			}
			if concurrency > 0 {
				opts = append(opts, jetstream.ServeConcurrency(concurrency))
			}
			if concurrency < 0 {
				return usagef(cmd, "--concurrency %d: want 1 or more (0: the number of CPUs)", concurrency)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			start := time.Now()
			err := jetstream.Serve(ctx, url, opts...)
			if ctx.Err() != nil && cmd.Context().Err() == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "interrupted: stopped serving %s after %v; the units it was running go to other workers\n",
					url, time.Since(start).Round(time.Second))
				return interrupted(errors.Join(ctx.Err(), err))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "nats", "", "the NATS server's URL, e.g. nats://10.0.0.5:4222")
	f.StringVar(&user, "user", "", "user name for the server")
	f.StringVar(&password, "password", os.Getenv("FERRY_NATS_PASSWORD"), "password for the server (default $FERRY_NATS_PASSWORD)")
	f.StringVar(&token, "token", "", "authentication token for the server")
	f.StringVar(&creds, "creds", "", "a NATS credentials file (JWT and NKey seed)")
	f.StringVar(&host, "host", "", "the host name to advertise (default the machine's)")
	f.IntVar(&concurrency, "concurrency", 0, "units to run at once (default the number of CPUs)")
	return cmd
}
