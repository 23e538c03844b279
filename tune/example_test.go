package tune_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ferrypipe/ferry/tune"
)

// Profile two stages on a sample: parse is bound by the CPU, fetch waits
// on a service that takes four requests at a time.
func ExampleProfile() {
	ctx := context.Background()
	service := make(chan struct{}, 4)
	in := tune.Sample(strings.Fields("3 1 4 1 5 9 2 6 5 3 5 8 9 7 9 3"))
	nums := tune.Stage(in, "parse", func(_ context.Context, s string) (int, error) {
		var n int
		_, err := fmt.Sscan(s, &n)
		return n, err
	})
	tune.Stage(nums, "fetch", func(ctx context.Context, n int) (string, error) {
		service <- struct{}{}
		defer func() { <-service }()
		time.Sleep(time.Millisecond) // the service's latency
		return fmt.Sprint(n), nil
	})
	report, err := tune.Profile(ctx, in, tune.Concurrencies(1, 2, 4, 8, 16))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(report) // fetch saturates at 4; tuneplot.Save(report, "profile.svg") draws it
}
