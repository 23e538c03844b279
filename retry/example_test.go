package retry_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferrypipe/ferry/retry"
)

// The waits before each retry, without jitter: they double up to Max.
func ExampleBackoff_Delay() {
	b := retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	for n := 1; n <= 6; n++ {
		fmt.Print(b.Delay(n), " ")
	}
	fmt.Println()
	// Output: 100ms 200ms 400ms 800ms 1s 1s
}

// An error no retry can cure is marked permanent where it is made; the
// mark survives wrapping (and, in proc and batch, the process boundary).
func ExamplePermanent() {
	parse := func(b []byte) error {
		if len(b) == 0 {
			return retry.Permanent(errors.New("empty record"))
		}
		return nil
	}
	err := fmt.Errorf("record 7: %w", parse(nil))
	fmt.Println(err, retry.IsPermanent(err))
	fmt.Println(retry.IsPermanent(errors.New("connection reset")))
	// Output:
	// record 7: empty record true
	// false
}
