package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// The limits the pipeline figures are compared with, measured in the same
// run so that they share the machine's state (load, frequency, noise).
func init() {
	Register(Benchmark{Name: "limit/chan-handoff", Run: chanHandoff})
	Register(Benchmark{Name: "limit/memcpy-8MiB", Run: memcpy8MiB})
	Register(Benchmark{Name: "limit/socket-stream", Run: socketStream})
	Register(Benchmark{Name: "limit/process-start", Run: processStart})
}

// startProbeEnv, set in the environment of this binary, makes it exit with
// startProbeStatus as soon as its main calls ExitIfStartProbe:
// limit/process-start. The status tells a probe from a main that ran.
const (
	startProbeEnv    = "FERRY_BENCH_START_PROBE"
	startProbeStatus = 86
)

// ExitIfStartProbe exits at once when this process was started by
// limit/process-start. A main that runs the suite calls it first (after
// proc.Main), so that the limit is the cost of starting this very binary —
// exec, the Go runtime and every package's init — that every worker start
// of this binary pays before ferry's own code runs.
func ExitIfStartProbe() {
	if os.Getenv(startProbeEnv) != "" {
		os.Exit(startProbeStatus)
	}
}

// processStart measures the time to start this binary and see it exit
// from its main (ExitIfStartProbe): the floor under proc/start-first-item,
// which grows with what the binary links (its package inits, its size).
func processStart(ctx context.Context, cfg Config) (Result, error) {
	if os.Getenv(startProbeEnv) != "" {
		// A probe whose main did not exit: do not start probes in turn.
		return Result{}, fmt.Errorf("limit/process-start ran in a probe of itself: main must call ExitIfStartProbe")
	}
	exe, err := os.Executable()
	if err != nil {
		return Result{}, fmt.Errorf("finding this binary: %w", err)
	}
	ns, runs, err := Repeat(cfg, func() (float64, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), startProbeEnv+"=1")
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != startProbeStatus {
			return 0, fmt.Errorf("%s with %s=1 did not exit with status %d (%v): does its main call benchsuite.ExitIfStartProbe?", exe, startProbeEnv, startProbeStatus, err)
		}
		return float64(d), nil
	})
	return Result{Ns: ns, Runs: runs.N, Spread: runs.Spread}, err
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
	return Result{ItemsPerSec: rate, Runs: runs.N, Spread: runs.Spread}, nil
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
	return Result{BytesPerSec: rate * memcpySize, Runs: runs.N, Spread: runs.Spread}, nil
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
			if cerr := closeSocket(fd); cerr != nil && err == nil {
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
					_ = shutdownSocket(wfd, false)
					werr <- fmt.Errorf("write: %w", err)
					return
				}
			}
			werr <- nil
		}()
		if err := readN(rfd, rbuf, n*socketChunk); err != nil {
			// Make a blocked writer fail with EPIPE instead of hanging.
			_ = shutdownSocket(rfd, true)
			return errors.Join(fmt.Errorf("read: %w", err), <-werr)
		}
		return <-werr
	})
	if err != nil {
		return Result{}, err
	}
	return Result{BytesPerSec: rate * socketChunk, Runs: runs.N, Spread: runs.Spread}, nil
}
