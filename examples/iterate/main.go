// Command iterate reads "shards" in a worker process with proc.Iterate and
// feeds them to an in-process pipeline, for three epochs on one warm
// worker. It shows that a worker crash is reported, not hidden: the last
// epoch asks the worker to crash half way.
//
//	go run ./examples/iterate
package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"

	"github.com/ferrypipe/ferry/internal/logs"
	"github.com/ferrypipe/ferry/pipeline"
	"github.com/ferrypipe/ferry/proc"
)

// Args tells the worker what to read.
type Args struct {
	Shards, PerShard int
	CrashAt          int // a record index at which the worker exits, or -1
}

// Record is one record of a shard.
type Record struct {
	Shard, Index int
	Payload      []byte
}

// Shards stands for a reader of data files that might crash in C code: it
// runs in a worker process.
var Shards = proc.Iter("examples.shards", func(ctx context.Context, a Args) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for s := range a.Shards {
			for i := range a.PerShard {
				if s*a.PerShard+i == a.CrashAt {
					fmt.Fprintln(os.Stderr, "reader: corrupt shard, giving up")
					os.Exit(7)
				}
				if !yield(Record{Shard: s, Index: i, Payload: make([]byte, 256)}, nil) {
					return
				}
			}
		}
	}
})

func main() {
	proc.Main()
	logs.Setup() // ferry's log lines on stderr; FERRY_LOG_LEVEL sets the level
	ctx := context.Background()
	if err := run(ctx, Args{Shards: 8, PerShard: 500, CrashAt: -1}, 2); err != nil {
		logs.Fatal(err)
	}
	err := run(ctx, Args{Shards: 8, PerShard: 500, CrashAt: 2000}, 1)
	var we *proc.WorkerError
	if !errors.As(err, &we) {
		logs.Fatal(fmt.Errorf("want the worker's crash reported, got %v", err))
	}
	fmt.Printf("crash reported: worker %s (pid %d) exited with status %d\n", we.Name, we.PID, we.ExitCode)
}

// run reads the shards in a worker for some epochs and sums payload sizes
// in a pipeline.
func run(ctx context.Context, a Args, epochs int) error {
	it, err := proc.Iterate(ctx, Shards, a, proc.BufferSize(256))
	if err != nil {
		return err
	}
	defer it.Close()
	size := pipeline.Pipe(pipeline.From[Record](it), func(_ context.Context, r Record) (int, error) { return len(r.Payload), nil },
		pipeline.Concurrency(2))
	p, err := pipeline.Build(pipeline.Sink(size, 64))
	if err != nil {
		return err
	}
	defer p.Close()
	for e := range epochs {
		n, bytes := 0, 0
		for b, err := range p.Epoch(ctx) {
			if err != nil {
				return err
			}
			n++
			bytes += b
		}
		fmt.Printf("epoch %d: %d records, %d bytes, from worker pid %d\n", e, n, bytes, it.PID())
	}
	return nil
}
