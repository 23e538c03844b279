package proc

import (
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

	"github.com/ferrypipe/ferry/internal/platform"
	"github.com/ferrypipe/ferry/internal/wire"
)

// worker is one worker process seen from the parent: its session, its
// process and its teardown. (With InProcess, a host in goroutines.)
type worker struct {
	name string
	pid  int
	cmd  *exec.Cmd // nil in process
	conn net.Conn
	s    *session
	log  *slog.Logger
	out  *workerOutput
	o    *options

	stopped     chan struct{} // closed once the process has exited and its group is killed (not reaped yet)
	reclaimed   chan struct{} // closed once its arena segments are reclaimed: it may be reaped
	reclaimOnce sync.Once
	exited      chan struct{} // closed once the process is reaped and its output read
	status      *os.ProcessState
	deadErr     *WorkerError // set before s.dead is closed

	reasonMu sync.Mutex
	reason   string // why ferry killed it

	outR      *os.File      // its output, read by a goroutine
	outDone   chan struct{} // closed once its output has been read to the end
	hostDone  chan struct{} // in process: the host has returned
	started   *startCounter // how much of what was sent it had started
	closeOnce sync.Once
}

// dead is closed once the worker's connection has been read to the end,
// its process reaped and what it held in the arena reclaimed.
func (w *worker) dead() <-chan struct{} { return w.s.dead }

// selfExe is this program's executable, opened at start (before the file
// can be replaced), so that workers run the exact binary the parent runs
// even after the file is replaced or deleted: they are started from
// /proc/self/fd/N. The descriptor stays open for the program's life.
var selfExe struct {
	once sync.Once
	file *os.File
	fd   int
	path string
	err  error
}

func init() {
	if os.Getenv(envWorker) == "" && platform.Supported {
		_, _ = executable()
	}
}

func executable() (string, error) {
	selfExe.once.Do(func() {
		f, err := os.Open("/proc/self/exe")
		if err != nil {
			selfExe.err = fmt.Errorf("proc: opening this program's executable to run workers: %w", err)
			return
		}
		defer f.Close()
		// A high descriptor number: the child resolves the path after it
		// has moved its own files to fds 3, 4, …, which must not cover it
		// (startWorker runs the file by name for a worker with more). Not
		// higher: growing the descriptor table of a process with threads
		// waits for an RCU grace period, milliseconds at every start.
		fd, err := dupFD(int(f.Fd()), 63)
		if err != nil {
			selfExe.err = fmt.Errorf("proc: duplicating this program's executable to run workers: %w", err)
			return
		}
		// Kept open for the program's life (close-on-exec: workers get
		// their own).
		selfExe.file = os.NewFile(uintptr(fd), "ferry-self-exe")
		selfExe.fd = fd
		selfExe.path = "/proc/self/fd/" + strconv.Itoa(fd)
	})
	return selfExe.path, selfExe.err
}

// startWorker starts a worker process (or a host in this process) with a
// first instance of attach, and waits until it is ready.
func startWorker(ctx context.Context, o *options, attach *wire.Attach) (*worker, error) {
	if os.Getenv(envWorker) != "" {
		// A program started as a worker that runs main instead of
		// serving: it must not start workers of its own (a cascade).
		misLaunched("a worker process tried to start workers of its own")
	}
	if o.inProcess {
		return startInProcess(ctx, o, attach)
	}
	bin := o.binary
	if bin == "" {
		exe, err := executable()
		if err != nil {
			return nil, err
		}
		bin = exe
	}
	fds, err := socketPair()
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
	w := &worker{name: attach.Name, conn: conn, o: o, exited: make(chan struct{}), stopped: make(chan struct{}), reclaimed: make(chan struct{})}
	cmd := exec.Command(bin)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envWorker+"="+attach.Name, envParent+"="+strconv.Itoa(os.Getpid()))
	if o.gomaxprocs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.gomaxprocs))
	}
	if o.gomemlimit > 0 {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+strconv.FormatInt(o.gomemlimit, 10))
	}
	if o.memoryLimit > 0 {
		cmd.Env = append(cmd.Env, envMemoryLimit+"="+strconv.FormatInt(o.memoryLimit, 10))
	}
	if o.cpuProfile != "" {
		cmd.Env = append(cmd.Env, envCPUProfile+"="+o.cpuProfile)
	}
	cmd.Env = append(cmd.Env, workerLogLevelEnv(o.logger))
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		// A race-enabled worker would otherwise sleep a second at exit.
		cmd.Env = append(cmd.Env, strings.TrimSpace("GORACE="+g+" atexit_sleep_ms=0"))
	}
	cmd.Env = append(cmd.Env, o.env...)
	cmd.ExtraFiles = []*os.File{childFile} // becomes fd 3
	// The parent's copies of the worker's files, closed once it has
	// started (or failed to): until then the worker's end of the socket
	// would not see the worker's death.
	closeFiles := []*os.File{childFile}
	closeAll := func() {
		for _, f := range closeFiles {
			f.Close()
		}
		closeFiles = nil
	}
	defer closeAll()
	if o.arena != nil {
		// A duplicate, so that the pool's own fd stays the caller's.
		fd, err := dupFD(o.arena.FD(), 0)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("proc: duplicating the arena's fd: %w", err)
		}
		arenaFile := os.NewFile(uintptr(fd), "ferry-arena")
		closeFiles = append(closeFiles, arenaFile)
		cmd.ExtraFiles = append(cmd.ExtraFiles, arenaFile) // becomes fd 4
		cmd.Env = append(cmd.Env, envArena+"="+strconv.Itoa(arenaFD), envArenaWait+"="+o.arena.AcquireTimeout().String(),
			envArenaSize+"="+strconv.Itoa(o.arenaThreshold()))
	}
	if len(o.constants) > 0 {
		// Duplicates of the constants' fds, after the socket and the arena.
		files, env, err := constantFiles(o.constants, workerFD+len(cmd.ExtraFiles))
		if err != nil {
			conn.Close()
			return nil, err
		}
		closeFiles = append(closeFiles, files...)
		cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
		cmd.Env = append(cmd.Env, envConstants+"="+env)
	}
	var startedFile *os.File
	if w.started, startedFile, err = newStartCounter(); err != nil {
		conn.Close()
		return nil, err
	}
	closeFiles = append(closeFiles, startedFile)
	cmd.ExtraFiles = append(cmd.ExtraFiles, startedFile)
	cmd.Env = append(cmd.Env, envStarted+"="+strconv.Itoa(workerFD+len(cmd.ExtraFiles)-1))
	// Its own process group, which ferry kills as a whole; and a signal at
	// the parent's death, on which it kills that group.
	cmd.SysProcAttr = workerProcAttr()
	// Its stdout and stderr, one pipe read by a goroutine of ours, which
	// logs it and keeps its tail.
	outR, outW, err := os.Pipe()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proc: a pipe for the worker's output: %w", err)
	}
	closeFiles = append(closeFiles, outW)
	cmd.Stderr = outW
	cmd.Stdout = outW
	if bin == selfExe.path && selfExe.fd < workerFD+len(cmd.ExtraFiles) {
		// So many files for the worker that they would cover the
		// descriptor: run the file by its name instead.
		if cmd.Path, err = os.Executable(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("proc: finding the executable to run workers: %w", err)
		}
	}
	w.cmd = cmd
	err = spawn(cmd)
	closeAll()
	if err != nil {
		outR.Close()
		conn.Close()
		w.started.close()
		return nil, fmt.Errorf("proc: starting worker %q from %s: %w", attach.Name, bin, err)
	}
	w.pid = cmd.Process.Pid
	w.log = o.logger.With("worker", attach.Name, "pid", w.pid)
	w.out = newWorkerOutput(w.log)
	w.outDone = make(chan struct{})
	w.outR = outR
	go func() {
		defer close(w.outDone)
		_, _ = io.Copy(w.out, outR)
	}()
	go w.wait()
	if err := w.handshake(ctx, attach); err != nil {
		w.kill("it failed to start")
		w.conn.Close()
		w.reclaim()
		<-w.exited
		w.started.close()
		return nil, err
	}
	return w, nil
}

// handshake sends Init and waits for the worker's Hello, then its Ready,
// within the start timeout and ctx; then the session runs. Init goes out
// first, without waiting: the worker finds it once it has said Hello.
func (w *worker) handshake(ctx context.Context, attach *wire.Attach) error {
	r := wire.NewReader(w.conn)
	wr := wire.NewWriter(w.conn)
	fail := func(err error) error {
		wr.Fail(err)
		wr.Close()
		return err
	}
	init, _ := json.Marshal(wire.InitMsg{Version: wire.Version, Initializers: initNames(w.o), Attach: attach})
	// A program that is not a worker may have exited already: then the
	// send fails, and the read below finds the end and says why.
	sendErr := wr.SendNow(wire.Init, 0, init)
	// Reads are bounded by deadlines, not by other goroutines.
	_ = w.conn.SetReadDeadline(time.Now().Add(w.o.startTimeout))
	stop := context.AfterFunc(ctx, func() { _ = w.conn.SetReadDeadline(time.Now()) })
	// next reads a frame: readErr is the end of the connection (the worker
	// is gone); err is the start timeout or ctx's end.
	next := func() (t wire.Type, body []byte, readErr, err error) {
		t, _, body, readErr = r.Next()
		switch {
		case readErr == nil:
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(readErr, os.ErrDeadlineExceeded):
			err = &TimeoutError{Name: w.name, What: "start", Limit: w.o.startTimeout.String()}
		}
		return t, body, readErr, err
	}
	t, body, readErr, err := next()
	if err != nil {
		stop()
		return fail(err)
	}
	var hello wire.HelloMsg
	if readErr != nil || t != wire.Hello || json.Unmarshal(body, &hello) != nil || hello.Magic != wire.Magic {
		stop()
		w.kill("") // not a worker: whatever it is, it must not run on
		w.reclaim()
		<-w.exited
		return fail(fmt.Errorf("proc: worker %q did not start: %w: %w", w.name, ErrNoBootstrap, w.exitError()))
	}
	if sendErr != nil {
		stop()
		return fail(fmt.Errorf("proc: sending init to %q: %w", w.name, sendErr))
	}
	if hello.Version != wire.Version {
		stop()
		return fail(fmt.Errorf("proc: worker %q speaks protocol version %d, this program %d: %s is not this program", w.name, hello.Version, wire.Version, w.cmd.Path))
	}
	t, body, readErr, err = next()
	if !stop() && err == nil {
		err = ctx.Err() // ctx ended meanwhile, and may have set a deadline
	}
	switch {
	case err != nil:
		return fail(err)
	case readErr != nil:
		w.kill("it broke the protocol while starting") // a no-op if it is dead, as it usually is
		w.reclaim()
		<-w.exited
		return fail(w.exitError())
	case t == wire.InitFailed:
		return fail(fmt.Errorf("proc: worker %q failed to initialize: %w", w.name, decodeError(w.name, w.pid, body)))
	case t != wire.Ready:
		return fail(fmt.Errorf("proc: worker %q answered init with %v", w.name, t))
	}
	_ = w.conn.SetReadDeadline(time.Time{})
	w.s = newSession(wr, w.o.arena)
	go w.s.run(r, w.ended)
	return nil
}

// ended runs when the connection has ended: it makes sure the process is
// gone, reclaims what it held in the arena, and returns its *WorkerError
// for everything still waiting on it.
func (w *worker) ended() error {
	// The worker exited, or closed the connection, which it never does
	// while alive. Give it a moment to exit, then make sure.
	select {
	case <-w.stopped:
	case <-time.After(100 * time.Millisecond):
		w.kill("it closed its control connection")
		<-w.stopped
	}
	// Everything it sent has been read, and what came through the arena
	// viewed: the rest is reclaimed, before its pid can be reused.
	w.reclaim()
	<-w.exited
	w.deadErr = w.exitError()
	w.s.w.Fail(w.deadErr)
	return w.deadErr
}

// reclaim frees what the worker leased or published in the arena and
// nobody viewed, once its process has stopped and before it is reaped.
func (w *worker) reclaim() {
	w.reclaimOnce.Do(func() {
		if w.o.arena != nil && w.cmd != nil {
			w.o.arena.ReclaimOwner(uint32(w.pid))
		}
		close(w.reclaimed)
	})
}

// wait reaps the process: first without reaping, so that its process
// group can be killed while its pid cannot be reused (whatever worker code
// started and left behind dies with it), then for good.
func (w *worker) wait() {
	waitExited(w.pid)
	signalGroup(w.pid, syscall.SIGKILL)
	close(w.stopped)
	// Its group is dead, but a process that left the group may still hold
	// the output pipe: read what comes for a grace period, then stop.
	select {
	case <-w.outDone:
	case <-time.After(w.o.grace):
		_ = w.outR.SetReadDeadline(time.Now())
		<-w.outDone
	}
	w.outR.Close()
	w.out.Close()
	<-w.reclaimed
	_ = w.cmd.Wait() // the reap, once nothing needs the pid
	w.status = w.cmd.ProcessState
	close(w.exited)
}

// exitError describes how the process ended; call after exited is closed.
func (w *worker) exitError() *WorkerError {
	e := &WorkerError{Name: w.name, PID: w.pid, ExitCode: -1}
	if w.out != nil {
		e.Stderr = w.out.Tail()
	}
	signaled := false
	if st := w.status; st != nil {
		e.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = ws.Signal().String()
			signaled = true
		}
	}
	if signaled || w.cmd == nil {
		// Only a death by signal can be ferry's doing: a worker that
		// exited by itself is reported with its status.
		w.reasonMu.Lock()
		e.Reason = w.reason
		w.reasonMu.Unlock()
	}
	if w.o.memoryLimit > 0 && w.out != nil && w.out.CrashedOutOfMemory() {
		e.MemoryLimit = w.o.memoryLimit
	}
	return e
}

// kill ends the worker's process group at once; reason says why ferry
// killed it ("" to keep none).
func (w *worker) kill(reason string) {
	w.reasonMu.Lock()
	if w.reason == "" {
		w.reason = reason
	}
	w.reasonMu.Unlock()
	if w.cmd == nil {
		w.conn.Close() // in process: the host stops serving
		return
	}
	w.signal(syscall.SIGKILL)
}

func (w *worker) signal(sig syscall.Signal) {
	select {
	case <-w.exited:
		return // its group is dead already
	default:
	}
	// The process is not reaped before exited is closed (wait kills its
	// group first), so its pid is still its own.
	signalGroup(w.pid, sig)
}

// close asks the worker to exit, then escalates: Shutdown, grace period,
// SIGTERM, grace period, SIGKILL. It returns when the process and its
// group are gone and every goroutine of the worker has ended.
func (w *worker) close() {
	w.closeOnce.Do(func() {
		_ = w.s.w.SendNow(wire.Shutdown, 0, nil)
		if w.cmd != nil {
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
		}
		<-w.exited
		w.conn.Close()
		<-w.s.dead
		w.s.w.Close()
		w.started.close() // read by the tasks' last frames, all delivered now
	})
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

// startInProcess runs a host in goroutines of this process, over a
// socket pair, for InProcess.
func startInProcess(ctx context.Context, o *options, attach *wire.Attach) (*worker, error) {
	if o.arena != nil {
		return nil, errors.New("proc: InProcess does not take an Arena")
	}
	fds, err := socketPair()
	if err != nil {
		return nil, fmt.Errorf("proc: socketpair: %w", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "ferry-in-process")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("proc: in-process connection: %w", err)
		}
	}
	w := &worker{name: attach.Name, pid: os.Getpid(), conn: conns[0], o: o, exited: make(chan struct{}), hostDone: make(chan struct{})}
	w.stopped, w.reclaimed = w.exited, make(chan struct{}) // no process: its end is the host's
	w.log = o.logger.With("worker", attach.Name, "in_process", true)
	hc := conns[1].(*net.UnixConn)
	w.started = inProcessCounter()
	h := &host{pid: w.pid, inProcess: true, started: w.started}
	h.exit = func(int) { hc.Close() }
	go func() {
		defer close(w.hostDone)
		defer hc.Close()
		h.serve(hc, wire.NewFDReader(hc))
	}()
	go func() {
		<-w.hostDone
		close(w.exited)
	}()
	if err := w.handshake(ctx, attach); err != nil {
		// Not waiting for the host: an initializer that hangs keeps its
		// goroutine until it returns (a goroutine cannot be stopped).
		w.conn.Close()
		return nil, err
	}
	return w, nil
}
