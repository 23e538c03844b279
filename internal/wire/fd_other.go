//go:build !linux || ferrynolinux

package wire

import (
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/ferrypipe/ferry/internal/platform"
)

// oobSize is the room for the control messages of one read: none, as no
// descriptors are passed here.
const oobSize = 0

// rawConn returns nil: without Linux's socket calls, every write goes
// through the connection's Write, from the writing goroutine.
func rawConn(io.Writer) syscall.RawConn { return nil }

// unixRights is never used here: SendFD refuses first.
func unixRights(int) []byte { return nil }

// sendmsg fails: descriptors are passed on Linux only (SendFD refuses
// before it gets here).
func (w *Writer) sendmsg(_, _ []byte) error {
	return fmt.Errorf("wire: sending a file descriptor: %w", platform.ErrUnsupported)
}

// tryWrite writes nothing: with no raw connection, SendNow leaves the
// frames to the writing goroutine and never calls it.
func (w *Writer) tryWrite(q net.Buffers) (net.Buffers, int64, error) { return q, 0, nil }

// readMsg reads from the socket; no descriptors come here.
func (f *fdConn) readMsg(p []byte) (int, error) { return f.c.Read(p) }
