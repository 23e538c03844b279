package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrypipe/ferry/internal/wire"
)

// Environment of a worker process.
const (
	envWorker = "FERRY_WORKER"        // the registered name it serves
	envParent = "FERRY_WORKER_PARENT" // the pid it must be the child of
	workerFD  = 3                     // its end of the control socket

	envArena          = "FERRY_WORKER_ARENA_FD"        // the fd of its shared-memory arena, if any
	envArenaTimeout   = "FERRY_WORKER_ARENA_TIMEOUT"   // the arena's acquire timeout (a Go duration)
	envArenaThreshold = "FERRY_WORKER_ARENA_THRESHOLD" // see ArenaThreshold
	arenaFD           = 4                              // the arena's memfd
)

// handler receives what a worker sends, on the worker's reading goroutine.
type handler interface {
	// frame handles one message.
	frame(t wire.Type, id uint64, body []byte)
	// idle is called when no more bytes are buffered: the next read may
	// block, so batched frames should be handed on.
	idle()
}

// worker is one worker process seen from the parent: its control
// connection, its supervision and its teardown.
type worker struct {
	name string
	pid  int
	cmd  *exec.Cmd
	conn net.Conn
	w    *wire.Writer
	log  *slog.Logger
	tail *stderrTail
	o    *options

	exited  chan struct{} // closed once the process has been reaped
	status  *os.ProcessState
	dead    chan struct{} // closed once the connection is gone and the process reaped
	deadErr *WorkerError

	reasonMu sync.Mutex
	reason   string // why ferry killed it

	closeOnce sync.Once
	readDone  chan struct{}
}

// startWorker starts a worker process serving the registered name, sends it
// init and waits until it is ready. h gets every message after Ready.
func startWorker(ctx context.Context, o *options, init wire.InitMsg, h handler) (*worker, error) {
	bin := o.binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("proc: finding the executable to run workers: %w", err)
		}
		bin = exe
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proc: socketpair: %w", err)
	}
	parentFile := os.NewFile(uintptr(fds[0]), "ferry-control")
	childFile := os.NewFile(uintptr(fds[1]), "ferry-control-child")
	conn, err := net.FileConn(parentFile)
	parentFile.Close()
	if err != nil {
		childFile.Close()
		return nil, fmt.Errorf("proc: control connection: %w", err)
	}

	w := &worker{
		name:     init.Name,
		conn:     conn,
		o:        o,
		exited:   make(chan struct{}),
		dead:     make(chan struct{}),
		readDone: make(chan struct{}),
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), envWorker+"="+init.Name, envParent+"="+strconv.Itoa(os.Getpid()))
	if o.gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.gomaxprocs))
	}
	if o.gomemlimit > 0 {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+strconv.FormatInt(o.gomemlimit, 10))
	}
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		// A race-enabled worker would otherwise sleep a second at exit.
		cmd.Env = append(cmd.Env, strings.TrimSpace("GORACE="+g+" atexit_sleep_ms=0"))
	}
	cmd.Env = append(cmd.Env, o.env...)
	cmd.ExtraFiles = []*os.File{childFile} // becomes fd 3
	var arenaFile *os.File
	if o.arena != nil {
		// A duplicate, so that the pool's own fd stays the caller's.
		fd, err := unix.FcntlInt(uintptr(o.arena.FD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			conn.Close()
			childFile.Close()
			return nil, fmt.Errorf("proc: duplicating the arena's fd: %w", err)
		}
		arenaFile = os.NewFile(uintptr(fd), "ferry-arena")
		cmd.ExtraFiles = append(cmd.ExtraFiles, arenaFile) // becomes fd 4
		cmd.Env = append(cmd.Env, envArena+"="+strconv.Itoa(arenaFD), envArenaTimeout+"="+o.arena.AcquireTimeout().String(),
			envArenaThreshold+"="+strconv.Itoa(o.arenaThreshold()))
	}
	var constFiles []*os.File
	if len(o.constants) > 0 {
		// Duplicates of the constants' fds, after the socket and the arena.
		files, env, err := constantFiles(o.constants, workerFD+len(cmd.ExtraFiles))
		if err != nil {
			conn.Close()
			childFile.Close()
			if arenaFile != nil {
				arenaFile.Close()
			}
			return nil, err
		}
		constFiles = files
		cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
		cmd.Env = append(cmd.Env, envConstants+"="+env)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	w.tail = &stderrTail{}
	cmd.Stderr = w.tail
	cmd.Stdout = w.tail
	cmd.WaitDelay = time.Second
	w.cmd = cmd

	err = spawn(cmd)
	childFile.Close()
	if arenaFile != nil {
		arenaFile.Close()
	}
	for _, f := range constFiles {
		f.Close()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proc: starting worker %q from %s: %w", init.Name, bin, err)
	}
	w.pid = cmd.Process.Pid
	w.log = o.logger.With("worker", init.Name, "pid", w.pid)
	w.tail.setLog(w.log)
	go w.wait()

	w.w = wire.NewWriter(conn)
	r := wire.NewReader(conn)
	if err := w.handshake(ctx, r, init); err != nil {
		w.kill("it failed to start")
		w.conn.Close()
		<-w.exited
		w.w.Close()
		return nil, err
	}
	go w.read(r, h)
	return w, nil
}

// handshake sends Init and waits for Ready, the start timeout, ctx, or the
// worker's death.
func (w *worker) handshake(ctx context.Context, r *wire.Reader, init wire.InitMsg) error {
	body, err := json.Marshal(init)
	if err != nil {
		return fmt.Errorf("proc: encoding init for %q: %w", init.Name, err)
	}
	if err := w.w.Send(wire.Init, 0, body); err != nil {
		return fmt.Errorf("proc: sending init to %q: %w", init.Name, err)
	}
	type reply struct {
		t    wire.Type
		body []byte
		err  error
	}
	got := make(chan reply, 1)
	go func() {
		t, _, body, err := r.Next()
		got <- reply{t, body, err}
	}()
	timer := time.NewTimer(w.o.startTimeout)
	defer timer.Stop()
	select {
	case rep := <-got:
		switch {
		case rep.err != nil:
			<-w.exited
			return w.exitError()
		case rep.t == wire.Ready:
			return nil
		case rep.t == wire.InitFailed:
			var m wire.ErrorMsg
			_ = json.Unmarshal(rep.body, &m)
			return fmt.Errorf("proc: worker %q failed to initialize: %w", init.Name, remoteError(init.Name, w.pid, m))
		default:
			return fmt.Errorf("proc: worker %q answered init with %v", init.Name, rep.t)
		}
	case <-timer.C:
		w.conn.Close() // unblocks the reading goroutine
		<-got
		return &TimeoutError{Name: init.Name, What: "start", Limit: w.o.startTimeout.String()}
	case <-ctx.Done():
		w.conn.Close()
		<-got
		return ctx.Err()
	}
}

// read hands every message to h until the connection ends, then makes sure
// the process is gone and marks the worker dead.
func (w *worker) read(r *wire.Reader, h handler) {
	defer close(w.readDone)
	for {
		t, id, body, err := r.Next()
		if err != nil {
			h.idle()
			break
		}
		h.frame(t, id, body)
		if r.Buffered() == 0 {
			h.idle()
		}
	}
	// The connection is gone: the worker exited, or closed it, which it
	// never does while alive. Give it a moment to exit, then make sure.
	select {
	case <-w.exited:
	case <-time.After(100 * time.Millisecond):
		w.kill("it closed its control connection")
		<-w.exited
	}
	w.deadErr = w.exitError()
	if w.o.arena != nil {
		// Free what the worker leased or published and nobody viewed.
		w.o.arena.ReclaimOwner(uint32(w.pid))
	}
	w.w.Fail(w.deadErr)
	close(w.dead)
}

// wait reaps the process.
func (w *worker) wait() {
	_ = w.cmd.Wait()
	w.status = w.cmd.ProcessState
	close(w.exited)
}

// exitError describes how the process ended; call after exited is closed.
func (w *worker) exitError() *WorkerError {
	e := &WorkerError{Name: w.name, PID: w.pid, ExitCode: -1, Stderr: w.tail.String()}
	if st := w.status; st != nil {
		e.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal().String()
		}
	}
	w.reasonMu.Lock()
	e.Reason = w.reason
	w.reasonMu.Unlock()
	return e
}

// kill ends the worker's process group at once.
func (w *worker) kill(reason string) {
	w.reasonMu.Lock()
	if w.reason == "" {
		w.reason = reason
	}
	w.reasonMu.Unlock()
	w.signal(syscall.SIGKILL)
}

func (w *worker) signal(sig syscall.Signal) {
	select {
	case <-w.exited:
		return // reaped: its pid may belong to someone else now
	default:
	}
	_ = syscall.Kill(-w.pid, sig)
}

// close asks the worker to exit, then escalates: Shutdown, grace period,
// SIGTERM, grace period, SIGKILL. It returns when the process is reaped and
// every goroutine of the worker has ended.
func (w *worker) close() {
	w.closeOnce.Do(func() {
		_ = w.w.Send(wire.Shutdown, 0, nil)
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			select {
			case <-w.exited:
			case <-time.After(w.o.grace):
				w.log.Warn("proc: worker did not exit in time", "signal", sig.String())
				w.signal(sig)
				continue
			}
			break
		}
		<-w.exited
		w.signal(syscall.SIGKILL) // anything left in its process group
		w.conn.Close()
		<-w.readDone
		w.w.Close()
	})
}

// send queues a message to the worker; after its death it returns the
// *WorkerError.
func (w *worker) send(t wire.Type, id uint64, body []byte) error {
	if err := w.w.Send(t, id, body); err != nil {
		var we *WorkerError
		if errors.As(err, &we) {
			return we
		}
		select {
		case <-w.dead:
			return w.deadErr
		default:
		}
		if errors.Is(err, wire.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("proc: worker %q (pid %d): %w", w.name, w.pid, err)
	}
	return nil
}

// spawner starts processes from one OS thread that never exits, because a
// child's parent-death signal fires when the thread that forked it ends.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

// spawnLoop starts processes from a locked thread; it runs as long as the
// program does.
func spawnLoop(reqs chan spawnReq) {
	runtime.LockOSThread() // never unlocked, so the thread never exits
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go spawnLoop(spawner.reqs)
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, done}
	return <-done
}

// stderrTail forwards a worker's output to the log, a line at a time, and
// keeps its last lines for error reports.
type stderrTail struct {
	mu       sync.Mutex
	log      *slog.Logger
	partial  []byte
	lines    []string
	headline string // the last line that says why a Go program crashed
	headAt   int    // its line number
	n        int    // lines seen
}

// crashHeadlines start the line that names the cause of a Go crash, which a
// long goroutine dump may push out of the tail.
var crashHeadlines = []string{"panic: ", "fatal error: ", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "unexpected signal"}

const tailLines = 64

func (s *stderrTail) setLog(l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = l
}

func (s *stderrTail) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 { // a very long line: emit what we have
		s.line(string(s.partial))
		s.partial = nil
	}
	return len(b), nil
}

func (s *stderrTail) line(l string) {
	if s.log != nil {
		s.log.Info("worker: " + l)
	}
	s.n++
	for _, h := range crashHeadlines {
		if strings.HasPrefix(l, h) {
			s.headline, s.headAt = l, s.n
		}
	}
	s.lines = append(s.lines, l)
	if len(s.lines) > tailLines {
		s.lines = s.lines[len(s.lines)-tailLines:]
	}
}

func (s *stderrTail) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := ""
	if s.headline != "" && s.headAt <= s.n-len(s.lines) {
		out = s.headline + "\n...\n"
	}
	for _, l := range s.lines {
		out += l + "\n"
	}
	return out + string(s.partial)
}

var _ io.Writer = (*stderrTail)(nil)
