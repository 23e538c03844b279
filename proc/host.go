package proc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/platform"
	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/shm"
)

// Environment of a worker process. Main reads it and removes it, so that
// programs started by worker code do not take themselves for workers.
const (
	envWorker      = "FERRY_WORKER"                   // the registered name it serves (for ps); set: it is a worker
	envParent      = "FERRY_WORKER_PARENT"            // the pid it must be the child of
	envMemoryLimit = "FERRY_WORKER_MEMORY_LIMIT"      // see MemoryLimit
	envMainTimeout = "FERRY_WORKER_BOOTSTRAP_WAIT"    // how long proc.Main may take to be called (a Go duration)
	envArena       = "FERRY_WORKER_ARENA_FD"          // the fd of its shared-memory arena, if any
	envArenaWait   = "FERRY_WORKER_ARENA_TIMEOUT"     // the arena's acquire timeout (a Go duration)
	envArenaSize   = "FERRY_WORKER_ARENA_THRESHOLD"   // see ArenaThreshold
	envLogLevel    = "FERRY_WORKER_LOG_LEVEL"         // the lowest level of the records a worker sends
	envCPUProfile  = "FERRY_WORKER_CPUPROFILE"        // the directory of its CPU profile (CPUProfile)
	workerFD       = 3                                // its end of the control socket
	arenaFD        = 4                                // the arena's memfd
	bootstrapHint  = "call proc.Main() first in main" // what a mis-launched worker is told
)

// ErrNoBootstrap is the cause of a worker start that failed because the
// program did not call Main first in main (or in TestMain), or because a
// program started as a worker tried to start workers of its own.
var ErrNoBootstrap = errors.New("proc: the worker program did not call proc.Main() first in main (in tests, call proc.Main() first in TestMain, before m.Run)")

// mainCalled is set by Main in a worker process.
var mainCalled atomic.Bool

// bootstrapWait is how long a process started as a worker waits for main
// to call Main before it gives up (not counting the initialization of its
// packages, which may take as long as it takes).
const bootstrapWait = 1500 * time.Millisecond

func init() {
	if os.Getenv(envWorker) == "" {
		return
	}
	// Started as a worker: if main does not call Main soon, it is running
	// the program instead of serving, and must stop before it does harm.
	wait := bootstrapWait
	if d, err := time.ParseDuration(os.Getenv(envMainTimeout)); err == nil && d > 0 {
		wait = d
	}
	var check func()
	check = func() {
		switch {
		case mainCalled.Load():
		case initializing():
			// Packages are still being initialized: main has not
			// started, so it cannot have called Main yet.
			time.AfterFunc(wait, check)
		default:
			misLaunched(fmt.Sprintf("main did not call proc.Main within %v of its start", wait))
		}
	}
	time.AfterFunc(wait, check)
}

// initializing reports whether the program is still initializing its
// packages: the main goroutine is in a package's init function (whose
// frame is named "path.init" or "path.init.…"), as its stack shows.
func initializing() bool {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.HasPrefix(g, []byte("goroutine 1 [")) {
			return regexp.MustCompile(initFrame).Match(g)
		}
	}
	return false
}

// initFrame matches the frame of a package's initialization in a stack
// (compiled when needed: rarely, and never at start).
const initFrame = `(?m)^[\w./~%-]+\.init(\.\w+)*\(`

// misLaunched ends a process that was started as a worker but runs the
// program instead of serving: it says why on stderr and exits with status
// 3, which its parent reports as ErrNoBootstrap.
func misLaunched(why string) {
	fmt.Fprintf(os.Stderr, "ferry worker: %s: %s (in tests, call proc.Main() first in TestMain)\n", why, bootstrapHint)
	os.Exit(3)
}

// Main turns the process into a worker when it was started as one, and
// never returns in that case; otherwise it returns at once. Call it first
// in main (and in TestMain, so that test binaries can be their own
// workers):
//
//	func main() {
//		proc.Main()
//		...
//	}
//
// A program started as a worker that does not call Main within a moment,
// or that tries to start workers itself, exits with a message that says
// so, and its parent reports ErrNoBootstrap: a forgotten Main never
// cascades into processes starting processes.
func Main() {
	if os.Getenv(envWorker) == "" {
		return
	}
	mainCalled.Store(true)
	os.Exit(serveProcess())
}

// workerEnv is what a worker process read from its environment.
type workerEnv struct {
	name, parent, memoryLimit, arena, arenaWait, arenaSize, started, cpuProfile string
}

// takeWorkerEnv reads the worker's environment and removes it.
func takeWorkerEnv() workerEnv {
	take := func(k string) string {
		v := os.Getenv(k)
		os.Unsetenv(k)
		return v
	}
	e := workerEnv{
		name: take(envWorker), parent: take(envParent), memoryLimit: take(envMemoryLimit),
		arena: take(envArena), arenaWait: take(envArenaWait), arenaSize: take(envArenaSize),
		started: take(envStarted), cpuProfile: take(envCPUProfile),
	}
	os.Unsetenv(envMainTimeout)
	os.Unsetenv(envWorkerLogLevel)
	return e
}

// sendBuffer is the send buffer the worker asks for on its control socket.
const sendBuffer = 4 << 20

// serveProcess runs a worker process and returns its exit status.
func serveProcess() int {
	installWorkerLog() // before its level leaves the environment
	env := takeWorkerEnv()
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "ferry worker: "+format+"\n", args...)
		return 3
	}
	if !platform.Supported {
		return fail("%v", ErrUnsupported)
	}
	f := os.NewFile(workerFD, "ferry-control")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fail("no control connection on fd %d: %v", workerFD, err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fail("the control connection on fd %d is not a Unix socket", workerFD)
	}
	// First of all, say that this is a worker: whatever fails from here
	// on, the parent knows that proc.Main was called.
	hello, _ := json.Marshal(wire.HelloMsg{Magic: wire.Magic, Version: wire.Version, PID: os.Getpid()})
	if _, err := uc.Write(wire.AppendFrame(nil, wire.Hello, 0, hello)); err != nil {
		return fail("saying hello: %v", err)
	}
	// Whatever happens to this process's parent, nothing it started
	// outlives it: at the parent's death (the parent-death signal) and at
	// the end of the control connection, the whole process group goes.
	watchParent()
	// The parent may have died before this process could notice: the
	// parent-death signal only covers deaths after the fork.
	if want, _ := strconv.Atoi(env.parent); want != os.Getppid() {
		return fail("parent %s is gone", env.parent)
	}
	if err := applyMemoryLimit(env.memoryLimit); err != nil {
		return fail("%v", err)
	}
	// Room for large items in the socket, so that writing one takes few
	// round trips with the parent's reads (the kernel caps it at
	// net.core.wmem_max).
	_ = uc.SetWriteBuffer(sendBuffer)
	h := &host{pid: os.Getpid(), exit: func(code int) { killGroupAndExit(code) }}
	if env.arena != "" {
		if h.arena, h.threshold, err = openArena(env.arena, env.arenaWait, env.arenaSize); err != nil {
			return fail("%v", err)
		}
		processArena.Store(h.arena)
	}
	if h.constants, err = openConstants(os.Getenv(envConstants)); err != nil {
		return fail("%v", err)
	}
	os.Unsetenv(envConstants)
	if v := env.started; v != "" {
		if h.started, err = openStartCounter(v); err != nil {
			return fail("%v", err)
		}
	}
	stopProfile, err := startCPUProfile(env.cpuProfile, env.name)
	if err != nil {
		return fail("%v", err)
	}
	code := h.serve(uc, wire.NewFDReader(uc))
	stopProfile()
	killGroupAndExit(code)
	return code
}

// startCPUProfile starts the worker's CPU profile in dir (CPUProfile), if
// dir is set; stop ends it and closes its file.
func startCPUProfile(dir, name string) (stop func(), err error) {
	if dir == "" {
		return func() {}, nil
	}
	name = strings.NewReplacer("/", "_", string(os.PathSeparator), "_").Replace(name)
	path := filepath.Join(dir, fmt.Sprintf("worker-%s-%d.pprof", name, os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPUProfile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPUProfile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// host is the worker side of the runtime: it serves the requests and
// streams of one session, runs the instances of registered work they
// target, and owns the worker's state (arena, constants). A worker process
// has one host; InProcess runs one in a goroutine.
type host struct {
	pid       int
	s         *session
	arena     *shm.SegmentPool
	threshold int
	constants []*shm.Constant
	exit      func(code int) // the parent is gone: end the worker
	started   *startCounter  // what its work queues started, for the parent
	inProcess bool           // InProcess: this process's constants are the parent's

	mu        sync.Mutex
	instances map[uint64]*hosted
	next      uint64
}

// hosted is an instance of registered work and the queue of what it runs.
type hosted struct {
	inst   instance
	run    *runQueue
	duplex bool // its streams take input from their opener
}

// serve speaks the protocol on conn until the parent closes it or says
// Shutdown, and returns the exit status.
func (h *host) serve(conn net.Conn, r *wire.Reader) int {
	w := wire.NewWriter(conn)
	defer w.Close()
	if h.inProcess {
		hello, _ := json.Marshal(wire.HelloMsg{Magic: wire.Magic, Version: wire.Version, PID: h.pid})
		if err := w.Send(wire.Hello, 0, hello); err != nil {
			return 3
		}
	}
	t, _, body, err := r.Next()
	if err != nil || t != wire.Init {
		fmt.Fprintf(os.Stderr, "ferry worker: expected Init, got %v (%v)\n", t, err)
		return 3
	}
	var init wire.InitMsg
	if err := json.Unmarshal(body, &init); err != nil {
		fmt.Fprintf(os.Stderr, "ferry worker: bad Init: %v\n", err)
		return 3
	}
	h.s = newSession(w, h.arena)
	h.instances = map[uint64]*hosted{}
	if err := h.init(init); err != nil {
		_ = w.Send(wire.InitFailed, 0, encodeError(err, -1))
		return 1
	}
	if err := w.SendNow(wire.Ready, 0, nil); err != nil {
		return 0
	}
	h.s.serve = h.handle
	h.s.run(r, func() error { return ErrClosed })
	return 0
}

func (h *host) init(m wire.InitMsg) error {
	if m.Version != wire.Version {
		return fmt.Errorf("the parent speaks protocol version %d, this worker %d: run the same binary", m.Version, wire.Version)
	}
	for _, name := range m.Initializers {
		e, err := lookup(name, kindInit)
		if err != nil {
			return err
		}
		if err := protect(func() error { return e.init(context.Background()) }); err != nil {
			return fmt.Errorf("initializer %q: %w", name, err)
		}
	}
	if m.Attach != nil {
		if _, err := h.attach(*m.Attach); err != nil {
			return err
		}
	}
	return nil
}

// attach makes an instance of registered work and returns its id.
func (h *host) attach(a wire.Attach) (uint64, error) {
	e, err := lookup(a.Name, a.Kind)
	if err != nil {
		return 0, err
	}
	var inst instance
	if err := protect(func() (err error) { inst, err = e.attach(h, a.Args); return err }); err != nil {
		return 0, err
	}
	n := max(a.Concurrency, 1)
	if a.Kind == kindIter || a.Kind == kindPipeline || a.Kind == kindDuplex {
		n = 1 // passes never overlap
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	var started *atomic.Int64
	if h.started != nil {
		started = h.started.n
	}
	h.instances[h.next] = &hosted{inst: inst, run: newRunQueue(n, started), duplex: a.Kind == kindDuplex}
	return h.next, nil
}

// handle serves a Request or an Open, on the reading goroutine: host
// operations run here, in order with what follows them (a constant is
// mapped before the calls sent after it are read); work is queued.
func (h *host) handle(t wire.Type, id uint64, body []byte, r *wire.Reader) {
	head, payload, err := wire.ParseHead(body)
	if err != nil {
		h.fail(t, id, err)
		return
	}
	if head.Target == 0 {
		h.hostOp(t, id, head, payload, r)
		return
	}
	h.mu.Lock()
	hd := h.instances[head.Target]
	h.mu.Unlock()
	if hd == nil {
		h.fail(t, id, fmt.Errorf("no instance %d in this worker", head.Target))
		return
	}
	switch {
	case head.Op == wire.OpStats && t == wire.Request:
		body, err := hd.inst.stats()
		h.answer(id, body, err)
		return
	case head.Op != wire.OpCall:
		h.fail(t, id, fmt.Errorf("instance %d has no operation %d", head.Target, head.Op))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	if head.Deadline != 0 {
		cancel()
		ctx, cancel = context.WithDeadline(context.Background(), time.Unix(0, head.Deadline))
	}
	ctx = meta.Incoming(ctx, head.Meta) // the caller's metadata, and what propagators make of it
	// A Cancel from the opener (or the end of the connection): unlike a
	// deadline, it ends the work without an error anyone will read.
	var byOpener atomic.Bool
	sv := &served{cancel: func() { byOpener.Store(true); cancel() }}
	var out *outStream
	if t == wire.Open {
		out = &outStream{h: h, id: id, ctx: ctx, credits: int(head.Credits)}
		out.cond = sync.NewCond(&out.mu)
		sv.credit = out.credit
		if hd.duplex {
			out.in = newInStream(h, id, int(head.Credits))
			sv.input = out.in.inbox
		}
	}
	if !h.s.serving(id, sv) {
		cancel()
		return
	}
	hd.run.push(func() {
		if out != nil && out.in != nil {
			defer out.in.inbox.drain() // after doneServing: inputs that come later are released as they come
		}
		defer h.s.doneServing(id)
		defer cancel()
		if out != nil {
			// A stream waiting for credits wakes when its context ends,
			// by Cancel or by deadline.
			defer context.AfterFunc(ctx, out.wake)()
			err := protect(func() error {
				if err := ctx.Err(); err != nil {
					return err
				}
				return hd.inst.stream(context.WithValue(ctx, streamKey{}, out), payload, out)
			})
			out.end(err, byOpener.Load())
			return
		}
		var reply []byte
		err := protect(func() (err error) {
			if err := ctx.Err(); err != nil {
				return err
			}
			reply, err = hd.inst.call(ctx, payload)
			return err
		})
		h.reply(id, reply, err, hd.run.idle())
	})
}

// hostOp serves a request to the host itself.
func (h *host) hostOp(t wire.Type, id uint64, head wire.Head, payload []byte, r *wire.Reader) {
	if t != wire.Request {
		h.fail(t, id, errors.New("the host serves requests, not streams"))
		return
	}
	switch head.Op {
	case wire.OpAttach:
		var a wire.Attach
		if err := json.Unmarshal(payload, &a); err != nil {
			h.answer(id, nil, fmt.Errorf("a malformed attach request: %w", err))
			return
		}
		n, err := h.attach(a)
		h.answer(id, binary.AppendUvarint(nil, n), err)
	case wire.OpConstant:
		h.addConstant(id, string(payload), r)
	default:
		h.answer(id, nil, fmt.Errorf("the host has no operation %d", head.Op))
	}
}

// addConstant maps the shared constant whose memfd came with the request
// and registers it for shm.Lookup. A worker that cannot must not serve
// what follows (calls that need it), so it answers and exits.
func (h *host) addConstant(id uint64, name string, r *wire.Reader) {
	fd, ok := r.TakeFD()
	var err error
	if ok && h.inProcess {
		closeFD(fd) // registered in this process already
		h.answer(id, nil, nil)
		return
	}
	if !ok {
		err = fmt.Errorf("shared constant %q arrived without its file descriptor", name)
	} else {
		var c *shm.Constant
		c, err = shm.OpenConstant(name, fd)
		closeFD(fd) // OpenConstant keeps its own duplicate
		if err != nil {
			err = fmt.Errorf("mapping shared constant %q: %w", name, err)
		} else {
			h.mu.Lock()
			h.constants = append(h.constants, c)
			h.mu.Unlock()
		}
	}
	h.answer(id, nil, err)
	if err != nil {
		_ = h.s.w.Close() // the answer goes out before the exit
		fmt.Fprintf(os.Stderr, "ferry worker: %v\n", err)
		h.exit(3)
	}
}

// answer replies to a request.
func (h *host) answer(id uint64, body []byte, err error) { h.reply(id, body, err, false) }

// reply answers a request. The last answer of a burst (now) is written by
// this goroutine at once; the others are queued for the writing
// goroutine, which sends many per system call.
func (h *host) reply(id uint64, body []byte, err error, now bool) {
	t := wire.Reply
	if err != nil {
		t, body = wire.ReplyErr, encodeError(err, -1)
	}
	var serr error
	if now && len(body) <= 32<<10 {
		serr = h.s.w.SendNow(t, id, body)
	} else {
		serr = h.s.w.Send(t, id, body)
	}
	if serr != nil {
		h.exit(0) // the parent is gone
	}
}

// fail refuses a Request or an Open.
func (h *host) fail(t wire.Type, id uint64, err error) {
	if t == wire.Open {
		h.send(wire.End, id, encodeError(err, -1))
		return
	}
	h.answer(id, nil, err)
}

func (h *host) send(t wire.Type, id uint64, body []byte) {
	if h.s.w.Send(t, id, body) != nil {
		h.exit(0)
	}
}

// outStream is a stream the host serves: what the work yields goes to the
// parent as credits allow.
type outStream struct {
	h     *host
	id    uint64
	ctx   context.Context
	index int64     // items sent, failed ones included
	have  int       // credits taken, not spent yet (the stream's goroutine's)
	in    *inStream // a duplex stream's input

	mu      sync.Mutex
	cond    *sync.Cond
	credits int
}

func (o *outStream) wake() {
	o.mu.Lock()
	o.cond.Broadcast()
	o.mu.Unlock()
}

func (o *outStream) credit(n int) {
	o.mu.Lock()
	o.credits += n
	o.cond.Broadcast()
	o.mu.Unlock()
}

// take waits for a credit; false: the stream was cancelled. It takes all
// the credits there are at once: the stream's goroutine spends them
// without the lock.
func (o *outStream) take() bool {
	if o.have > 0 {
		if o.ctx.Err() != nil {
			return false
		}
		o.have--
		return true
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.credits == 0 && o.ctx.Err() == nil {
		o.cond.Wait()
	}
	if o.ctx.Err() != nil {
		return false
	}
	o.have, o.credits = o.credits-1, 0
	return true
}

// send sends one item, or its error, once a credit allows; false: the
// stream was cancelled, and the item was discarded.
func (o *outStream) send(e encoded, err error) bool {
	if !o.take() {
		discardRefs(o.h.arena, e.refs)
		return false
	}
	if err != nil {
		o.h.send(wire.DataErr, o.id, encodeError(err, o.index))
	} else if o.h.s.w.SendBorrowed(e.t, o.id, e.body) != nil { // body is valid until the next item
		o.h.exit(0)
	}
	o.index++
	return true
}

// end ends the stream, with the error that ended it early, if any: the
// work's, or its context's when it ended by its deadline. A stream its
// opener cancelled ends without one: nobody reads it.
func (o *outStream) end(err error, byOpener bool) {
	if err == nil && !byOpener {
		err = o.ctx.Err()
	}
	if err != nil && !byOpener {
		o.h.send(wire.End, o.id, encodeError(err, o.index))
		return
	}
	o.h.send(wire.End, o.id, nil)
}

// streamKey finds the stream that worker code yields to, for Flush.
type streamKey struct{}

// Flush returns once everything that the calling worker code has yielded
// so far (a FlatFunc's outputs, an Iter's or Pipeline's items) has been
// written to the parent's connection, so that it reaches the parent even
// if the worker dies right after: yielded items are otherwise written
// shortly after, many per system call. ctx is the context the worker code
// was given; elsewhere (the same code in a goroutine) Flush does nothing.
func Flush(ctx context.Context) error {
	out, ok := ctx.Value(streamKey{}).(*outStream)
	if !ok {
		return nil
	}
	return out.h.s.w.Flush()
}

// runQueue runs queued work in order, n at a time, without ever making
// the reading goroutine wait.
type runQueue struct {
	mu      sync.Mutex
	queue   []func()
	running int
	n       int
	started *atomic.Int64 // counts what starts, in arrival order (see startCounter); may be nil
}

func newRunQueue(n int, started *atomic.Int64) *runQueue {
	return &runQueue{n: n, started: started}
}

// start counts one piece of work started; q.mu is held, so that the
// count follows the order of arrival.
func (q *runQueue) start() {
	if q.started != nil {
		q.started.Add(1)
	}
}

// idle reports whether nothing is waiting to run.
func (q *runQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue) == 0
}

func (q *runQueue) push(fn func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running < q.n {
		q.running++
		q.start()
		go q.loop(fn)
		return
	}
	q.queue = append(q.queue, fn)
}

// loop runs fn, then what is queued, and ends when the queue is empty.
func (q *runQueue) loop(fn func()) {
	for {
		fn()
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running--
			q.mu.Unlock()
			return
		}
		fn = q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.start()
		q.mu.Unlock()
	}
}

// panicError is a panic recovered in worker code.
type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// protect runs fn, turning a panic into a *panicError.
func protect(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	return fn()
}

// IsWorker reports whether this process is a worker process serving its
// parent (Main was called in a process started as a worker). Worker code
// can use it to behave differently from the same code run in a goroutine,
// which it rarely should.
func IsWorker() bool { return mainCalled.Load() }
