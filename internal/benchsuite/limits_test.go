package benchsuite

import (
	"context"
	"errors"
	"testing"
)

// TestLimitsQuick runs each limit benchmark in its quick form and checks
// that it reports a positive figure of the right kind. It asserts nothing
// about how fast the machine is.
func TestLimitsQuick(t *testing.T) {
	cases := []struct {
		name  string
		items bool // reports items/s rather than bytes/s
	}{
		{"limit/chan-handoff", true},
		{"limit/memcpy-8MiB", false},
		{"limit/socket-stream", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := Select(tc.name)
			if len(bs) != 1 {
				t.Fatalf("Select(%q) found %d benchmarks", tc.name, len(bs))
			}
			res, err := bs[0].Run(context.Background(), Config{Quick: true})
			if err != nil {
				t.Fatal(err)
			}
			got := res.BytesPerSec
			if tc.items {
				got = res.ItemsPerSec
			}
			if got <= 0 {
				t.Errorf("result %+v: want a positive rate", res)
			}
			if res.Runs != quickRuns {
				t.Errorf("runs = %d, want %d", res.Runs, quickRuns)
			}
		})
	}
}

// TestProcessStartQuick runs limit/process-start: this test binary's
// TestMain calls ExitIfStartProbe, so each start is seen exiting with the
// probe's status (a main that ran instead would fail the benchmark).
func TestProcessStartQuick(t *testing.T) {
	res, err := processStart(context.Background(), Config{Quick: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ns <= 0 || res.Runs != quickRuns {
		t.Errorf("result %+v: want a positive latency over %d runs", res, quickRuns)
	}
}

func TestLimitsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, b := range Select("limit/") {
		if _, err := b.Run(ctx, Config{Quick: true}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", b.Name, err)
		}
	}
}

func TestSocketReadWriteHelpers(t *testing.T) {
	fds, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(t, fds)
	msg := []byte("hello, ferry")
	done := make(chan error, 1)
	go func() { done <- writeFull(fds[0], msg) }()
	buf := make([]byte, 4) // smaller than msg: readN must loop
	if err := readN(fds[1], buf, len(msg)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadNEOF(t *testing.T) {
	fds, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(t, fds)
	if err := writeFull(fds[0], []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := shutdownSocket(fds[0], false); err != nil {
		t.Fatal(err)
	}
	if err := readN(fds[1], make([]byte, 16), 10); err == nil {
		t.Error("readN past EOF: want an error")
	}
}

func closeFDs(t *testing.T, fds [2]int) {
	t.Helper()
	for _, fd := range fds {
		if err := closeSocket(fd); err != nil {
			t.Errorf("close %d: %v", fd, err)
		}
	}
}
