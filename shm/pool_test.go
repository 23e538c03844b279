//go:build linux && !ferrynolinux

package shm_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrypipe/ferry/shm"
	"golang.org/x/sys/unix"
)

// Two mappings of one pool in one process act as producer and consumer,
// exactly as two processes would: only the control block connects them.
func TestProducerConsumerTwoMappings(t *testing.T) {
	const items = 300
	prod := newPool(t, 16<<10, 3)
	cons := openPool(t, prod)
	if cons.Count() != 3 || cons.SegmentSize() != 16<<10 || cons.ID() != prod.ID() {
		t.Fatalf("opened pool: count %d, segment size %d, id %#x (want 3, %d, %#x)",
			cons.Count(), cons.SegmentSize(), cons.ID(), 16<<10, prod.ID())
	}

	msgs := make(chan []byte)
	errc := make(chan error, 1)
	go func() {
		defer close(msgs)
		for i := range items {
			l, err := prod.Acquire(t.Context())
			if err != nil {
				errc <- err
				return
			}
			n := 1 + i*997%prod.SegmentSize()
			fill(l.Bytes()[:n], i)
			ref, err := l.Publish(n)
			if err != nil {
				errc <- err
				return
			}
			msgs <- ref.Append(nil)
		}
		errc <- nil
	}()

	// The consumer holds up to two views and releases them in random order,
	// so the producer regularly finds every segment in use and waits.
	rng := rand.New(rand.NewPCG(1, 2))
	type held struct {
		v    *shm.View
		item int
	}
	var views []held
	i := 0
	for msg := range msgs {
		ref, err := shm.ParseRef(msg)
		if err != nil {
			t.Fatal(err)
		}
		v, err := cons.View(ref)
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		views = append(views, held{v, i})
		if len(views) > 2 {
			k := rng.IntN(len(views))
			check(t, views[k].v.Bytes(), views[k].item)
			views[k].v.Release()
			views[k].v.Release() // idempotent
			views = append(views[:k], views[k+1:]...)
		}
		i++
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, h := range views {
		check(t, h.v.Bytes(), h.item)
		h.v.Release()
	}
	if i != items {
		t.Fatalf("received %d items, want %d", i, items)
	}
	for _, p := range []*shm.SegmentPool{prod, cons} {
		if p.Published() != items || p.Reclaimed() != items || p.Held() != 0 {
			t.Errorf("published %d, reclaimed %d, held %d; want %d, %d, 0", p.Published(), p.Reclaimed(), p.Held(), items, items)
		}
	}
	if s := cons.Stats(); s.Free != 3 || s.Leased != 0 || s.InFlight != 0 || s.Viewed != 0 || s.Waiters != 0 {
		t.Errorf("stats at the end: %+v", s)
	}
}

// Several producers and consumers on two mappings at once; run with -race.
func TestConcurrentProducersAndConsumers(t *testing.T) {
	const producers, perProducer = 4, 200
	a := newPool(t, 4096, 4)
	b := openPool(t, a)
	refs := make(chan shm.Ref, 4)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			pool := []*shm.SegmentPool{a, b}[p%2]
			for i := range perProducer {
				item := p*perProducer + i
				l, err := pool.Acquire(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					l.Abandon() // some leases are given back unpublished
					continue
				}
				fill(l.Bytes()[:64], item)
				ref, err := l.Publish(64)
				if err != nil {
					t.Error(err)
					return
				}
				ref.Shape = []int{item} // smuggle the item number to the consumer
				refs <- ref
			}
		})
	}
	var consumers sync.WaitGroup
	for c := range 2 {
		consumers.Go(func() {
			pool := []*shm.SegmentPool{b, a}[c]
			for ref := range refs {
				item := ref.Shape[0]
				ref.Shape = nil
				v, err := pool.View(ref)
				if err != nil {
					t.Error(err)
					continue
				}
				check(t, v.Bytes(), item)
				v.Release()
			}
		})
	}
	wg.Wait()
	close(refs)
	consumers.Wait()
	s := a.Stats()
	want := uint64(producers * perProducer * 9 / 10)
	if s.Published != want || s.Reclaimed != want || s.Abandoned != producers*perProducer/10 || s.Free != 4 {
		t.Errorf("stats: %+v, want %d published and reclaimed", s, want)
	}
}

func TestAcquireTimeoutWhenConsumerHoldsEverything(t *testing.T) {
	prod := newPool(t, 4096, 2, shm.AcquireTimeout(20*time.Millisecond))
	cons := openPool(t, prod)
	for range 2 {
		ref, err := prod.PublishCopy(t.Context(), []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		v, err := cons.View(ref)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Release()
	}

	start := time.Now()
	_, err := prod.Acquire(t.Context())
	var ae *shm.AcquireError
	if !errors.As(err, &ae) {
		t.Fatalf("Acquire with every view held: %v, want an *AcquireError", err)
	}
	if time.Since(start) < 20*time.Millisecond || ae.Waited < 20*time.Millisecond {
		t.Errorf("gave up after %v (Waited %v), before the 20ms timeout", time.Since(start), ae.Waited)
	}
	if ae.Count != 2 || ae.Held != 2 || ae.Leased != 0 || ae.SegmentSize != 4096 || ae.Published != 2 || ae.Reclaimed != 0 || ae.Err != nil {
		t.Errorf("AcquireError fields: %+v", ae)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"no free segment after ", "all 2 segments of 4 KiB are held by the consumer (published 2, reclaimed 0)", "release views or make the pool larger"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}

	// With a timeout of zero, it fails at once, without waiting.
	now := openPool(t, prod, shm.AcquireTimeout(0))
	_, err = now.Acquire(t.Context())
	if !errors.As(err, &ae) || ae.Waited != 0 || ae.Held != 2 {
		t.Fatalf("AcquireTimeout(0): %v", err)
	}
	if strings.Contains(err.Error(), "after") {
		t.Errorf("message %q mentions a wait", err)
	}

	// The context's deadline, when it comes first, ends the wait too.
	forever := openPool(t, prod, shm.AcquireTimeout(-1))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	_, err = forever.Acquire(ctx)
	if !errors.As(err, &ae) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past the context's deadline: %v", err)
	}
}

func TestAcquireErrorNamesLeases(t *testing.T) {
	p := newPool(t, 4096, 3, shm.AcquireTimeout(0))
	l1, _ := p.Acquire(t.Context())
	defer l1.Abandon()
	l2, _ := p.Acquire(t.Context())
	defer l2.Abandon()
	ref, err := p.PublishCopy(t.Context(), []byte("held"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Acquire(t.Context())
	var ae *shm.AcquireError
	if !errors.As(err, &ae) || ae.Leased != 2 || ae.Held != 1 {
		t.Fatalf("Acquire: %v", err)
	}
	if !strings.Contains(err.Error(), "3 segments of 4 KiB are in use: 1 held by the consumer (published 1, reclaimed 0), 2 leased by producers") {
		t.Errorf("message: %v", err)
	}
	if err := p.Discard(ref); err != nil {
		t.Fatal(err)
	}
	l3, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatalf("Acquire after Discard: %v", err)
	}
	l3.Abandon()
}

// Shutdown wakes every producer waiting for a segment, in every mapping.
func TestShutdownWakesWaitingProducers(t *testing.T) {
	a := newPool(t, 4096, 1, shm.AcquireTimeout(-1))
	b := openPool(t, a, shm.AcquireTimeout(-1))
	l, err := a.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abandon()

	errc := make(chan error, 2)
	for _, p := range []*shm.SegmentPool{a, b} {
		go func() {
			_, err := p.Acquire(context.Background())
			errc <- err
		}()
	}
	waitWaiters(t, a, 2) // both are blocked on the futex (or about to be)
	b.Shutdown()
	for range 2 {
		if err := <-errc; !errors.Is(err, shm.ErrShutdown) {
			t.Fatalf("waiting Acquire after Shutdown: %v, want ErrShutdown", err)
		}
	}
	if _, err := a.Acquire(t.Context()); !errors.Is(err, shm.ErrShutdown) {
		t.Fatalf("Acquire after Shutdown: %v", err)
	}
	if !a.Stats().Shutdown || a.Stats().Waiters != 0 {
		t.Errorf("stats after shutdown: %+v", a.Stats())
	}
	// The lease taken before the shutdown can still be published and viewed
	// (a consumer drains).
	ref, err := l.Publish(1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	v.Release()
}

func TestCancelEndsWait(t *testing.T) {
	p := newPool(t, 4096, 1, shm.AcquireTimeout(-1))
	l, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abandon()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(ctx)
		errc <- err
	}()
	waitWaiters(t, p, 1)
	cancel()
	err = <-errc
	var ae *shm.AcquireError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ae) {
		t.Fatalf("cancelled Acquire: %v, want context.Canceled", err)
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context: %v", err)
	}
}

// A release wakes a waiting producer, which gets the freed segment.
func TestReleaseWakesWaitingProducer(t *testing.T) {
	p := newPool(t, 4096, 1, shm.AcquireTimeout(-1))
	ref, err := p.PublishCopy(t.Context(), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *shm.Lease)
	go func() {
		l, err := p.Acquire(t.Context())
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitWaiters(t, p, 1)
	v.Release()
	l := <-got
	if l == nil || l.Segment() != int(ref.Segment) {
		t.Fatalf("lease %v after the release", l)
	}
	l.Abandon()
}

// Closing a mapping ends the waits in that mapping only.
func TestCloseEndsLocalWaits(t *testing.T) {
	a := newPool(t, 4096, 1, shm.AcquireTimeout(-1))
	b, err := shm.OpenSegmentPool(a.FD(), shm.AcquireTimeout(-1))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := a.Acquire(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Acquire(t.Context())
		errc <- err
	}()
	waitWaiters(t, a, 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, shm.ErrClosed) {
		t.Fatalf("Acquire in a closed mapping: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.View(shm.Ref{}); !errors.Is(err, shm.ErrClosed) {
		t.Fatalf("View after Close: %v", err)
	}
	l.Abandon()
	if l, err := a.Acquire(t.Context()); err != nil {
		t.Fatalf("the other mapping: %v", err)
	} else {
		l.Abandon()
	}
}

func TestTooLarge(t *testing.T) {
	p := newPool(t, 4096, 1)
	l, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abandon()
	err = l.CopyIn(make([]byte, 4097))
	var tl *shm.TooLargeError
	if !errors.As(err, &tl) || tl.Len != 4097 || tl.SegmentSize != 4096 {
		t.Fatalf("CopyIn of 4097 bytes: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "4097 bytes") || !strings.Contains(msg, "4 KiB") {
		t.Errorf("message %q does not name both sizes", msg)
	}
	if _, err := l.Publish(4097); !errors.As(err, &tl) {
		t.Fatalf("Publish(4097): %v", err)
	}
	if _, err := l.PublishTyped(shm.Float64, 513); !errors.As(err, &tl) || tl.Len != 4104 {
		t.Fatalf("PublishTyped(float64, 513): %v", err)
	}
	// The lease is still usable after the failures.
	if err := l.CopyIn(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}

	// PublishCopy fails at once, without waiting for a segment.
	big := make([]byte, 9<<20+1)
	_, err = p.PublishCopy(t.Context(), big)
	if !errors.As(err, &tl) {
		t.Fatalf("PublishCopy of 9 MiB: %v", err)
	}
	if want := "9437185 bytes (9.0 MiB) do not fit in a segment of 4 KiB"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestSegmentSizeRoundedToPages(t *testing.T) {
	p := newPool(t, 1000, 2)
	if p.SegmentSize() != 4096 {
		t.Fatalf("segment size %d, want 4096", p.SegmentSize())
	}
	for _, c := range []struct{ size, count int }{{0, 1}, {-1, 1}, {4096, 0}, {4096, -3}, {4096, 1 << 21}, {1 << 62, 4}} {
		if p, err := shm.NewSegmentPool(c.size, c.count); err == nil {
			p.Close()
			t.Errorf("NewSegmentPool(%d, %d) succeeded", c.size, c.count)
		}
	}
}

func TestViewRejectsBadRefs(t *testing.T) {
	p := newPool(t, 4096, 2)
	other := newPool(t, 4096, 2)
	ref, err := p.PublishCopy(t.Context(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	bad := func(name string, r shm.Ref, reason string) {
		t.Helper()
		_, err := p.View(r)
		var re *shm.RefError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want a *RefError saying %q", name, err, reason)
		}
	}
	r := ref
	r.Pool = other.ID()
	bad("other pool", r, "belongs to pool")
	r = ref
	r.Segment = 2
	bad("out of range", r, "the pool has 2 segments")
	r = ref
	r.Len = 4
	bad("wrong length", r, "5 bytes were published")
	r = ref
	r.Len = 5000
	bad("longer than a segment", r, "longer than a segment")
	r = ref
	r.Segment = 1 - ref.Segment
	bad("free segment", r, "stale")
	r = ref
	r.DType, r.Shape = shm.Float32, []int{2}
	bad("shape mismatch", r, "does not make 5 bytes")

	v, err := p.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Bytes()) != "hello" || v.Len() != 5 || v.Ref().Segment != ref.Segment {
		t.Fatalf("view: %q", v.Bytes())
	}
	bad("viewed twice", ref, "already viewed")
	v.Release()
	bad("released", ref, "stale")
	if err := p.Discard(ref); err == nil {
		t.Errorf("Discard of a released ref succeeded")
	}

	// The segment is reused with a new generation: the old Ref stays stale.
	ref2, err := p.PublishCopy(t.Context(), []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	if ref2.Segment != ref.Segment || ref2.Gen == ref.Gen {
		t.Fatalf("reuse: %v after %v", ref2, ref)
	}
	bad("old generation", ref, "stale")
	if err := p.Discard(ref2); err != nil {
		t.Fatal(err)
	}
}

func TestDiscard(t *testing.T) {
	p := newPool(t, 4096, 1)
	ref, err := p.PublishCopy(t.Context(), []byte("dropped"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Discard(ref); err != nil {
		t.Fatal(err)
	}
	if p.Held() != 0 || p.Reclaimed() != 1 {
		t.Fatalf("held %d, reclaimed %d after Discard", p.Held(), p.Reclaimed())
	}
	// Discarding the Ref of a View (its consumer died): the View's Release
	// then changes nothing.
	ref, _ = p.PublishCopy(t.Context(), []byte("viewed"))
	v, err := p.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Discard(ref); err != nil {
		t.Fatal(err)
	}
	l, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	v.Release() // must not free the new lease's segment
	if s := p.Stats(); s.Leased != 1 || s.Reclaimed != 2 {
		t.Fatalf("stats: %+v", s)
	}
	l.Abandon()
}

func TestLeaseLifecycle(t *testing.T) {
	p := newPool(t, 4096, 1)
	l, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Bytes()) != 4096 {
		t.Fatalf("lease of %d bytes", len(l.Bytes()))
	}
	ref, err := l.Publish(0)
	if err != nil {
		t.Fatal(err)
	}
	l.Abandon() // no-op after Publish
	if _, err := l.Publish(0); err == nil {
		t.Fatal("second Publish succeeded")
	}
	if err := l.CopyIn([]byte("x")); err == nil {
		t.Fatal("CopyIn after Publish succeeded")
	}
	if p.Held() != 1 || p.Stats().Abandoned != 0 {
		t.Fatalf("Abandon after Publish freed the segment: %+v", p.Stats())
	}
	v, err := p.View(ref)
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != 0 {
		t.Fatalf("empty item: %d bytes", v.Len())
	}
	v.Release()
	l, err = p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l.Abandon()
	l.Abandon()
	if s := p.Stats(); s.Free != 1 || s.Abandoned != 1 {
		t.Fatalf("after Abandon: %+v", s)
	}
}

// ReclaimOwner frees what a dead process held (here a fake owner id).
func TestReclaimOwner(t *testing.T) {
	p := newPool(t, 4096, 4)
	dead := openPool(t, p, shm.Owner(4242))
	alive := openPool(t, p, shm.Owner(7))
	l1, _ := dead.Acquire(t.Context()) // leased by the dead producer
	l2, _ := dead.Acquire(t.Context())
	ref, _ := l2.Publish(1) // published by it, never viewed
	ref3, _ := alive.PublishCopy(t.Context(), []byte("x"))
	v3, err := dead.View(ref3) // viewed by the dead consumer
	if err != nil {
		t.Fatal(err)
	}
	ref4, _ := dead.PublishCopy(t.Context(), []byte("y"))
	v4, err := alive.View(ref4) // published by the dead one, viewed by a live one: kept
	if err != nil {
		t.Fatal(err)
	}
	if n := p.ReclaimOwner(4242); n != 3 {
		t.Fatalf("ReclaimOwner freed %d segments, want 3", n)
	}
	if s := p.Stats(); s.Free != 3 || s.Viewed != 1 || s.Reclaimed != 2 || s.Abandoned != 1 {
		t.Fatalf("stats after ReclaimOwner: %+v", s)
	}
	if _, err := p.View(ref); err == nil {
		t.Fatal("View of a reclaimed ref succeeded")
	}
	if _, err := l1.Publish(1); err == nil || !strings.Contains(err.Error(), "reclaimed") {
		t.Fatalf("Publish of a reclaimed lease: %v", err)
	}
	v3.Release()
	check := v4.Bytes()
	if string(check) != "y" {
		t.Fatalf("live view changed: %q", check)
	}
	v4.Release()
	if s := p.Stats(); s.Free != 4 {
		t.Fatalf("stats at the end: %+v", s)
	}
}

// 10,000 cycles leave the number of fds and of mappings where they were.
func TestCyclesKeepResourcesFlat(t *testing.T) {
	name := memfdName(t)
	prod := newPool(t, 64<<10, 4)
	cons := openPool(t, prod)
	cycle := func(i int) {
		l, err := prod.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		l.Bytes()[0] = byte(i)
		ref, err := l.Publish(1 + i%1000)
		if err != nil {
			t.Fatal(err)
		}
		v, err := cons.View(ref)
		if err != nil {
			t.Fatal(err)
		}
		if v.Bytes()[0] != byte(i) {
			t.Fatalf("cycle %d: read %d", i, v.Bytes()[0])
		}
		v.Release()
	}
	for i := range 2000 { // warm up: the heap (and the race detector's shadow of it) settle
		cycle(i)
	}
	runtime.GC()
	fds := fdCount(t)
	lines, named := maps(t, name)
	files := fileMappings(t)
	for i := range 10_000 {
		cycle(i)
	}
	runtime.GC()
	fds2 := fdCount(t)
	lines2, named2 := maps(t, name)
	files2 := fileMappings(t)
	t.Logf("fds %d → %d, /proc/self/maps lines %d → %d (of files %d → %d, of the pool %d → %d)",
		fds, fds2, lines, lines2, files, files2, len(named), len(named2))
	if fds2 != fds {
		t.Errorf("fds: %d before, %d after 10,000 cycles", fds, fds2)
	}
	if len(named2) != len(named) || files2 != files {
		t.Errorf("mappings of files: %d before, %d after (of the pool: %d, %d)", files, files2, len(named), len(named2))
	}
	// The pool maps nothing per cycle; the Go runtime (heap, stacks) may add
	// an anonymous mapping or two, and under the race detector its shadow
	// memory a few more.
	slack := 2
	if raceEnabled {
		slack = 8
	}
	if lines2 > lines+slack {
		t.Errorf("/proc/self/maps: %d lines before, %d after 10,000 cycles", lines, lines2)
	}
	if s := prod.Stats(); s.Published != 12_000 || s.Reclaimed != 12_000 || s.Free != 4 {
		t.Errorf("stats: %+v", s)
	}
}

// Close unmaps the pool and closes its fd: nothing of it remains in
// /proc/self/maps or /proc/self/fd; OpenSegmentPool leaves the caller's fd
// alone.
func TestCloseLeavesNothing(t *testing.T) {
	name := memfdName(t)
	fds := fdCount(t)
	a, err := shm.NewSegmentPool(4096, 4, shm.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	callerFD, err := unix.FcntlInt(uintptr(a.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := shm.OpenSegmentPool(callerFD)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := a.PublishCopy(t.Context(), []byte("x"))
	v, _ := b.View(ref)
	if _, named := maps(t, name); len(named) < 2 {
		t.Fatalf("two mappings of the pool, /proc/self/maps shows %q", named)
	}
	if n := fdsNamed(t, name); n != 3 {
		t.Fatalf("%d fds of the pool, want 3 (pool, its mapping's dup, the caller's)", n)
	}
	v.Release()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, named := maps(t, name); len(named) != 0 {
		t.Fatalf("after Close, /proc/self/maps still shows %q", named)
	}
	var st unix.Stat_t
	if err := unix.Fstat(callerFD, &st); err != nil {
		t.Fatalf("the caller's fd was closed by the pool: %v", err)
	}
	unix.Close(callerFD)
	if n := fdsNamed(t, name); n != 0 {
		t.Fatalf("%d fds of the pool remain", n)
	}
	if got := fdCount(t); got != fds {
		t.Fatalf("%d fds before, %d after", fds, got)
	}
	if s := a.Stats(); s != (shm.Stats{}) || a.Published() != 0 || a.Held() != 0 {
		t.Errorf("stats after Close: %+v", s)
	}
	if _, err := a.Acquire(t.Context()); !errors.Is(err, shm.ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
}

func TestOpenRejectsOtherFiles(t *testing.T) {
	fd, err := unix.MemfdCreate("not-a-pool", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := shm.OpenSegmentPool(fd); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("empty memfd: %v", err)
	}
	unix.Ftruncate(fd, 8192)
	unix.Pwrite(fd, []byte("garbage!"), 0)
	if _, err := shm.OpenSegmentPool(fd); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("garbage memfd: %v", err)
	}
	if _, err := shm.OpenSegmentPool(-1); err == nil {
		t.Errorf("fd -1: no error")
	}
	// A pool whose file was copied without its seals is refused: a peer
	// could shrink it under our mapping.
	p := newPool(t, 4096, 1)
	hdr := make([]byte, 8192)
	unix.Pread(p.FD(), hdr, 0)
	unix.Pwrite(fd, hdr, 0)
	if _, err := shm.OpenSegmentPool(fd); err == nil || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("unsealed copy of a pool: %v", err)
	}
	if fdsNamed(t, "not-a-pool") != 1 {
		t.Errorf("failed opens leaked fds")
	}
}

// A producer waiting for a segment sleeps in the kernel: 200ms of waiting
// (two waiters, in two mappings) cost next to no CPU. A polling loop would
// burn at least the 200ms.
func TestWaitingUsesNoCPU(t *testing.T) {
	a := newPool(t, 4096, 1, shm.AcquireTimeout(200*time.Millisecond))
	b := openPool(t, a, shm.AcquireTimeout(200*time.Millisecond))
	l, err := a.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Abandon()
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, start := cpu(), time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := b.Acquire(t.Context())
		errc <- err
	}()
	_, err = a.Acquire(t.Context())
	var ae *shm.AcquireError
	if !errors.As(err, &ae) || !errors.As(<-errc, &ae) {
		t.Fatalf("Acquire: %v", err)
	}
	used, wall := cpu()-before, time.Since(start)
	t.Logf("waited %v using %v of CPU", wall, used)
	if used > wall/4 {
		t.Errorf("waiting for %v used %v of CPU", wall, used)
	}
}
