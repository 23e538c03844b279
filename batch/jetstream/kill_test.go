package jetstream_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/batchtest"
	"github.com/ferrypipe/ferry/batch/jetstream"
)

// startServer starts a NATS server with JetStream for a test, on
// loopback, with a password.
func startServer(t *testing.T) (url string, auth nats.Option) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "test", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL(), nats.UserInfo("test", "secret")
}

// The environment of a worker process started by startRemoteWorker.
const (
	envURL  = "JETSTREAM_TEST_URL"
	envHost = "JETSTREAM_TEST_HOST"
)

// TestRemoteWorkerHelper is a worker on "another machine": the test binary
// re-executed, serving until it is killed. In a normal run it returns at
// once.
func TestRemoteWorkerHelper(t *testing.T) {
	url := os.Getenv(envURL)
	if url == "" {
		return
	}
	err := jetstream.Serve(context.Background(), url, jetstream.ServeNATS(nats.UserInfo("test", "secret")),
		jetstream.ServeHost(os.Getenv(envHost)), jetstream.ServeConcurrency(1))
	t.Fatalf("Serve returned: %v", err)
}

// startRemoteWorker starts a worker process the backend does not
// supervise, as if on another machine.
func startRemoteWorker(t *testing.T, url, host string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRemoteWorkerHelper$")
	cmd.Env = append(append(os.Environ(), envURL+"="+url, envHost+"="+host), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestRemoteWorkerKilled: a worker on another machine killed with SIGKILL
// in the middle of a unit: its unit comes back after the ack wait, is
// reported lost, and the run completes with every index once — and the
// sink saw no index twice, since outcomes are reported as indices end.
func TestRemoteWorkerKilled(t *testing.T) {
	url, auth := startServer(t)
	a := startRemoteWorker(t, url, "machine-a")
	b := startRemoteWorker(t, url, "machine-b")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hold"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const n, held = 300, 150
	p := batchtest.Params{N: n, Dir: dir, Fail: map[int]string{held: "hold"}}
	var once sync.Once
	killed := make(chan string, 1)
	obs := batch.ObserverFunc(func(e batch.Event) {
		if e.Kind != batch.EventStart || e.Index != held {
			return
		}
		once.Do(func() {
			pid := 0
			if i := strings.LastIndex(e.Worker, "pid "); i >= 0 {
				pid, _ = strconv.Atoi(e.Worker[i+4:])
			}
			for _, c := range []*exec.Cmd{a, b} {
				if c.Process.Pid == pid {
					_ = c.Process.Signal(syscall.SIGKILL)
					_ = os.Remove(filepath.Join(dir, "hold"))
					killed <- e.Worker
				}
			}
		})
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := batchtest.Job.Run(ctx, p, batch.WithBackend(jetstream.Connect(url, jetstream.NATS(auth), jetstream.AckWait(time.Second))),
		batch.Events(obs), batch.ContinueOnError())
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	select {
	case victim = <-killed:
	default:
		t.Fatal("the index that holds its worker never started")
	}
	if res.Done != n || res.Failed != 0 {
		t.Fatalf("%v, want every index done", res)
	}
	x := res.Indices[held]
	// Lost with its worker, not failed: the attempt does not count.
	if !x.OK || x.Attempts != 1 || x.Worker == victim {
		t.Errorf("index %d: OK %v after %d attempts, last on %s; want OK after 1, not on %s", held, x.OK, x.Attempts, x.Worker, victim)
	}
	hosts := map[string]bool{}
	for _, r := range res.Indices {
		hosts[strings.Fields(r.Worker)[0]] = true
	}
	if !hosts["machine-a"] || !hosts["machine-b"] {
		t.Errorf("indices ran on %v, want both machines", hosts)
	}
	b2, err := os.ReadFile(filepath.Join(dir, "sink.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b2))
	calls := len(lines)
	slices.Sort(lines)
	if distinct := len(slices.Compact(lines)); calls != n || distinct != n {
		t.Fatalf("the sink saw %d calls for %d indices, want each of the %d once", calls, distinct, n)
	}
}

// versioned is a job whose Version a worker takes from its environment:
// a worker built from another version of it.
var versioned = batch.Define("jetstream.test/versioned", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source:  batch.FromFunc(n, func(_ context.Context, i int) (int, error) { return i, nil }),
		Sink:    batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) { return items[0], nil }),
		Version: os.Getenv("JETSTREAM_TEST_JOB_VERSION"),
	}, nil
})

// TestWorkerOfAnotherVersionRefuses: a worker whose definition of the job
// has another identity refuses the run, with an error in the
// coordinator's log, and runs none of it; a worker of the same version
// does the work.
func TestWorkerOfAnotherVersionRefuses(t *testing.T) {
	url, auth := startServer(t)
	startRemoteWorker(t, url, "old-build", "JETSTREAM_TEST_JOB_VERSION=2")
	log := &syncBuffer{wait: "refuses the run's job", seen: make(chan struct{})}
	logger := slog.New(slog.NewTextHandler(log, nil))
	started := make(chan struct{})
	go func() { // the second worker starts once the first has refused
		defer close(started)
		select {
		case <-log.seen:
			startRemoteWorker(t, url, "new-build")
		case <-t.Context().Done():
		}
	}()
	res, err := versioned.Run(t.Context(), 200, batch.WithBackend(jetstream.Connect(url, jetstream.NATS(auth))), batch.Logger(logger))
	<-started
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res.Indices {
		if !strings.HasPrefix(x.Worker, "new-build ") {
			t.Fatalf("index %d ran on %s", x.Index, x.Worker)
		}
	}
	if s := log.String(); !strings.Contains(s, "old-build") || !strings.Contains(s, "identity") {
		t.Fatalf("the coordinator's log does not name the refusing worker and why:\n%s", s)
	}
}

// syncBuffer is a log for a logger and a reader at once, which closes seen
// when a line containing wait is written.
type syncBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	wait string
	seen chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wait != "" && strings.Contains(string(p), s.wait) {
		close(s.seen)
		s.wait = ""
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerRestartedMidRun: the server (file storage) stops in the middle
// of a run and starts again on the same port and storage: the coordinator
// and the workers reconnect, and the run completes with every index once.
func TestServerRestartedMidRun(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "test", Password: "secret"}
	start := func() *server.Server {
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("the NATS server did not start")
		}
		return srv
	}
	srv := start()
	opts.Port = srv.Addr().(*net.TCPAddr).Port // the same port again
	url := srv.ClientURL()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	startRemoteWorker(t, url, "machine-a")
	startRemoteWorker(t, url, "machine-b")
	const n = 400
	var once sync.Once
	restarted := make(chan struct{})
	obs := batch.ObserverFunc(func(e batch.Event) {
		if e.Kind == batch.EventDone && e.Index >= n/4 {
			once.Do(func() {
				go func() {
					defer close(restarted)
					srv.Shutdown()
					srv.WaitForShutdown()
					srv = start()
				}()
			})
		}
	})
	res, err := SleepyJob.Run(t.Context(), n, batch.WithBackend(jetstream.Connect(url, jetstream.NATS(nats.UserInfo("test", "secret")), jetstream.AckWait(2*time.Second))),
		batch.Events(obs), batch.ContinueOnError())
	<-restarted
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != n {
		t.Fatalf("%v, want every index done", res)
	}
}

// SleepyJob's indices take a millisecond each, so that a run lasts long
// enough to be interrupted.
var SleepyJob = batch.Define("jetstream.test/sleepy", func(n int) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(n, func(ctx context.Context, i int) (int, error) {
			select {
			case <-time.After(time.Millisecond):
				return i, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, i int, items []int) (int, error) { return items[0], nil }),
	}, nil
})

// TestEmbeddedServerRestartedMidRun: Local's own embedded server stops in
// the middle of a run and starts again on its port and storage; the
// coordinator and the local worker processes reconnect, and the run
// completes with every index once.
func TestEmbeddedServerRestartedMidRun(t *testing.T) {
	restarts := make(chan func() error, 1)
	jetstream.OnEmbeddedStart(t, func(restart func() error) { restarts <- restart })
	const n = 400
	var once sync.Once
	restarted := make(chan error, 1)
	obs := batch.ObserverFunc(func(e batch.Event) {
		if e.Kind == batch.EventDone && e.Index >= n/4 {
			once.Do(func() { go func() { restarted <- (<-restarts)() }() })
		}
	})
	res, err := SleepyJob.Run(t.Context(), n, batch.WithBackend(jetstream.Local(2, jetstream.AckWait(2*time.Second))),
		batch.Events(obs), batch.ContinueOnError())
	if rerr := <-restarted; rerr != nil {
		t.Fatalf("restarting the embedded server: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != n {
		t.Fatalf("%v, want every index done", res)
	}
}
