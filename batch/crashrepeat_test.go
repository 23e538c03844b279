package batch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/proc"
)

// sideParams: every index's sink appends it to Dir/calls after working
// for Work; index Crash kills its worker process the first time.
type sideParams struct {
	N, Crash int
	Dir      string
	Work     time.Duration
}

var sideEffects = batch.Define("ferry.batch_test/side-effects", func(p sideParams) (*batch.Job[int, int], error) {
	return &batch.Job[int, int]{
		Source: batch.FromFunc(p.N, func(_ context.Context, i int) (int, error) { return i, nil }),
		Sink: batch.SinkFunc[int, int](func(_ context.Context, i int, _ []int) (int, error) {
			for start := time.Now(); time.Since(start) < p.Work; {
				// the index's own work
			}
			if i == p.Crash && proc.IsWorker() {
				marker := filepath.Join(p.Dir, "crashed")
				if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
					if err := os.WriteFile(marker, nil, 0o644); err != nil {
						return 0, err
					}
					os.Exit(3)
				}
			}
			f, err := os.OpenFile(filepath.Join(p.Dir, "calls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			_, err = fmt.Fprintf(f, "%d\n", i)
			return i, err
		}),
	}, nil
})

// A worker that dies mid-task makes only the index that was running run
// again: the outcomes of the indices it had finished in the same task
// reached the parent before the next index began, so their sinks are
// called once each. (Indices under 20 µs may be held for up to 100 µs;
// these take 40 µs, so two of them used to share one message.)
func TestProcessesCrashRepeatsOnlyWhatRan(t *testing.T) {
	needsLinux(t)
	needsLinux(t)
	noLeaks(t)
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			p := sideParams{N: 400, Crash: 250, Dir: t.TempDir(), Work: 40 * time.Microsecond}
			res, err := sideEffects.Run(t.Context(), p, batch.WithBackend(batch.Processes(workers)), batch.Retries(1))
			if err != nil {
				t.Fatal(err)
			}
			if res.Done != p.N {
				t.Fatalf("%v, want every index done", res)
			}
			data, err := os.ReadFile(filepath.Join(p.Dir, "calls"))
			if err != nil {
				t.Fatal(err)
			}
			calls := make([]int, p.N)
			for line := range bytes.Lines(data) {
				i, err := strconv.Atoi(string(bytes.TrimSpace(line)))
				if err != nil || i < 0 || i >= p.N {
					t.Fatalf("calls file: line %q", line)
				}
				calls[i]++
			}
			for i, n := range calls {
				if n != 1 {
					t.Errorf("index %d: the sink ran %d times, want once", i, n)
				}
			}
		})
	}
}
