// Command oom dies the way a Go program dies when it cannot get memory, for
// the tests of workerOutput.CrashedOutOfMemory:
//
//	oom oom LIMIT [goroutines [noise [chunk]]]
//
// starts goroutines that block (so that the crash's goroutine dump is long),
// writes noise bytes to stderr without a newline, sets RLIMIT_DATA to LIMIT
// MiB, or with "+LIMIT" to its data segment now (VmData) plus LIMIT MiB as
// MemoryLimit does, and allocates chunk bytes at a time (8 MiB by default)
// until the runtime dies. "oom panic" panics instead.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var sink [][]byte

func main() {
	if len(os.Args) < 2 {
		fail("usage: oom oom [+]MiB [goroutines [noise [chunk]]] | oom panic")
	}
	arg := func(i, def int) int {
		if len(os.Args) <= i {
			return def
		}
		n, err := strconv.Atoi(strings.TrimPrefix(os.Args[i], "+"))
		if err != nil {
			fail(err)
		}
		return n
	}
	switch os.Args[1] {
	case "panic":
		fmt.Fprintln(os.Stderr, "about to panic")
		panic("boom")
	case "oom":
		mib, goroutines, noise, chunk := arg(2, 64), arg(3, 0), arg(4, 0), arg(5, 8<<20)
		block := make(chan struct{})
		for range goroutines {
			go func() { <-block }()
		}
		os.Stderr.Write(bytes.Repeat([]byte{'x'}, noise))
		limit := uint64(mib) << 20
		if strings.HasPrefix(os.Args[2], "+") {
			limit += vmData()
		}
		if err := unix.Setrlimit(unix.RLIMIT_DATA, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
			fail("setrlimit:", err)
		}
		for {
			b := make([]byte, chunk)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			sink = append(sink, b)
		}
	}
	fail("unknown mode", os.Args[1])
}

// vmData is the data segment as RLIMIT_DATA counts it.
func vmData() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmData:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				fail(err)
			}
			return kb << 10
		}
	}
	fail("no VmData")
	return 0
}

func fail(v ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"oom:"}, v...)...)
	os.Exit(3)
}
