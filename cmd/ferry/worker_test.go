//go:build linux

// The ferry command's demos and benchmarks need Linux (worker processes,
// shared memory): so do its tests.

package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/jetstream"
	"github.com/ferrypipe/ferry/internal/benchsuite"
)

// TestWorkerServesJobs: "ferry worker --nats URL" runs the units of a
// run of one of ferry's jobs on a server it did not start, advertises
// its host, and exits 130 on SIGTERM with a line saying it stopped.
func TestWorkerServesJobs(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	defer srv.Shutdown()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "FERRY_TEST_ARGS=worker --nats "+srv.ClientURL()+" --user u --host cli-host --concurrency 2", "FERRY_NATS_PASSWORD=p")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	res, err := benchsuite.TrivialJob.Run(t.Context(), 500, batch.WithBackend(
		jetstream.Connect(srv.ClientURL(), jetstream.NATS(nats.UserInfo("u", "p")))))
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 500 || !strings.HasPrefix(res.Indices[0].Worker, "cli-host pid ") {
		t.Fatalf("%v, index 0 on %q; want every index done by cli-host", res, res.Indices[0].Worker)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(out.String(), "interrupted: stopped serving") {
		t.Fatalf("ferry worker after SIGTERM: %v, want exit 130 and a summary\n%s", err, out.String())
	}
}

// TestWorkerNeedsAServer: without --nats, a one-line usage error.
func TestWorkerNeedsAServer(t *testing.T) {
	_, stderr, code := runCLI(t, "worker")
	wantUsageError(t, "ferry worker", stderr, code, "--nats URL is required")
	_, stderr, code = runCLI(t, "worker", "--nats", "nats://x", "--concurrency", "-1")
	wantUsageError(t, "ferry worker", stderr, code, "--concurrency -1")
}
