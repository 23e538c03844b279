package jetstream

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// embedded is a NATS server with JetStream inside this process: loopback
// only, a random port, a generated password, storage in a directory of its
// own that Close removes (unless the caller gave it).
type embedded struct {
	mu       sync.Mutex // guards srv (replaced by a restart in tests) and closed
	srv      *server.Server
	closed   bool
	opts     *server.Options
	dir      string
	ownDir   bool
	user     string
	password string
}

// startEmbedded starts a server storing under dir ("" for a temporary
// directory).
func startEmbedded(dir string) (*embedded, error) {
	e := &embedded{dir: dir, user: "ferry", password: randomToken()}
	if dir == "" {
		d, err := os.MkdirTemp("", "ferry-jetstream-")
		if err != nil {
			return nil, fmt.Errorf("jetstream: a directory for the embedded server: %w", err)
		}
		e.dir, e.ownDir = d, true
	}
	opts := &server.Options{
		ServerName: "ferry-embedded",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoSigs:     true,
		NoLog:      true,
		JetStream:  true,
		StoreDir:   e.dir,
		Username:   e.user,
		Password:   e.password,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.removeDir()
		return nil, fmt.Errorf("jetstream: the embedded server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.removeDir()
		return nil, fmt.Errorf("jetstream: the embedded server did not start within 10s")
	}
	e.srv, e.opts = srv, opts
	if testHookEmbedded != nil {
		testHookEmbedded(e)
	}
	return e, nil
}

// testHookEmbedded, set by tests, gets each embedded server once started.
var testHookEmbedded func(*embedded)

// url is where clients connect; auth are the options that let them.
func (e *embedded) url() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv.ClientURL()
}

func (e *embedded) auth() []nats.Option { return []nats.Option{nats.UserInfo(e.user, e.password)} }

func (e *embedded) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.removeDir()
}

func (e *embedded) removeDir() {
	if e.ownDir {
		_ = os.RemoveAll(e.dir)
	}
}

// randomToken is a credential or an identifier nobody can guess.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
