package jetstream

import (
	"errors"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Names a test needs to act as a worker that misbehaves.
var (
	StreamUnits  = streamUnits
	RunsBucket   = runsBucket
	ConsumerName = workersConsumer
)

// OnEmbeddedStart calls f with a restart function of each embedded server
// that starts until the test ends: restart stops the server and starts it
// again on the same port and storage, as after a crash of the server.
func OnEmbeddedStart(t interface{ Cleanup(func()) }, f func(restart func() error)) {
	testHookEmbedded = func(e *embedded) { f(e.restart) }
	t.Cleanup(func() { testHookEmbedded = nil })
}

func (e *embedded) restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("the run had ended: its embedded server was closed")
	}
	opts := *e.opts
	opts.Port = e.srv.Addr().(*net.TCPAddr).Port
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	srv, err := server.NewServer(&opts)
	if err != nil {
		return err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		return errors.New("the embedded server did not start again")
	}
	e.srv = srv
	return nil
}
