package jetstream_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/batch/jetstream"
	"github.com/ferrypipe/ferry/internal/leakcheck"
)

var (
	natsServerOnce sync.Once
	natsServerPath string
	natsServerErr  error
)

// natsServerBinary returns the nats-server program: $FERRY_NATS_SERVER
// (.ci/run builds it), or one built from the module now.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		if p := os.Getenv("FERRY_NATS_SERVER"); p != "" {
			natsServerPath = p
			return
		}
		dir, err := os.MkdirTemp("", "ferry-nats-server-")
		if err != nil {
			natsServerErr = err
			return
		}
		natsServerPath = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", natsServerPath, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsServerErr = fmt.Errorf("building nats-server: %v\n%s", err, out)
		}
	})
	if natsServerErr != nil {
		t.Fatal(natsServerErr)
	}
	return natsServerPath
}

// startNATSServer starts a nats-server process with JetStream, on
// loopback, with a password, for the test, and returns its URL.
func startNATSServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(natsServerBinary(t), "--jetstream", "--store_dir", t.TempDir(), "--addr", "127.0.0.1",
		"--port", fmt.Sprint(port), "--user", "test", "--pass", "secret")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The server says when it is ready for clients.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server is ready") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("nats-server did not get ready within 30s")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// TestConformanceOnNATSServer runs the conformance suite against a real
// nats-server process, with two local worker processes.
func TestConformanceOnNATSServer(t *testing.T) {
	batchtest.Run(t, func(t *testing.T) batch.Backend {
		leakcheck.Check(t)
		url := startNATSServer(t)
		return jetstream.Connect(url, jetstream.NATS(nats.UserInfo("test", "secret")), jetstream.Workers(2),
			jetstream.AckWait(2*time.Second), jetstream.Concurrency(2))
	})
}
