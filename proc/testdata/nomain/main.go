// Command nomain registers work for proc workers but forgets to call
// proc.Main first in main, for the tests of ErrNoBootstrap: started as a
// worker, it runs its own main instead of serving.
//
// It first writes an empty file named after its pid into $RT_NOMAIN_DIR
// (if set), so that a test can count how many copies of it ran main. Then,
// with RT_NOMAIN_MODE=sleep, it sleeps for a minute; otherwise it starts a
// pool of its own, which without ferry's guard would start the same
// program as its worker, and so on: a cascade. With RT_NOMAIN_MODE=slowinit
// it is a correct worker program whose package initialization takes 2.5 s
// (longer than the bootstrap wait): it calls proc.Main first and serves.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferrypipe/ferry/proc"
)

// square has the name of a function the tests register.
var square = proc.Func("rt.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

// slowInit takes 2.5 s to initialize with RT_NOMAIN_MODE=slowinit.
var slowInit = func() bool {
	if os.Getenv("RT_NOMAIN_MODE") == "slowinit" {
		time.Sleep(2500 * time.Millisecond)
		return true
	}
	return false
}()

func main() {
	if slowInit {
		proc.Main()
	}
	if dir := os.Getenv("RT_NOMAIN_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(os.Getpid())), nil, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "nomain:", err)
		}
	}
	switch os.Getenv("RT_NOMAIN_MODE") {
	case "sleep":
		time.Sleep(time.Minute)
		fmt.Println("nomain: slept a minute")
	default:
		pool, err := proc.NewPool(context.Background(), square, proc.Workers(1))
		if err != nil {
			fmt.Fprintln(os.Stderr, "nomain:", err)
			os.Exit(1)
		}
		fmt.Println("nomain: started a pool of its own")
		pool.Close()
	}
}
