//go:build linux && !ferrynolinux

package batch_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferrypipe/ferry/batch"
)

// Processes runs the same job in worker processes (the program calls
// proc.Main first: here, TestMain does). Each worker is stamped on the
// results it returned.
func ExampleProcesses() {
	res, err := Shout.Run(context.Background(), []string{"ferry", "moves", "data"},
		batch.WithBackend(batch.Processes(2)), batch.Retries(1), batch.ContinueOnError())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Outputs(), res.Done, res.Failed, strings.HasPrefix(res.Indices[0].Worker, "pid "))
	// Output:
	// [0:FERRY 1:MOVES 2:DATA] 3 0 true
}
