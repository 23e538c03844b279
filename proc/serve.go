package proc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

// Main turns the process into a worker when it was started as one, and
// never returns in that case; otherwise it returns at once. Call it first
// in main (and in TestMain, so that test binaries can be their own
// workers):
//
//	func main() {
//		proc.Main()
//		...
//	}
func Main() {
	if os.Getenv(envWorker) == "" {
		return
	}
	os.Exit(serve())
}

// sendBuffer is the send buffer the worker asks for on its control socket.
const sendBuffer = 4 << 20

// serve runs the worker side of the protocol and returns the exit status.
func serve() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "ferry worker: "+format+"\n", args...)
		return 3
	}
	// The parent may have died before this process could notice: the
	// parent-death signal only covers deaths after the fork.
	if want, _ := strconv.Atoi(os.Getenv(envParent)); want != os.Getppid() {
		return fail("parent %d is gone", want)
	}
	f := os.NewFile(workerFD, "ferry-control")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fail("no control connection on fd %d: %v", workerFD, err)
	}
	r := wire.NewReader(conn)
	if uc, ok := conn.(*net.UnixConn); ok {
		// Room for large items in the socket, so that writing one takes
		// few round trips with the parent's reads (the kernel caps it at
		// net.core.wmem_max).
		_ = uc.SetWriteBuffer(sendBuffer)
		r = wire.NewFDReader(uc) // shared constants arrive with their memfd
	}
	if v := os.Getenv(envArena); v != "" {
		if err := openArena(v, os.Getenv(envArenaTimeout), os.Getenv(envArenaThreshold)); err != nil {
			return fail("%v", err)
		}
	}
	if err := openConstants(os.Getenv(envConstants)); err != nil {
		return fail("%v", err)
	}
	s := &server{w: wire.NewWriter(conn), calls: make(chan call, 64)}
	t, _, body, err := r.Next()
	if err != nil || t != wire.Init {
		return fail("expected Init, got %v (%v)", t, err)
	}
	var init wire.InitMsg
	if err := json.Unmarshal(body, &init); err != nil {
		return fail("bad Init: %v", err)
	}
	if err := s.init(init); err != nil {
		s.sendErr(wire.InitFailed, 0, -1, err)
		s.w.Close()
		return 1
	}
	if err := s.w.Send(wire.Ready, 0, nil); err != nil {
		return fail("sending Ready: %v", err)
	}
	for {
		t, id, body, err := r.Next()
		if err != nil {
			if err == io.EOF {
				return 0 // the parent closed the connection: it is gone
			}
			return fail("reading from the parent: %v", err)
		}
		switch t {
		case wire.Start:
			n, err := wire.ParseU32(body)
			if err != nil {
				return fail("bad Start: %v", err)
			}
			s.start(id, int(n))
		case wire.Credit:
			n, err := wire.ParseU32(body)
			if err != nil {
				return fail("bad Credit: %v", err)
			}
			s.credit(id, int(n))
		case wire.Stop:
			s.stop(id)
		case wire.Call:
			s.calls <- call{id, body}
		case wire.Stats:
			s.stats(id)
		case wire.Constant:
			if !s.addConstant(id, string(body), r) {
				return 3
			}
		case wire.Shutdown:
			return 0
		default:
			return fail("unexpected message %v", t)
		}
	}
}

// server is the state of a worker process.
type server struct {
	w     *wire.Writer
	entry *entry
	inst  instance
	calls chan call

	mu   sync.Mutex
	cur  *passState // the pass running or about to
	prev chan struct{}
}

type call struct {
	id   uint64
	body []byte
}

func (s *server) init(m wire.InitMsg) error {
	if m.Version != wire.Version {
		return fmt.Errorf("protocol version %d, this worker speaks %d", m.Version, wire.Version)
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
	e, err := lookup(m.Name, m.Kind)
	if err != nil {
		return err
	}
	s.entry = e
	switch m.Kind {
	case kindFunc:
		for range max(m.Concurrency, 1) {
			go s.serveCalls()
		}
	case kindIter, kindPipeline:
		return protect(func() (err error) { s.inst, err = e.open(m.Args); return err })
	}
	return nil
}

func (s *server) serveCalls() {
	for c := range s.calls {
		var out []byte
		err := protect(func() (err error) {
			out, err = s.entry.call(context.Background(), c.body)
			return err
		})
		if err != nil {
			s.sendErr(wire.CallFailed, c.id, -1, err)
			continue
		}
		if err := s.w.Send(wire.Result, c.id, out); err != nil {
			os.Exit(0) // the parent is gone
		}
	}
}

// passState is one pass in the worker: its credits and its cancellation.
type passState struct {
	id      uint64
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	cond    *sync.Cond
	credits int
	done    chan struct{}
}

// take waits for credits and takes all there are; 0 means the pass was
// stopped.
func (p *passState) take() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.credits == 0 && p.ctx.Err() == nil {
		p.cond.Wait()
	}
	if p.ctx.Err() != nil {
		return 0
	}
	n := p.credits
	p.credits = 0
	return n
}

func (s *server) start(id uint64, credits int) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &passState{id: id, ctx: ctx, cancel: cancel, credits: credits, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	s.mu.Lock()
	prev := s.prev
	s.cur, s.prev = p, p.done
	s.mu.Unlock()
	go func() {
		defer close(p.done)
		if prev != nil {
			<-prev // passes never overlap
		}
		s.run(p)
	}()
}

func (s *server) credit(id uint64, n int) {
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	if p != nil && p.id == id {
		p.mu.Lock()
		p.credits += n
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

func (s *server) stop(id uint64) {
	s.mu.Lock()
	p := s.cur
	s.mu.Unlock()
	if p != nil && p.id == id {
		p.mu.Lock()
		p.cancel()
		p.cond.Broadcast()
		p.mu.Unlock()
	}
}

// run streams one pass: IterStarted, Item or ItemFailed for each item, then
// IterFinished (with an error if the pass itself failed, e.g. a panic).
func (s *server) run(p *passState) {
	defer p.cancel()
	if s.inst == nil {
		s.sendErr(wire.IterFinished, p.id, -1, fmt.Errorf("%q is a %s: it has no passes", s.entry.name, s.entry.kind))
		return
	}
	if s.w.Send(wire.IterStarted, p.id, nil) != nil {
		os.Exit(0)
	}
	index := int64(0)
	credits := 0 // taken from p, not used yet
	err := protect(func() error {
		for e, err := range s.inst.pass(p.ctx) {
			if credits == 0 {
				if credits = p.take(); credits == 0 {
					discardUnsent(e)
					return nil
				}
			} else if p.ctx.Err() != nil {
				discardUnsent(e)
				return nil
			}
			credits--
			if err != nil {
				s.sendErr(wire.ItemFailed, p.id, index, err)
			} else if s.w.SendBorrowed(e.t, p.id, e.body) != nil { // body is valid until the next item
				os.Exit(0)
			}
			index++
		}
		return nil
	})
	if err != nil {
		s.sendErr(wire.IterFinished, p.id, index, err)
		return
	}
	if s.w.Send(wire.IterFinished, p.id, nil) != nil {
		os.Exit(0)
	}
}

// addConstant maps the shared constant that came with a Constant frame
// and registers it for shm.Lookup, before the frames after it are read:
// calls sent after it find it. It replies ConstantOK, and reports whether
// it could: a worker without the constant must not serve those calls, so
// it exits instead.
func (s *server) addConstant(id uint64, name string, r *wire.Reader) bool {
	fail := func(err error) bool {
		s.sendErr(wire.ConstantOK, id, -1, err)
		s.w.Close() // the error goes out before the exit
		fmt.Fprintf(os.Stderr, "ferry worker: %v\n", err)
		return false
	}
	fd, ok := r.TakeFD()
	if !ok {
		return fail(fmt.Errorf("shared constant %q arrived without its file descriptor", name))
	}
	c, err := shm.OpenConstant(name, fd)
	unix.Close(fd) // OpenConstant keeps its own duplicate
	if err != nil {
		return fail(fmt.Errorf("mapping shared constant %q: %w", name, err))
	}
	workerConstants = append(workerConstants, c)
	if s.w.Send(wire.ConstantOK, id, nil) != nil {
		os.Exit(0)
	}
	return true
}

func (s *server) stats(id uint64) {
	var body []byte
	if s.inst != nil {
		body, _ = s.inst.stats()
	}
	_ = s.w.Send(wire.StatsReply, id, body)
}

// sendErr sends err as the body of a message of type t.
func (s *server) sendErr(t wire.Type, id uint64, index int64, err error) {
	m := wire.ErrorMsg{Type: fmt.Sprintf("%T", err), Message: err.Error(), Index: index}
	if pe, ok := err.(*panicError); ok {
		m.Type, m.Message, m.Stack = "panic", fmt.Sprint(pe.value), pe.stack
	}
	body, _ := json.Marshal(m)
	if s.w.Send(t, id, body) != nil {
		os.Exit(0)
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
