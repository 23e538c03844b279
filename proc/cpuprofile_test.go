//go:build linux && !ferrynolinux

package proc_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/proc"
)

// cpuSpin burns CPU for n iterations, so that the profile has samples.
var cpuSpin = proc.Func("test/cpu-spin", func(_ context.Context, n int) (int, error) {
	x := 0
	for i := range n {
		x += i * i % 7
	}
	return x, nil
})

// TestCPUProfile: with CPUProfile, each worker that exits on Close leaves
// its profile (gzipped protobuf) named for its work and its pid.
func TestCPUProfile(t *testing.T) {
	dir := t.TempDir()
	pool, err := proc.NewPool(t.Context(), cpuSpin, proc.Workers(2), proc.CPUProfile(dir))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, w := range pool.Stats().Workers {
		pids = append(pids, w.PID)
	}
	for range 4 {
		if _, err := pool.Call(t.Context(), 5_000_000); err != nil {
			t.Fatal(err)
		}
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		path := filepath.Join(dir, fmt.Sprintf("worker-test_cpu-spin-%d.pprof", pid))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("worker %d: %v", pid, err)
		}
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			t.Errorf("%s is not a gzipped profile (%d bytes)", path, len(data))
		}
	}
	// A directory that cannot hold the profile fails the start, named.
	_, err = proc.NewPool(t.Context(), cpuSpin, proc.Workers(1), proc.CPUProfile(filepath.Join(dir, "no", "such")))
	if err == nil || !strings.Contains(err.Error(), "CPUProfile") || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a pool whose workers cannot write their profiles: %v", err)
	}
}
