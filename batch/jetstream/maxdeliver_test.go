package jetstream_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/ferrypipe/ferry/batch"
	"github.com/ferrypipe/ferry/batch/jetstream"
)

// blackHole is a worker that takes every unit of every run announced on
// the server and drops it: it neither reports nor acknowledges, so each
// delivery ends in the ack wait. It returns how many units it took.
func blackHole(t *testing.T, url string, auth nats.Option) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nc, err := nats.Connect(url, auth)
	if err != nil {
		t.Fatal(err)
	}
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, njs.KeyValueConfig{Bucket: jetstream.RunsBucket, Storage: njs.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx, njs.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	var taken atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range watch.Updates() {
			if e == nil || e.Operation() != njs.KeyValuePut {
				continue
			}
			go func(run string) {
				cons, err := js.Consumer(ctx, jetstream.StreamUnits(run), jetstream.ConsumerName)
				if err != nil {
					return
				}
				for ctx.Err() == nil {
					msgs, err := cons.Fetch(1, njs.FetchMaxWait(100*time.Millisecond))
					if err != nil {
						continue
					}
					for range msgs.Messages() {
						taken.Add(1) // dropped: never reported, never acknowledged
					}
				}
			}(e.Key())
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = watch.Stop()
		<-done
		nc.Close()
	})
	return &taken
}

// TestDeliveriesExhausted: every delivery of every unit goes to a worker
// that drops it. After MaxDeliver deliveries each index fails with an
// *IndexError that says its deliveries were exhausted — the run ends, it
// does not wait for ever.
func TestDeliveriesExhausted(t *testing.T) {
	url, auth := startServer(t)
	taken := blackHole(t, url, auth)
	res, err := versioned.Run(t.Context(), 3, batch.ContinueOnError(),
		batch.WithBackend(jetstream.Connect(url, jetstream.NATS(auth), jetstream.AckWait(200*time.Millisecond), jetstream.MaxDeliver(2))))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 3 {
		t.Fatalf("%v: want every index failed", res)
	}
	for _, x := range res.Indices {
		var ie *batch.IndexError
		var lost *jetstream.WorkerLostError
		if x.OK || !errors.As(x.Err, &ie) || ie.Index != x.Index || !errors.As(x.Err, &lost) || !strings.Contains(x.Err.Error(), "MaxDeliver") {
			t.Errorf("index %d: %v, want a lost unit whose deliveries were exhausted (MaxDeliver)", x.Index, x.Err)
		}
	}
	if n := taken.Load(); n < 2 {
		t.Errorf("the dropping worker took %d deliveries, want at least MaxDeliver", n)
	}
}
