package pipeline_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrypipe/ferry/pipeline"
)

// TestAggregateFlushAfter feeds a batch stage from a channel that sends
// fewer items than a batch and then waits: the partial batch must come out
// after the FlushAfter duration, while the channel is still open.
func TestAggregateFlushAfter(t *testing.T) {
	for _, dropLast := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropLast=%v", dropLast), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ch := make(chan int)
				opts := []pipeline.StageOption{pipeline.FlushAfter(2 * time.Second)}
				if dropLast {
					opts = append(opts, pipeline.DropLast())
				}
				p, err := pipeline.Build(pipeline.Sink(pipeline.Aggregate(pipeline.FromChan(ch), 10, opts...), 1))
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				ctx := t.Context()
				start := time.Now()
				go func() {
					for i := range 3 {
						ch <- i
					}
				}()
				b, err := p.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(b, []int{0, 1, 2}) || time.Since(start) != 2*time.Second {
					t.Fatalf("got %v after %v, want [0 1 2] after 2s, the channel still open", b, time.Since(start))
				}

				// The clock starts again with the next batch's first item.
				time.Sleep(5 * time.Second)
				start = time.Now()
				go func() {
					for i := 3; i < 15; i++ {
						ch <- i
						if i == 13 {
							time.Sleep(time.Second)
						}
					}
				}()
				if b, err = p.Next(ctx); err != nil || !slices.Equal(b, seq(13)[3:]) || time.Since(start) != 0 {
					t.Fatalf("got %v, %v after %v; want the full batch 3..12 at once", b, err, time.Since(start))
				}
				if b, err = p.Next(ctx); err != nil || !slices.Equal(b, []int{13, 14}) || time.Since(start) != 2*time.Second {
					t.Fatalf("got %v, %v after %v; want [13 14] 2s after 13 arrived (14 came at 1s)", b, err, time.Since(start))
				}

				// What is left at the end of the epoch follows DropLast.
				ch <- 15
				close(ch)
				b, err = p.Next(ctx)
				switch {
				case dropLast && !errors.Is(err, pipeline.ErrEpochEnd):
					t.Fatalf("got %v, %v; want the end of the epoch, [15] dropped", b, err)
				case !dropLast && (err != nil || !slices.Equal(b, []int{15})):
					t.Fatalf("got %v, %v; want [15] at the end of the epoch", b, err)
				}
				if time.Since(start) != 2*time.Second {
					t.Fatalf("the end of the epoch waited for FlushAfter: %v", time.Since(start))
				}
			})
		})
	}
}

func TestAggregateWithFlushAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan int)
		p, err := pipeline.Build(pipeline.Sink(pipeline.AggregateWith(pipeline.FromChan(ch), &sumAgg{}, pipeline.FlushAfter(time.Second)), 1))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		start := time.Now()
		go func() { ch <- 5; ch <- 6 }()
		if sum, err := p.Next(t.Context()); err != nil || sum != 11 || time.Since(start) != time.Second {
			t.Fatalf("got %d, %v after %v; want the sum 11 after 1s", sum, err, time.Since(start))
		}
		close(ch)
	})
}

func TestFlushAfterNegative(t *testing.T) {
	p, err := pipeline.Build(pipeline.Sink(pipeline.Aggregate(pipeline.FromSlice(seq(3)), 2, pipeline.FlushAfter(-time.Second)), 1))
	if err == nil {
		p.Close()
		t.Fatal("Build accepted FlushAfter(-1s)")
	}
	if want := `stage "aggregate": FlushAfter(-1s)`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

// TestFromChanSendsWhatItHolds checks that an item received from a channel
// reaches the consumer while the channel is quiet, not with the next item.
func TestFromChanSendsWhatItHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan int)
		p, err := pipeline.Build(pipeline.Sink(pipeline.FromChan(ch), 1))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for i := range 3 {
			go func() { ch <- i }()
			if v, err := p.Next(t.Context()); err != nil || v != i {
				t.Fatalf("got %d, %v; want %d", v, err, i)
			}
		}
		close(ch)
	})
}
