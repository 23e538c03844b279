package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// The limits the pipeline figures are compared with, measured in the same
// run so that they share the machine's state (load, frequency, noise).
func init() {
	Register(Benchmark{Name: "limit/chan-handoff", Run: chanHandoff})
	Register(Benchmark{Name: "limit/memcpy-8MiB", Run: memcpy8MiB})
	Register(Benchmark{Name: "limit/socket-stream", Run: socketStream})
}

// chanCap is the buffer of the channel limit/chan-handoff measures.
const chanCap = 64

// chanHandoff measures items/s through one buffered channel from one
// goroutine to another, one int per send.
func chanHandoff(ctx context.Context, cfg Config) (Result, error) {
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		ch := make(chan int, chanCap)
		go func() {
			for i := range n {
				ch <- i
			}
			close(ch)
		}()
		want := 0
		for v := range ch {
			if v != want {
				// Drain so that the sender finishes.
				for range ch {
				}
				return fmt.Errorf("received %d, want %d", v, want)
			}
			want++
		}
		if want != n {
			return fmt.Errorf("received %d items, want %d", want, n)
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{ItemsPerSec: rate, Runs: runs}, nil
}

// memcpySize is the buffer size limit/memcpy-8MiB copies.
const memcpySize = 8 << 20

// memcpy8MiB measures bytes/s of copy() from one 8 MiB buffer into another,
// both written before timing so that no page faults are measured.
func memcpy8MiB(ctx context.Context, cfg Config) (Result, error) {
	src := make([]byte, memcpySize)
	dst := make([]byte, memcpySize)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		for range n {
			copy(dst, src)
		}
		if dst[memcpySize-1] != src[memcpySize-1] {
			return errors.New("copy did not reach the end of the buffer")
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	return Result{BytesPerSec: rate * memcpySize, Runs: runs}, nil
}

// socketChunk is the size of one write in limit/socket-stream.
const socketChunk = 1 << 20

// socketStream measures bytes/s through an AF_UNIX SOCK_STREAM socket pair,
// a writer goroutine sending 1 MiB writes and the caller reading them. The
// fds are blocking and used with plain read(2)/write(2), so the figure is
// the kernel's, without the Go netpoller.
func socketStream(ctx context.Context, cfg Config) (res Result, err error) {
	fds, err := socketpair()
	if err != nil {
		return Result{}, err
	}
	defer func() {
		for _, fd := range fds {
			if cerr := syscall.Close(fd); cerr != nil && err == nil {
				err = fmt.Errorf("close socket: %w", cerr)
			}
		}
	}()
	wfd, rfd := fds[0], fds[1]
	wbuf := make([]byte, socketChunk)
	rbuf := make([]byte, socketChunk)
	for i := range wbuf {
		wbuf[i] = byte(i)
	}
	rate, runs, err := Rate(ctx, cfg, func(n int) error {
		werr := make(chan error, 1)
		go func() {
			for range n {
				if err := writeFull(wfd, wbuf); err != nil {
					// Let the reader see EOF instead of blocking.
					_ = syscall.Shutdown(wfd, syscall.SHUT_WR)
					werr <- fmt.Errorf("write: %w", err)
					return
				}
			}
			werr <- nil
		}()
		if err := readN(rfd, rbuf, n*socketChunk); err != nil {
			// Make a blocked writer fail with EPIPE instead of hanging.
			_ = syscall.Shutdown(rfd, syscall.SHUT_RDWR)
			return errors.Join(fmt.Errorf("read: %w", err), <-werr)
		}
		return <-werr
	})
	if err != nil {
		return Result{}, err
	}
	return Result{BytesPerSec: rate * socketChunk, Runs: runs}, nil
}

// socketpair returns a connected AF_UNIX SOCK_STREAM pair, close-on-exec.
func socketpair() ([2]int, error) {
	// As the net package does: hold ForkLock so that no fork sees the fds
	// before they are close-on-exec.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return fds, fmt.Errorf("socketpair: %w", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds, nil
}

// writeFull writes all of p to fd, retrying on EINTR and short writes.
func writeFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// readN reads exactly total bytes from fd into buf (reused), retrying on
// EINTR.
func readN(fd int, buf []byte, total int) error {
	for got := 0; got < total; {
		n, err := syscall.Read(fd, buf[:min(len(buf), total-got)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("EOF after %d of %d bytes", got, total)
		}
		got += n
	}
	return nil
}
