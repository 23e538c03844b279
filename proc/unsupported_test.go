//go:build !linux || ferrynolinux

package proc_test

import (
	"context"
	"errors"
	"iter"
	"os"
	"strings"
	"testing"

	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

var (
	unsupportedFunc = proc.Func("unsupported.func", func(_ context.Context, n int) (int, error) { return n, nil })
	unsupportedFlat = proc.FlatFunc("unsupported.flat", func(_ context.Context, n int) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) { yield(n, nil) }
	})
	unsupportedIter = proc.Iter("unsupported.iter", func(_ context.Context, n int) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) { yield(n, nil) }
	})
	unsupportedPipeline = proc.Pipeline("unsupported.pipeline", func(n int) (*pipeline.Config[int], error) {
		return pipeline.Sink(pipeline.FromSlice([]int{n}), 1), nil
	})
	unsupportedDuplex = proc.Duplex("unsupported.duplex", func(_ context.Context, _ int, in iter.Seq2[int, error], out func(int) error) error {
		return nil
	})
)

func TestMain(m *testing.M) {
	proc.Main() // not a worker: returns at once, whatever the OS
	os.Exit(m.Run())
}

// Without Linux, every front door fails at once with ErrUnsupported, which
// names the registered work and the OS; InProcess too, as it speaks the
// same protocol over a Unix socket pair. (IterateShared needs an Arena,
// which shm.NewSegmentPool refuses to make first.)
func TestUnsupportedPlatform(t *testing.T) {
	ctx := context.Background()
	doors := map[string]func(...proc.Option) error{
		"NewPool": func(o ...proc.Option) error {
			_, err := proc.NewPool(ctx, unsupportedFunc, poolOptions(o)...)
			return err
		},
		"NewFlatPool": func(o ...proc.Option) error {
			_, err := proc.NewFlatPool(ctx, unsupportedFlat, flatOptions(o)...)
			return err
		},
		"Iterate": func(o ...proc.Option) error {
			_, err := proc.Iterate(ctx, unsupportedIter, 1, iterateOptions(o)...)
			return err
		},
		"RunPipeline": func(o ...proc.Option) error {
			_, err := proc.RunPipeline(ctx, unsupportedPipeline, 1, iterateOptions(o)...)
			return err
		},
		"OpenDuplex": func(o ...proc.Option) error {
			_, err := proc.OpenDuplex(ctx, unsupportedDuplex, 1, iterateOptions(o)...)
			return err
		},
	}
	for name, open := range doors {
		for _, inProcess := range []bool{false, true} {
			var opts []proc.Option
			if inProcess {
				opts = append(opts, proc.InProcess())
			}
			err := open(opts...)
			if !errors.Is(err, proc.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("%s (InProcess %v): %v, want proc.ErrUnsupported", name, inProcess, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, `"unsupported.`) || !strings.Contains(msg, "need Linux") {
				t.Errorf("%s: %q does not name the work and say it needs Linux", name, msg)
			}
		}
	}
}

func poolOptions(o []proc.Option) []proc.PoolOption {
	var out []proc.PoolOption
	for _, x := range o {
		out = append(out, x)
	}
	return out
}

func flatOptions(o []proc.Option) []proc.FlatPoolOption {
	var out []proc.FlatPoolOption
	for _, x := range o {
		out = append(out, x)
	}
	return out
}

func iterateOptions(o []proc.Option) []proc.IterateOption {
	var out []proc.IterateOption
	for _, x := range o {
		out = append(out, x)
	}
	return out
}
