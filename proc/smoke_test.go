//go:build linux && !ferrynolinux

package proc_test

import (
	"context"
	"iter"
	"os"
	"testing"

	"github.com/ferrypipe/ferry/proc"
)

var count = proc.Iter("test.count", func(ctx context.Context, n int) iter.Seq2[int, error] {
	return func(yield func(int, error) bool) {
		for i := range n {
			if !yield(i, nil) {
				return
			}
		}
	}
})

func TestMain(m *testing.M) {
	proc.Main()
	code := m.Run()
	if nomain.dir != "" {
		os.RemoveAll(nomain.dir)
	}
	os.Exit(code)
}

func TestSmoke(t *testing.T) {
	it, err := proc.Iterate(t.Context(), count, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for range 3 {
		n := 0
		for v, err := range it.All(t.Context()) {
			if err != nil || v != n {
				t.Fatalf("item %d: %v %v", n, v, err)
			}
			n++
		}
		if n != 1000 {
			t.Fatalf("n=%d", n)
		}
	}
}
