//go:build linux && !ferrynolinux

package shm_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ferrypipe/ferry/shm"
)

// A producer and a consumer share a pool. Here both run in one process,
// each with its own mapping; across processes, the producer would receive
// pool.FD() over a Unix socket (SCM_RIGHTS) or as an inherited file, and the
// Ref's encoding would travel in a message.
func ExampleSegmentPool() {
	ctx := context.Background()
	pool, err := shm.NewSegmentPool(1<<20, 4, shm.AcquireTimeout(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// The producer's side.
	producer, err := shm.OpenSegmentPool(pool.FD())
	if err != nil {
		log.Fatal(err)
	}
	defer producer.Close()
	lease, err := producer.Acquire(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer lease.Abandon() // gives the segment back if it is not published
	n := copy(lease.Bytes(), "a large payload, written in place")
	ref, err := lease.Publish(n)
	if err != nil {
		log.Fatal(err)
	}
	msg := ref.Append(nil)

	// The consumer's side.
	ref, err = shm.ParseRef(msg)
	if err != nil {
		log.Fatal(err)
	}
	view, err := pool.View(ref)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (%d bytes in the message)\n", view.Bytes(), len(msg))
	view.Release()
	fmt.Println("held:", pool.Held())
	// Output:
	// a large payload, written in place (28 bytes in the message)
	// held: 0
}

// A tensor travels with its element type and shape.
func ExampleLease_PublishTyped() {
	pool, err := shm.NewSegmentPool(1<<20, 2)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	lease, err := pool.Acquire(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	img := shm.Float32s(lease.Bytes())[:2*3] // written in place
	for i := range img {
		img[i] = float32(i) / 2
	}
	ref, err := lease.PublishTyped(shm.Float32, 2, 3)
	if err != nil {
		log.Fatal(err)
	}

	view, err := pool.View(ref)
	if err != nil {
		log.Fatal(err)
	}
	defer view.Release()
	fmt.Println(view.DType(), view.Shape(), view.Float32s())
	// Output: float32 [2 3] [0 0.5 1 1.5 2 2.5]
}

// A constant shared by every worker: the parent shares it once; each worker
// opens it from the fd it received, and any code in the worker finds it by
// name.
func ExampleShare() {
	weights, err := shm.Share("example-weights", []byte{1, 2, 3, 4})
	if err != nil {
		log.Fatal(err)
	}
	defer weights.Close()
	// weights.FD() goes to every worker, which calls
	// shm.OpenConstant("example-weights", fd) once.

	if w, ok := shm.Lookup("example-weights"); ok {
		fmt.Println(w.Name(), w.Bytes())
	}
	// Output: example-weights [1 2 3 4]
}
