package proc

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ferrypipe/ferry/internal/wire"
	"github.com/ferrypipe/ferry/shm"
)

// session is one end of a control connection, the same code in the parent
// and in the worker: requests matched by id, and streams with credits,
// each cancellable by its opener. The side that opens a request or a
// stream picks its id and keeps an exchange for it; the side that serves
// it keeps a served entry, which Cancel and Credit find. Today the parent
// opens and the worker serves; nothing in the session depends on that.
//
// One goroutine reads the connection (run); what arrives for an exchange
// is handed to it there, without blocking: credits bound what a stream can
// send, and a request gets one reply.
type session struct {
	w     *wire.Writer
	arena *shm.SegmentPool                                          // parts in the arena are viewed on arrival
	serve func(t wire.Type, id uint64, body []byte, r *wire.Reader) // the peer's Request and Open; nil: it may open none

	// The exchange of the last frame read, for the reading goroutine
	// alone: a stream's frames come in runs, found without the lock.
	lastID uint64
	lastX  *exchange

	mu      sync.Mutex
	nextID  uint64
	out     map[uint64]*exchange // opened by this side
	streams map[uint64]*exchange // the streams among them
	served  map[uint64]*served   // opened by the peer
	dead    chan struct{}        // closed when the connection has ended
	deadErr error                // why, for every exchange still open
}

func newSession(w *wire.Writer, arena *shm.SegmentPool) *session {
	return &session{w: w, arena: arena, out: map[uint64]*exchange{}, streams: map[uint64]*exchange{}, served: map[uint64]*served{}, dead: make(chan struct{})}
}

// exchange is a request or a stream this side opened.
type exchange struct {
	id     uint64
	split  bool         // a request whose reply carries parts in the arena
	reply  chan frame   // a request: receives exactly one frame
	stream *streamInbox // a stream: receives its frames
	owner  ender        // told of the last frame on the reading goroutine, before it is handed over
	// A duplex stream's opener is told of the peer's input credits, and
	// of the last frame (before it is handed over).
	inCredit func(n int)
	onEnd    func(f frame)
}

// ender is told of the last frame of an exchange (its reply, its End, or
// the end of the connection), which it may change (release its views).
type ender interface{ ended(f frame) frame }

// frame is one message received for an exchange.
type frame struct {
	t     wire.Type
	body  []byte
	view  *shm.View // DataRef: the item, viewed on arrival
	split splitMsg  // DataSplit, or Reply of a split request: its parts, viewed on arrival
	err   error     // DataRef, DataSplit, split Reply: why it could not be viewed; or the session's end
	lost  bool      // err is the end of the connection
}

// release releases the views of a frame that is not handed over.
func (f *frame) release() {
	if f.view != nil {
		f.view.Release()
		f.view = nil
	}
	f.split.release()
}

// served is a request or stream the peer opened, being served here.
type served struct {
	cancel func()
	credit func(n int)  // a stream's credits
	input  *streamInbox // a duplex stream's input, which the opener sends
}

// open gives x an id and registers it, unless the connection has ended.
func (s *session) open(x *exchange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deadErr != nil {
		return s.deadErr
	}
	s.nextID++
	x.id = s.nextID
	s.out[x.id] = x
	if x.stream != nil {
		s.streams[x.id] = x
	}
	return nil
}

// run reads frames until the connection ends, then ends every exchange
// with end().
func (s *session) run(r *wire.Reader, end func() error) {
	for {
		t, id, body, err := r.Next()
		if err != nil || t == wire.Shutdown {
			s.idle()
			break
		}
		s.handle(t, id, body, r)
		if r.Buffered() == 0 {
			s.idle()
		}
	}
	err := end()
	s.mu.Lock()
	s.deadErr = err
	out := s.out
	s.out, s.streams = map[uint64]*exchange{}, map[uint64]*exchange{}
	peer := s.served
	s.served = map[uint64]*served{}
	s.mu.Unlock()
	for _, x := range out {
		x.deliver(frame{t: 0, err: err, lost: true})
	}
	for _, sv := range peer {
		sv.cancel()
	}
	close(s.dead)
}

// idle hands batched stream frames over: the next read may block.
func (s *session) idle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.streams {
		x.stream.publish()
	}
}

func (s *session) handle(t wire.Type, id uint64, body []byte, r *wire.Reader) {
	switch t {
	case wire.Request, wire.Open:
		if s.serve != nil {
			s.serve(t, id, body, r)
		}
	case wire.Cancel:
		s.mu.Lock()
		sv := s.served[id]
		s.mu.Unlock()
		if sv != nil {
			sv.cancel()
		}
	case wire.Credit:
		n, err := wire.ParseU32(body)
		s.mu.Lock()
		sv := s.served[id]
		s.mu.Unlock()
		if sv != nil && sv.credit != nil && err == nil {
			sv.credit(int(n))
		}
	case wire.InCredit:
		n, err := wire.ParseU32(body)
		s.mu.Lock()
		x := s.out[id]
		s.mu.Unlock()
		if x != nil && x.inCredit != nil && err == nil {
			x.inCredit(int(n))
		}
	case wire.In, wire.InEnd:
		f := frame{t: t, body: body}
		if t == wire.In && s.arena != nil {
			// Inputs are split like a Request's payload: their parts are
			// viewed on arrival, so that one never read is released.
			f.split, f.err = viewSplit(s.arena, body)
		}
		s.mu.Lock()
		sv := s.served[id]
		s.mu.Unlock()
		if sv == nil || sv.input == nil {
			f.release() // a stream that has ended, or is not duplex
			return
		}
		// Published at once: a stream that ends stops being served, and
		// frames held back would never be released.
		sv.input.add(f, true)
	default:
		last := t == wire.Reply || t == wire.ReplyErr || t == wire.End
		x := s.lastX
		if id != s.lastID || x == nil || last {
			// Only this goroutine removes exchanges: a cached one is
			// still registered until its last frame.
			s.mu.Lock()
			x = s.out[id]
			if last && x != nil {
				delete(s.out, id)
				delete(s.streams, id)
			}
			s.mu.Unlock()
			s.lastID, s.lastX = id, x
			if last {
				s.lastX = nil
			}
		}
		f := frame{t: t, body: body}
		switch {
		case t == wire.DataRef:
			f.body = nil
			ref, err := shm.ParseRef(body)
			switch {
			case err != nil:
				f.err = err
			case s.arena == nil:
				f.err = errors.New("proc: an item in shared memory, but no arena")
			default:
				f.view, f.err = s.arena.View(ref)
			}
		case t == wire.DataSplit, t == wire.Reply && x != nil && x.split:
			f.split, f.err = viewSplit(s.arena, body)
		}
		if x == nil || x.reply != nil && !last {
			// An exchange given up, or a stream's frame for a request (a
			// peer that breaks the protocol): free what it holds; a
			// request waits for its one reply.
			f.release()
			return
		}
		x.deliver(f)
	}
}

// deliver hands f to the exchange's opener.
func (x *exchange) deliver(f frame) {
	if f.lost || f.t == wire.Reply || f.t == wire.ReplyErr || f.t == wire.End {
		if x.owner != nil {
			f = x.owner.ended(f)
		}
		if x.onEnd != nil {
			x.onEnd(f)
		}
	}
	if x.reply != nil {
		x.reply <- f // buffered: one reply per request
		return
	}
	x.stream.add(f, f.lost)
}

// serving registers what the peer opened, for Cancel and Credit.
func (s *session) serving(id uint64, sv *served) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deadErr != nil {
		return false
	}
	s.served[id] = sv
	return true
}

func (s *session) doneServing(id uint64) {
	s.mu.Lock()
	delete(s.served, id)
	s.mu.Unlock()
}

// streamInbox queues the frames of a stream for its consumer. The reading
// goroutine never waits on it: credits bound what the peer can send.
type streamInbox struct {
	pending []frame     // collected by the reading goroutine, which alone touches it
	discard atomic.Bool // the consumer has gone: frames are released as they come

	mu     sync.Mutex
	ready  []frame
	notify chan struct{}
}

func newStreamInbox() *streamInbox { return &streamInbox{notify: make(chan struct{}, 1)} }

// add queues a frame; on the reading goroutine.
func (b *streamInbox) add(f frame, now bool) {
	if b.discard.Load() {
		f.release()
		for i := range b.pending {
			b.pending[i].release()
		}
		b.pending = b.pending[:0]
		return
	}
	b.pending = append(b.pending, f)
	if now || len(b.pending) >= 256 || f.t == wire.End {
		b.publish()
	}
}

// publish moves pending frames to the consumer; on the reading goroutine.
func (b *streamInbox) publish() {
	if len(b.pending) == 0 {
		return
	}
	b.mu.Lock()
	if b.discard.Load() { // the consumer has gone (drain holds b.mu)
		b.mu.Unlock()
		for i := range b.pending {
			b.pending[i].release()
		}
		clear(b.pending)
		b.pending = b.pending[:0]
		return
	}
	b.ready = append(b.ready, b.pending...)
	b.mu.Unlock()
	clear(b.pending)
	b.pending = b.pending[:0]
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// take returns everything ready in place of into, which the consumer is
// done with.
func (b *streamInbox) take(into []frame) []frame {
	clear(into)
	b.mu.Lock()
	defer b.mu.Unlock()
	into, b.ready = b.ready, into[:0]
	return into
}

// drain releases every view handed over, and makes the reading goroutine
// release what comes from now on (and what it holds pending).
func (b *streamInbox) drain() {
	b.discard.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.ready {
		b.ready[i].release()
	}
	b.ready = nil
}
