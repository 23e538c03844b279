//go:build !ferrynolinux

package wire

import (
	"cmp"
	"errors"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxFDs is how many descriptors one read can receive. SendFD sends one
// per frame, and the kernel ends a read after the data that came with
// descriptors, so one read gets at most one; the room is for peers that
// send more at once.
const maxFDs = 64

// oobSize is the room for the control messages of one read.
var oobSize = unix.CmsgSpace(4 * maxFDs)

// rawConn returns w's raw connection when it has one, for the writes that
// must not block (SendNow) and those that carry descriptors (SendFD).
func rawConn(w io.Writer) syscall.RawConn {
	if sc, ok := w.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}

// unixRights is the control message that sends fd.
func unixRights(fd int) []byte { return unix.UnixRights(fd) }

// sendmsg writes b with the control message oob, which goes with b's first
// byte, waiting while the connection is full.
func (w *Writer) sendmsg(b, oob []byte) error {
	var err error
	cerr := w.raw.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			n, e := unix.SendmsgN(int(fd), b, oob, nil, 0)
			switch e {
			case nil:
				b, oob = b[n:], nil
			case unix.EINTR:
			case unix.EAGAIN:
				return false // wait until the connection takes more
			default:
				err = e
				return true
			}
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	return err
}

// tryWrite writes as much of q as the connection takes without blocking.
// It returns what is left (a suffix of q, whose first buffer may be cut)
// and how many bytes were written.
func (w *Writer) tryWrite(q net.Buffers) (rest net.Buffers, n int64, err error) {
	rest = q
	cerr := w.raw.Write(func(fd uintptr) bool {
		for len(rest) > 0 {
			k, e := unix.Writev(int(fd), rest)
			if e == unix.EINTR {
				continue
			}
			if e != nil {
				if e != unix.EAGAIN {
					err = e
				}
				return true
			}
			n += int64(k)
			for k > 0 {
				if k < len(rest[0]) {
					rest[0] = rest[0][k:]
					break
				}
				k -= len(rest[0])
				rest = rest[1:]
			}
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	return rest, n, err
}

// readMsg reads from the socket and keeps the descriptors that came.
func (f *fdConn) readMsg(p []byte) (int, error) {
	n, oobn, flags, _, err := f.c.ReadMsgUnix(p, f.oob)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(f.oob[:oobn])
		for _, m := range msgs {
			fds, e := unix.ParseUnixRights(&m)
			f.fds = append(f.fds, fds...)
			perr = cmp.Or(perr, e)
		}
		err = cmp.Or(err, perr)
	}
	if flags&unix.MSG_CTRUNC != 0 {
		err = cmp.Or(err, errors.New("wire: received file descriptors were cut off"))
	}
	return n, err
}
