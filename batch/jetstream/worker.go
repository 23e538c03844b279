package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/meta"
	"github.com/ferrypipe/ferry/proc"
)

// ServeOption configures Serve.
type ServeOption func(*serveConfig)

type serveConfig struct {
	natsOpts    []nats.Option
	concurrency int
	host        string
	run         string // only this run (a local worker of one run)
	log         *slog.Logger
}

// ServeNATS passes connection options (credentials, TLS) to Serve.
func ServeNATS(opts ...nats.Option) ServeOption {
	return func(c *serveConfig) { c.natsOpts = append(c.natsOpts, opts...) }
}

// ServeConcurrency sets how many units the worker runs at once (default
// GOMAXPROCS).
func ServeConcurrency(n int) ServeOption { return func(c *serveConfig) { c.concurrency = max(n, 1) } }

// ServeHost sets the host name the worker advertises (default
// os.Hostname).
func ServeHost(name string) ServeOption { return func(c *serveConfig) { c.host = name } }

// ServeLogger sets the worker's logger (default slog.Default()).
func ServeLogger(l *slog.Logger) ServeOption { return func(c *serveConfig) { c.log = l } }

// holdOutcomes is how long a worker keeps the outcomes of indices that end
// quickly, to send them together: tiny indices do not cost a message each.
const holdOutcomes = 5 * time.Millisecond

// Serve is a worker: it connects to the NATS server at url, and runs the
// units of every run announced there whose job this program defines, until
// ctx ends. It is what a user's own binary runs on other machines (behind a
// "worker" subcommand, say): jobs are defined in the user's program, so the
// program is the worker. A job it cannot build, or builds with another
// identity (another version or parameters), is refused with an error on the
// coordinator's log, never run.
func Serve(ctx context.Context, url string, opts ...ServeOption) error {
	c := serveConfig{concurrency: runtime.GOMAXPROCS(0), log: slog.Default()}
	for _, o := range opts {
		o(&c)
	}
	if c.host == "" {
		c.host, _ = os.Hostname()
	}
	w := &worker{c: c, pid: os.Getpid(), runs: map[string]context.CancelFunc{}}
	w.name = fmt.Sprintf("%s pid %d", c.host, w.pid)
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("ferry worker " + w.name), nats.MaxReconnects(-1)}, c.natsOpts...)...)
	if err != nil {
		return fmt.Errorf("jetstream: worker connecting to %s: %w", url, err)
	}
	defer nc.Close()
	w.nc = nc
	if w.js, err = jetstream.New(nc); err != nil {
		return err
	}
	// The runs bucket appears with the first run.
	var kv jetstream.KeyValue
	for {
		if kv, err = w.js.KeyValue(ctx, runsBucket); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("jetstream: watching the runs: %w", err)
	}
	defer func() { _ = watch.Stop() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		for _, cancel := range w.runs {
			cancel()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-watch.Updates():
			if !ok {
				return nil
			}
			if entry == nil {
				continue // the end of the runs that were there
			}
			run := entry.Key()
			if c.run != "" && run != c.run {
				continue
			}
			if entry.Operation() != jetstream.KeyValuePut {
				if cancel := w.runs[run]; cancel != nil {
					cancel()
					delete(w.runs, run)
				}
				continue
			}
			if w.runs[run] != nil {
				continue
			}
			var ri runInfo
			if err := json.Unmarshal(entry.Value(), &ri); err != nil {
				c.log.Error("jetstream: a run announced in a form this worker cannot read", "run", run, "err", err)
				continue
			}
			rctx, cancel := context.WithCancel(ctx)
			w.runs[run] = cancel
			wg.Go(func() { w.serveRun(rctx, kv, &ri) })
		}
	}
}

type worker struct {
	c    serveConfig
	nc   *nats.Conn
	js   jetstream.JetStream
	pid  int
	name string
	runs map[string]context.CancelFunc
}

// serveRun runs the units of one run until ctx ends.
func (w *worker) serveRun(ctx context.Context, kv jetstream.KeyValue, ri *runInfo) {
	r, err := batch.NewRunner(ri.spec())
	if err != nil {
		w.c.log.Error("jetstream: refusing a run", "run", ri.Run, "job", ri.Job, "err", err)
		m := nats.NewMsg(subjRefused(ri.Run))
		m.Header.Set(hdrWorker, w.name)
		m.Data = []byte(err.Error())
		_ = w.nc.PublishMsg(m)
		return
	}
	cons, err := w.js.Consumer(ctx, streamUnits(ri.Run), workersConsumer)
	if err != nil {
		if ctx.Err() == nil {
			w.c.log.Error("jetstream: the run's units", "run", ri.Run, "err", err)
		}
		return
	}
	// Units the coordinator gave up: skipped if they come, cancelled if
	// running.
	var mu sync.Mutex
	cancelled := map[uint64]bool{}
	running := map[uint64]context.CancelFunc{}
	sub, err := w.nc.Subscribe(subjCancel(ri.Run), func(m *nats.Msg) {
		id, _ := strconv.ParseUint(string(m.Data), 10, 64)
		mu.Lock()
		cancelled[id] = true
		if cancel := running[id]; cancel != nil {
			cancel()
		}
		mu.Unlock()
	})
	if err != nil {
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	var wg sync.WaitGroup
	for range w.c.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				fetched, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					// The run's consumer is gone when the run is over, and
					// for a moment while a server restarts: the run's
					// entry says which.
					if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
						if _, kerr := kv.Get(ctx, ri.Run); errors.Is(kerr, jetstream.ErrKeyNotFound) || errors.Is(kerr, jetstream.ErrKeyDeleted) {
							return
						}
					}
					select { // the server restarting, say
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				for m := range fetched.Messages() {
					var u unitMsg
					if err := json.Unmarshal(m.Data(), &u); err != nil {
						w.c.log.Error("jetstream: a unit this worker cannot read", "run", ri.Run, "err", err)
						_ = m.Term()
						continue
					}
					mu.Lock()
					skip := cancelled[u.Unit]
					uctx, cancel := context.WithCancel(ctx)
					running[u.Unit] = cancel
					mu.Unlock()
					if skip {
						_ = m.Ack()
					} else {
						w.runUnit(meta.Incoming(uctx, u.Meta), ri, r, m, &u)
					}
					cancel()
					mu.Lock()
					delete(running, u.Unit)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// runUnit runs one unit and reports on it; a unit delivered again (its
// first worker stopped answering) is not run but reported lost, if the
// coordinator still waits for it: the coordinator runs its indices again
// as it does for a worker that dies, so that only what was running runs
// twice.
func (w *worker) runUnit(ctx context.Context, ri *runInfo, r *batch.Runner, m jetstream.Msg, u *unitMsg) {
	report := func(kind string, body []byte) *nats.Msg {
		msg := nats.NewMsg(subjOut(ri.Run, u.Unit))
		msg.Header.Set(hdrKind, kind)
		msg.Header.Set(hdrWorker, w.name)
		msg.Header.Set(hdrHost, w.c.host)
		msg.Header.Set(hdrPID, strconv.Itoa(w.pid))
		msg.Data = body
		return msg
	}
	publish := func(kind string, body []byte) error {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, err := w.js.PublishMsg(pctx, report(kind, body), jetstream.WithRetryAttempts(120), jetstream.WithRetryWait(250*time.Millisecond))
		return err
	}
	// Reports before the end go out without waiting for the server's
	// acknowledgement; the end waits for all of them, then the unit is
	// acknowledged.
	var futures []jetstream.PubAckFuture
	publishAsync := func(kind string, body []byte) error {
		f, err := w.js.PublishMsgAsync(report(kind, body))
		if err == nil {
			futures = append(futures, f)
		}
		return err
	}
	var mu sync.Mutex // futures, and the outcomes held below
	published := func() error {
		mu.Lock()
		fs := futures
		mu.Unlock()
		timeout := time.After(time.Minute)
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-timeout:
				return errors.New("jetstream: no acknowledgement of a report within a minute")
			}
		}
		// A future answers once: those confirmed are not waited for again.
		mu.Lock()
		futures = futures[len(fs):]
		mu.Unlock()
		return nil
	}
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
		reply, err := w.nc.Request(subjLive(ri.Run), []byte(strconv.FormatUint(u.Unit, 10)), 5*time.Second)
		if err == nil && string(reply.Data) == "true" {
			if publish(kindLost, nil) != nil {
				return // delivered again later
			}
		}
		_ = m.Term()
		return
	}
	// Sign of life while the unit runs.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(max(ri.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	// The start is acknowledged before any index runs: a local worker
	// that dies is then known to have held the unit.
	if publish(kindStart, nil) != nil {
		return
	}
	// Outcomes go out as indices end; those of indices that end within
	// holdOutcomes of each other travel together, and none waits longer
	// than that, so that a worker that dies loses only what it was
	// running.
	var (
		held    []byte
		pubErr  error
		flushed = make(chan struct{})
		done    = make(chan struct{})
	)
	defer func() {
		close(done)
		<-flushed
	}()
	flush := func() {
		if len(held) > 0 && pubErr == nil {
			pubErr = publishAsync(kindOutcomes, held)
			held = nil // in flight
		}
	}
	go func() {
		defer close(flushed)
		t := time.NewTicker(holdOutcomes)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				flush()
				mu.Unlock()
			}
		}
	}()
	task := u.task()
	for _, idx := range task.Indices {
		if ctx.Err() != nil {
			break
		}
		o := r.RunIndex(ctx, idx, w.name)
		r.Encode(&o)
		mu.Lock()
		held = batch.AppendOutcome(held, w.pid, o)
		if task.Alone || !o.OK {
			flush()
		}
		err := pubErr
		mu.Unlock()
		if err == nil && task.Alone {
			// Nothing else runs: if the next index kills this worker, it
			// is blamed by the outcomes before it, which must be there.
			err = published()
		}
		if err != nil {
			return // not acknowledged: delivered again, and reported lost
		}
		if !o.OK && task.StopOnError {
			break
		}
	}
	mu.Lock()
	flush()
	err := pubErr
	mu.Unlock()
	if err != nil || published() != nil {
		return
	}
	if publish(kindEnd, nil) == nil {
		_ = m.Ack()
	}
}

// workerArgs are a local worker process's.
type workerArgs struct {
	URL         string
	User        string
	Password    string
	Token       string
	Host        string
	Concurrency int
	Run         string
}

// workerIter is a local worker process: Serve, until its parent ends it.
var workerIter = proc.Iter("ferry.batch.jetstream.worker", func(ctx context.Context, a workerArgs) iter.Seq2[struct{}, error] {
	return func(yield func(struct{}, error) bool) {
		opts := []ServeOption{ServeHost(a.Host), func(c *serveConfig) { c.run = a.Run }}
		switch {
		case a.User != "":
			opts = append(opts, ServeNATS(nats.UserInfo(a.User, a.Password)))
		case a.Token != "":
			opts = append(opts, ServeNATS(nats.Token(a.Token)))
		}
		if a.Concurrency > 0 {
			opts = append(opts, ServeConcurrency(a.Concurrency))
		}
		if err := Serve(ctx, a.URL, opts...); err != nil && ctx.Err() == nil {
			yield(struct{}{}, err)
		}
	}
})
