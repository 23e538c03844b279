package batch_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferrypipe/ferry/batch"
)

// WordStats counts words and letters over every line that survives the
// filters.
type WordStats struct {
	Words, Letters int
}

// Shout is a job defined at package level, so that worker processes
// (batch.Processes) can rebuild it from its name and parameters.
var Shout = batch.Define("example.shout", func(lines []string) (*batch.Job[string, string], error) {
	return &batch.Job[string, string]{
		Source: batch.FromSlice(lines),
		Filters: []batch.Filter[string]{
			batch.Keep("non-empty", func(_ context.Context, s string) (bool, error) { return s != "", nil }),
			batch.Map("upper", func(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil }),
		},
		Accumulators: []batch.Accumulator[string]{
			batch.Accumulate("stats", func() WordStats { return WordStats{} },
				func(st WordStats, s string) (WordStats, error) {
					st.Words += len(strings.Fields(s))
					st.Letters += len(strings.ReplaceAll(s, " ", ""))
					return st, nil
				},
				func(a, b WordStats) WordStats { return WordStats{a.Words + b.Words, a.Letters + b.Letters} }),
		},
		// The sink "writes" the items of an index and returns what it wrote.
		Sink: batch.SinkFunc[string, string](func(_ context.Context, i int, items []string) (string, error) {
			return fmt.Sprintf("%d:%s", i, strings.Join(items, "")), nil
		}),
		Version: "1",
	}, nil
})

// Define a job once, then Run it with any backend; the result has one
// entry per index, in index order, and the merged state of the
// accumulators.
func ExampleDefine() {
	lines := []string{"to be", "", "or not to be"}
	res, err := Shout.Run(context.Background(), lines, batch.WithBackend(batch.Goroutines(2)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, x := range res.Indices {
		fmt.Printf("%d ok=%v %q\n", x.Index, x.OK, x.Output)
	}
	st, _ := batch.State[WordStats](res, "stats")
	fmt.Printf("%d words, %d letters; %d done\n", st.Words, st.Letters, res.Done)
	// Output:
	// 0 ok=true "0:TO BE"
	// 1 ok=true "1:"
	// 2 ok=true "2:OR NOT TO BE"
	// 6 words, 13 letters; 3 done
}
