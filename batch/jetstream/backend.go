package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/proc"
)

// Option configures the backend.
type Option func(*config)

type config struct {
	url         string // "" for an embedded server
	natsOpts    []nats.Option
	workers     int // local worker processes
	concurrency int // indices at once per worker
	ackWait     time.Duration
	maxDeliver  int
	storeDir    string
	procOpts    []proc.Option
	host        string
}

// NATS passes options to the connections to an external server (Connect):
// credentials (nats.UserInfo, nats.Token, nats.UserCredentials,
// nats.Nkey), TLS (nats.Secure, nats.RootCAs, nats.ClientCert) and any
// other. Local workers (Workers) get the user and password, or the token;
// with credentials files, NKeys or TLS, run workers with Serve.
func NATS(opts ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, opts...) }
}

// Workers sets how many worker processes the backend starts on this
// machine (Local's n; Connect starts none unless told).
func Workers(n int) Option { return func(c *config) { c.workers = max(n, 0) } }

// Concurrency sets how many units each local worker runs at once (default
// GOMAXPROCS of the worker).
func Concurrency(n int) Option { return func(c *config) { c.concurrency = max(n, 1) } }

// AckWait sets how long a worker may go without a sign of life (it renews
// its hold on a unit every third of it) before its unit is given to another
// worker, which reports the loss (default 30s).
func AckWait(d time.Duration) Option { return func(c *config) { c.ackWait = d } }

// MaxDeliver bounds the deliveries of a unit (default 5): a unit whose
// deliveries are exhausted without any worker reporting on it fails its
// indices.
func MaxDeliver(n int) Option { return func(c *config) { c.maxDeliver = max(n, 2) } }

// StoreDir sets where the embedded server keeps its streams (default a
// temporary directory, removed when the run ends).
func StoreDir(dir string) Option { return func(c *config) { c.storeDir = dir } }

// WorkerOptions configures the local worker processes (proc.Env,
// proc.MemoryLimit, proc.Logger, …).
func WorkerOptions(opts ...proc.Option) Option {
	return func(c *config) { c.procOpts = append(c.procOpts, opts...) }
}

// Host sets the host name local workers advertise (default os.Hostname).
func Host(name string) Option { return func(c *config) { c.host = name } }

func newConfig(opts []Option) config {
	c := config{ackWait: 30 * time.Second, maxDeliver: 5}
	for _, o := range opts {
		o(&c)
	}
	if c.host == "" {
		c.host, _ = os.Hostname()
	}
	return c
}

// Local is a backend that runs a NATS server with JetStream inside this
// process (loopback only, a random port, a generated password, storage in
// a temporary directory removed at the end) and n worker processes of this
// program that connect to it: the distributed code path, on one machine,
// with no set-up. The program must call proc.Main first in main (and in
// TestMain).
func Local(n int, opts ...Option) batch.Backend {
	c := newConfig(append([]Option{Workers(max(n, 1))}, opts...))
	return &backend{c: c}
}

// Connect is a backend on the NATS server (or cluster) at url, whose
// workers run elsewhere (Serve, or `ferry worker --nats URL`); Workers(n)
// adds local ones. Authentication and TLS are NATS options (see NATS).
func Connect(url string, opts ...Option) batch.Backend {
	c := newConfig(opts)
	c.url = url
	return &backend{c: c}
}

type backend struct{ c config }

func (b *backend) String() string {
	if b.c.url == "" {
		return fmt.Sprintf("jetstream(local, %d)", b.c.workers)
	}
	return fmt.Sprintf("jetstream(%s, %d local)", b.c.url, b.c.workers)
}

// Open starts what one run needs: the server (embedded), the run's
// streams and KV entry, and the local workers.
func (b *backend) Open(ctx context.Context, job batch.JobSpec) (_ batch.Executor, err error) {
	// The job must be defined here too: this program's workers run it.
	if _, err := batch.NewRunner(job); err != nil {
		return nil, err
	}
	e := &executor{c: b.c, job: job, run: randomToken()[:12], pending: map[uint64]*unit{}, bySeq: map[uint64]uint64{},
		log: job.Logger, done: make(chan struct{})}
	if e.log == nil {
		e.log = slog.Default()
	}
	defer func() {
		if err != nil {
			_ = e.Close()
		}
	}()
	url, natsOpts := b.c.url, b.c.natsOpts
	if url == "" {
		if e.srv, err = startEmbedded(b.c.storeDir); err != nil {
			return nil, err
		}
		url, natsOpts = e.srv.url(), append(e.srv.auth(), natsOpts...)
	}
	e.url, e.natsOpts = url, natsOpts
	if e.nc, err = nats.Connect(url, append([]nats.Option{nats.Name("ferry coordinator " + e.run), nats.MaxReconnects(-1)}, natsOpts...)...); err != nil {
		return nil, fmt.Errorf("jetstream: connecting to %s: %w", url, err)
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return nil, err
	}
	if err := e.setUp(ctx); err != nil {
		return nil, err
	}
	for i := range b.c.workers {
		if err := e.startWorker(ctx, i); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// unit is a unit being executed, waiting for its reports.
type unit struct {
	id     uint64
	task   batch.Task
	seen   map[int]bool
	events chan unitEvent
	gone   chan struct{} // closed when Execute returns
	mu     sync.Mutex
	pid    int
	host   string
	worker string
}

type unitEvent struct {
	kind   string
	outs   []batch.Outcome
	worker string
	err    error
}

type executor struct {
	c          config
	job        batch.JobSpec
	run        string
	log        *slog.Logger
	srv        *embedded
	url        string
	natsOpts   []nats.Option
	nc         *nats.Conn
	js         jetstream.JetStream
	kv         jetstream.KeyValue
	unitStream jetstream.Stream
	outs       jetstream.ConsumeContext
	subs       []*nats.Subscription

	mu       sync.Mutex
	pending  map[uint64]*unit
	bySeq    map[uint64]uint64 // stream sequence of a unit's message → unit
	dead     map[int]error     // local worker processes that died, by pid
	nextUnit atomic.Uint64

	workers   sync.WaitGroup
	workerMu  sync.Mutex
	its       map[int]*proc.Iterable[struct{}]
	closing   atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
}

// setUp creates the run's streams, consumers and KV entry, and listens
// for reports.
func (e *executor) setUp(ctx context.Context) error {
	var err error
	e.unitStream, err = e.js.CreateStream(ctx, jetstream.StreamConfig{Name: streamUnits(e.run), Subjects: []string{subjUnit(e.run)},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		return fmt.Errorf("jetstream: the run's unit stream: %w", err)
	}
	if _, err = e.js.CreateOrUpdateConsumer(ctx, streamUnits(e.run), jetstream.ConsumerConfig{Durable: workersConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: e.c.ackWait, MaxDeliver: e.c.maxDeliver, MaxAckPending: -1}); err != nil {
		return fmt.Errorf("jetstream: the run's consumer: %w", err)
	}
	out, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: streamOut(e.run), Subjects: []string{subjOutAll(e.run)},
		Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		return fmt.Errorf("jetstream: the run's report stream: %w", err)
	}
	cons, err := out.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	if e.outs, err = cons.Consume(e.report); err != nil {
		return err
	}
	live, err := e.nc.Subscribe(subjLive(e.run), func(m *nats.Msg) {
		id, _ := strconv.ParseUint(string(m.Data), 10, 64)
		e.mu.Lock()
		_, ok := e.pending[id]
		e.mu.Unlock()
		_ = m.Respond([]byte(strconv.FormatBool(ok)))
	})
	if err != nil {
		return err
	}
	refused, err := e.nc.Subscribe(subjRefused(e.run), func(m *nats.Msg) {
		e.log.Error("jetstream: a worker refuses the run's job", "job", e.job.Name, "worker", m.Header.Get(hdrWorker), "err", string(m.Data))
	})
	if err != nil {
		return err
	}
	// A unit whose deliveries are exhausted without a report.
	exhausted, err := e.nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."+streamUnits(e.run)+".workers", func(m *nats.Msg) {
		var adv struct {
			Seq        uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if json.Unmarshal(m.Data, &adv) != nil {
			return
		}
		e.mu.Lock()
		u := e.pending[e.bySeq[adv.Seq]]
		e.mu.Unlock()
		if u != nil {
			u.send(unitEvent{kind: kindLost, err: fmt.Errorf("jetstream: unit %d was delivered %d times (MaxDeliver) without a report: %w", u.id, adv.Deliveries,
				&WorkerLostError{Worker: u.workerName(), Unit: u.id, AckWait: e.c.ackWait})}, e.done)
		}
	})
	if err != nil {
		return err
	}
	e.subs = append(e.subs, live, refused, exhausted)
	if e.kv, err = e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: runsBucket, Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("jetstream: the runs bucket: %w", err)
	}
	info, _ := json.Marshal(runInfo{Run: e.run, Job: e.job.Name, ID: e.job.ID, Params: e.job.Params, Len: e.job.Len, Timeout: e.job.Timeout, AckWait: e.c.ackWait})
	if _, err := e.kv.Put(ctx, e.run, info); err != nil {
		return fmt.Errorf("jetstream: announcing the run: %w", err)
	}
	return nil
}

func (u *unit) workerName() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.worker
}

// report routes what a worker reported to its unit; a report for a unit
// nobody waits for (given up, or a late duplicate) is dropped.
func (e *executor) report(m jetstream.Msg) {
	id, err := unitOf(m.Subject(), e.run)
	if err != nil {
		return
	}
	e.mu.Lock()
	u := e.pending[id]
	e.mu.Unlock()
	if u == nil {
		return
	}
	h := m.Headers()
	worker := h.Get(hdrWorker)
	ev := unitEvent{kind: h.Get(hdrKind), worker: worker}
	switch ev.kind {
	case kindStart:
		pid, _ := strconv.Atoi(h.Get(hdrPID))
		u.mu.Lock()
		u.pid, u.host, u.worker = pid, h.Get(hdrHost), worker
		u.mu.Unlock()
		if err := e.deadWorker(u); err != nil { // it died before this arrived
			defer func() {
				u.send(unitEvent{kind: kindLost, err: err}, e.done)
			}()
		}
	case kindOutcomes:
		b := m.Data()
		for len(b) > 0 {
			o, _, rest, err := batch.DecodeOutcome(b, "batch "+e.job.Name, worker)
			if err != nil {
				ev = unitEvent{kind: kindLost, err: fmt.Errorf("jetstream: a report from %s: %w", worker, err)}
				break
			}
			b = rest
			ev.outs = append(ev.outs, o)
		}
	case kindLost:
		if ev.err = e.deadWorker(u); ev.err == nil {
			ev.err = &WorkerLostError{Worker: u.workerName(), Unit: id, AckWait: e.c.ackWait}
		}
	case kindEnd:
	default:
		return
	}
	u.send(ev, e.done)
}

// send hands ev to the unit's Execute, unless it has returned.
func (u *unit) send(ev unitEvent, done <-chan struct{}) {
	select {
	case u.events <- ev:
	case <-u.gone:
	case <-done:
	}
}

// TaskDuration asks for units of about 20 ms of work: each costs a few
// acknowledged messages.
func (e *executor) TaskDuration() time.Duration { return 20 * time.Millisecond }

// Slots keeps two units per local worker's unit in flight and, on a
// server others serve too (Connect), remoteUnits more for the workers it
// cannot count.
func (e *executor) Slots() int {
	n := max(e.c.workers, 1) * max(e.c.concurrency, 2) * 2
	if e.c.url != "" {
		n += remoteUnits
	}
	return n
}

// remoteUnits is how many units a run on a shared server keeps published
// for workers elsewhere, beyond its local workers'.
const remoteUnits = 32

// Execute publishes the task as a unit and collects its reports.
//
// A unit lost before any worker started it (it went to a worker that died
// with its pull request still open) has not been attempted: it is
// published again, up to MaxDeliver times, rather than reported lost.
func (e *executor) Execute(ctx context.Context, t batch.Task, started func(int, string)) ([]batch.Outcome, error) {
	for n := 1; ; n++ {
		outs, begun, err := e.execute(ctx, t, started)
		if err == nil || begun || ctx.Err() != nil || n >= e.c.maxDeliver {
			return outs, err
		}
		e.log.Debug("jetstream: a unit lost before it started; publishing it again", "indices", len(t.Indices), "err", err)
	}
}

// execute publishes t as one unit and collects its reports; begun: a
// worker started it.
func (e *executor) execute(ctx context.Context, t batch.Task, started func(int, string)) (_ []batch.Outcome, begun bool, _ error) {
	u := &unit{id: e.nextUnit.Add(1), task: t, seen: map[int]bool{}, events: make(chan unitEvent, 16), gone: make(chan struct{})}
	e.mu.Lock()
	e.pending[u.id] = u
	e.mu.Unlock()
	defer func() {
		close(u.gone)
		e.mu.Lock()
		delete(e.pending, u.id)
		e.mu.Unlock()
	}()
	md, err := meta.Outgoing(ctx)
	if err != nil {
		return nil, false, err
	}
	body, _ := json.Marshal(unitMsg{Unit: u.id, Indices: t.Indices, Ordered: t.Ordered, StopOnError: t.StopOnError, Alone: t.Alone, Meta: md})
	// Retried for a while: the server may be restarting (the message id
	// makes a retry of a publish that did land harmless).
	ack, err := e.js.Publish(ctx, subjUnit(e.run), body, jetstream.WithMsgID(e.run+"."+strconv.FormatUint(u.id, 10)),
		jetstream.WithRetryAttempts(120), jetstream.WithRetryWait(250*time.Millisecond))
	if err != nil {
		return nil, false, fmt.Errorf("jetstream: publishing unit %d: %w", u.id, err)
	}
	e.mu.Lock()
	e.bySeq[ack.Sequence] = u.id
	e.mu.Unlock()
	outs := make([]batch.Outcome, 0, len(t.Indices))
	next := 0
	// A unit that went quiet is looked for in its queue: one that left it
	// without an end report (a server that lost it, an acknowledgement
	// whose reports were lost) is lost, not waited for forever.
	watch := time.NewTicker(e.c.ackWait)
	defer watch.Stop()
	heard, missing := true, 0
	for {
		select {
		case <-watch.C:
			if heard {
				heard, missing = false, 0
				continue
			}
			if _, err := e.unitStream.GetMsg(ctx, ack.Sequence); errors.Is(err, jetstream.ErrMsgNotFound) {
				if missing++; missing >= 2 { // its end report had a period to come
					return outs, begun, &WorkerLostError{Worker: u.workerName(), Unit: u.id, AckWait: e.c.ackWait}
				}
			}
		case <-ctx.Done():
			_ = e.nc.Publish(subjCancel(e.run), []byte(strconv.FormatUint(u.id, 10)))
			return outs, begun, ctx.Err()
		case ev := <-u.events:
			heard = true
			switch ev.kind {
			case kindStart:
				begun = true
				if next < len(t.Indices) {
					started(t.Indices[next], ev.worker)
				}
			case kindOutcomes:
				for _, o := range ev.outs {
					if u.seen[o.Index] || !slices.Contains(t.Indices, o.Index) {
						continue // a duplicate, or not this unit's
					}
					u.seen[o.Index] = true
					outs = append(outs, o)
					next++
					if next < len(t.Indices) && !(t.StopOnError && !o.OK) {
						started(t.Indices[next], ev.worker)
					}
				}
			case kindEnd:
				return outs, true, nil
			case kindLost:
				return outs, begun, ev.err
			}
		}
	}
}

// Close ends the run: workers stop taking its units, local workers stop,
// the run's streams are deleted, and an embedded server stops.
func (e *executor) Close() error {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		close(e.done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if e.kv != nil {
			_ = e.kv.Delete(ctx, e.run)
		}
		e.workerMu.Lock()
		for _, it := range e.its {
			_ = it.Close()
		}
		e.workerMu.Unlock()
		e.workers.Wait()
		if e.outs != nil {
			e.outs.Stop()
		}
		for _, s := range e.subs {
			_ = s.Unsubscribe()
		}
		if e.js != nil {
			_ = e.js.DeleteStream(ctx, streamUnits(e.run))
			_ = e.js.DeleteStream(ctx, streamOut(e.run))
		}
		if e.nc != nil {
			e.nc.Close()
		}
		if e.srv != nil {
			e.srv.close()
		}
	})
	return nil
}

// deadWorker returns the error of the local worker process that took u,
// if it died.
func (e *executor) deadWorker(u *unit) error {
	u.mu.Lock()
	pid, host := u.pid, u.host
	u.mu.Unlock()
	if host != e.c.host {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dead[pid]
}

// lostWorker fails the units a local worker process was running when it
// died, with its error.
func (e *executor) lostWorker(pid int, err error) {
	e.mu.Lock()
	if e.dead == nil {
		e.dead = map[int]error{}
	}
	e.dead[pid] = err
	var units []*unit
	for _, u := range e.pending {
		u.mu.Lock()
		if u.pid == pid && u.host == e.c.host {
			units = append(units, u)
		}
		u.mu.Unlock()
	}
	e.mu.Unlock()
	for _, u := range units {
		u.send(unitEvent{kind: kindLost, err: err}, e.done)
	}
}

// startWorker starts local worker process i, and starts it again when it
// dies, until the run ends.
func (e *executor) startWorker(ctx context.Context, i int) error {
	args := workerArgs{URL: e.url, Host: e.c.host, Concurrency: e.c.concurrency, Run: e.run}
	if e.srv != nil {
		args.User, args.Password = e.srv.user, e.srv.password
	} else {
		// The credentials that can travel to a worker process: a user and
		// password, or a token (creds files and TLS: start workers with
		// Serve instead).
		o := nats.GetDefaultOptions()
		for _, opt := range e.c.natsOpts {
			_ = opt(&o)
		}
		args.User, args.Password, args.Token = o.User, o.Password, o.Token
	}
	opts := []proc.IterateOption{proc.Logger(e.log)}
	for _, o := range e.c.procOpts {
		opts = append(opts, o)
	}
	it, err := proc.Iterate(ctx, workerIter, args, opts...)
	if err != nil {
		return fmt.Errorf("jetstream: starting local worker %d: %w", i, err)
	}
	e.workerMu.Lock()
	if e.closing.Load() { // Close has closed the others already
		e.workerMu.Unlock()
		return it.Close()
	}
	if e.its == nil {
		e.its = map[int]*proc.Iterable[struct{}]{}
	}
	e.its[i] = it
	e.workerMu.Unlock()
	e.workers.Add(1)
	go func() {
		defer e.workers.Done()
		var werr error
		for _, err := range it.All(context.Background()) {
			if err != nil {
				werr = err
			}
		}
		if e.closing.Load() {
			return
		}
		var we *proc.WorkerError
		if errors.As(werr, &we) {
			e.log.Warn("jetstream: a local worker died", "worker", i, "pid", we.PID, "err", werr)
			e.lostWorker(we.PID, werr)
		} else if werr != nil {
			// Not a death: it could not serve (the server refused it, say).
			// Starting it again would fail again.
			e.log.Error("jetstream: a local worker cannot serve; not starting it again", "worker", i, "err", werr)
			_ = it.Close()
			return
		}
		_ = it.Close()
		if err := e.startWorker(context.Background(), i); err != nil && !e.closing.Load() {
			e.log.Error("jetstream: restarting a local worker", "worker", i, "err", err)
		}
	}()
	return nil
}
