//go:build !ferrynolinux

package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// unixPair returns a connected pair of Unix stream sockets with small
// buffers, so that writes fill them quickly.
func unixPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// TestWriterMixedSends sends frames of every size with Send, SendNow and
// SendBorrowed from several goroutines at once, while the reader starts
// late (so that SendNow meets a full connection): every frame must arrive
// whole and each goroutine's frames in order, and a borrowed body changed
// after SendBorrowed returns must arrive as it was.
func TestWriterMixedSends(t *testing.T) {
	a, b := unixPair(t)
	w := NewWriter(a)
	const senders, frames = 4, 300
	sizes := []int{0, 8, 100, 5000, bigBody, bigBody + 1, 200 << 10}
	body := func(g, i int) []byte {
		n := sizes[(g+i)%len(sizes)]
		p := make([]byte, n)
		for k := range p {
			p[k] = byte(g*31 + i + k)
		}
		return p
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			<-start
			for i := range frames {
				p := body(g, i)
				var err error
				switch i % 3 {
				case 0:
					err = w.Send(Data, uint64(g), p)
				case 1:
					err = w.SendNow(Data, uint64(g), p)
				case 2:
					err = w.SendBorrowed(Data, uint64(g), p)
					clear(p) // the body is the caller's again
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	r := NewReader(b)
	next := make([]int, senders)
	for range senders * frames {
		typ, id, got, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		g := int(id)
		if typ != Data || g >= senders || next[g] >= frames {
			t.Fatalf("unexpected frame %v %d", typ, id)
		}
		if want := body(g, next[g]); !bytes.Equal(got, want) {
			t.Fatalf("sender %d frame %d: got %d bytes, want %d (or different content)", g, next[g], len(got), len(want))
		}
		next[g]++
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriterSendNowWritesAtOnce checks that SendNow on an idle connection
// leaves nothing for the writing goroutine.
func TestWriterSendNowWritesAtOnce(t *testing.T) {
	a, b := unixPair(t)
	w := NewWriter(a)
	defer w.Close()
	if err := w.SendNow(Credit, 9, U32(32)); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	queued, written := w.queued, w.written
	w.mu.Unlock()
	if queued != written || written != HeaderSize+4 {
		t.Fatalf("queued %d, written %d; want both %d", queued, written, HeaderSize+4)
	}
	typ, id, body, err := NewReader(b).Next()
	if err != nil || typ != Credit || id != 9 || binary.LittleEndian.Uint32(body) != 32 {
		t.Fatalf("got %v %d %v %v", typ, id, body, err)
	}
}

// TestWriterErrors checks that a broken connection fails every kind of
// send, and that Close reports it.
func TestWriterErrors(t *testing.T) {
	a, b := unixPair(t)
	b.Close()
	w := NewWriter(a)
	big := make([]byte, 1<<20)
	var errs []error
	for range 10 { // the first writes may succeed into the buffer
		errs = append(errs, w.SendNow(Cancel, 1, nil), w.SendBorrowed(Data, 1, big))
	}
	failed := false
	for _, err := range errs {
		failed = failed || err != nil
	}
	if !failed {
		t.Fatal("no send failed on a closed connection")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after failed writes returned nil")
	}
	if err := w.Send(Cancel, 1, nil); err == nil {
		t.Fatal("Send after Close returned nil")
	}
}

func ExampleWriter() {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := NewWriter(a)
	go func() {
		_ = w.Send(Data, 1, []byte("hello"))
		_ = w.Close()
	}()
	t, id, body, _ := NewReader(b).Next()
	fmt.Println(t, id, string(body))
	// Output: Data 1 hello
}

// TestSendFD interleaves frames that carry a file descriptor with plain
// frames of every kind from several goroutines, through a connection small
// enough to fill: every descriptor must arrive with its frame, in order,
// open on the file that was sent, and the sender's copies stay its own.
func TestSendFD(t *testing.T) {
	a, b := unixPair(t)
	w := NewWriter(a)
	const senders, frames = 3, 120
	files := make([]*os.File, senders)
	for g := range files {
		r, wp, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer wp.Close()
		files[g] = r // identified by its inode
	}
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range frames {
				body := make([]byte, []int{4, 5000, 100 << 10}[i%3])
				binary.LittleEndian.PutUint32(body, uint32(i))
				var err error
				switch i % 4 {
				case 0:
					err = w.SendFD(Request, uint64(g), body, int(files[g].Fd()))
				case 1:
					err = w.Send(Data, uint64(g), body)
				case 2:
					err = w.SendNow(Data, uint64(g), body)
				case 3:
					err = w.SendBorrowed(Data, uint64(g), body)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	r := NewFDReader(b.(*net.UnixConn))
	next := make([]int, senders)
	for range senders * frames {
		typ, id, body, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		g := int(id)
		if g >= senders || len(body) < 4 || int(binary.LittleEndian.Uint32(body)) != next[g] {
			t.Fatalf("frame %v from sender %d out of order (want its frame %d)", typ, id, next[g])
		}
		if want := map[bool]Type{true: Request, false: Data}[next[g]%4 == 0]; typ != want {
			t.Fatalf("sender %d frame %d is a %v, want a %v", g, next[g], typ, want)
		}
		if typ == Request {
			fd, ok := r.TakeFD()
			if !ok {
				t.Fatalf("sender %d frame %d arrived without its descriptor", g, next[g])
			}
			if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
				t.Errorf("received fd %d: flags %d, %v; want close-on-exec", fd, fl, err)
			}
			var st1, st2 unix.Stat_t
			if err := unix.Fstat(fd, &st1); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fstat(int(files[g].Fd()), &st2); err != nil {
				t.Fatal(err)
			}
			if st1.Ino != st2.Ino {
				t.Errorf("sender %d frame %d: the descriptor is not the sender's pipe", g, next[g])
			}
			unix.Close(fd)
		}
		next[g]++
	}
	wg.Wait()
	if fd, ok := r.TakeFD(); ok {
		t.Errorf("descriptor %d arrived without a frame", fd)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, _, _, err := r.Next(); err != io.EOF {
		t.Errorf("after the writer's end closed: %v, want io.EOF", err)
	}
	// SendFD needs a socket.
	bw := NewWriter(&bytes.Buffer{})
	defer bw.Close()
	if err := bw.SendFD(Request, 0, nil, 0); err == nil {
		t.Error("SendFD on a bytes.Buffer succeeded")
	}
}
