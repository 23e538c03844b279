// Package shm moves large payloads between processes through shared memory,
// without serializing them and without copying them more than once.
//
// # Segment pool
//
// A SegmentPool is a fixed set of equal segments in one memfd: anonymous
// memory that nothing in /dev/shm names, so nothing is left behind when
// every process that maps it exits, however it exits. One process creates
// it and sends its FD to the others, which map it with OpenSegmentPool. A
// producer leases a free segment, writes into it (in place, or CopyIn, one
// memmove) and publishes it, which yields a small Ref to send to the
// consumer in place of the bytes; the consumer turns the Ref into a View
// whose Bytes alias the same memory, and releases it when done, which frees
// the segment for the producers:
//
//	// The producer's process (e.g. a worker):
//	pool, err := shm.OpenSegmentPool(fd, shm.AcquireTimeout(time.Minute))
//	lease, err := pool.Acquire(ctx) // waits while the consumer holds every segment
//	defer lease.Abandon()           // no-op once published
//	n := decodeInto(lease.Bytes())  // write in place: no copy at all
//	ref, err := lease.Publish(n)
//	msg = ref.Append(msg)           // ~28 bytes on the wire instead of n
//
//	// The consumer's process (e.g. the parent):
//	pool, err := shm.NewSegmentPool(8<<20, 16) // 16 segments of 8 MiB; pool.FD() goes to the worker
//	ref, err := shm.ParseRef(msg)
//	view, err := pool.View(ref)
//	use(view.Bytes()) // zero-copy
//	view.Release()    // the segment is free again, in every process
//
// Backpressure is the pool's size: when every segment is leased or held by
// views, Acquire sleeps on a futex in the shared control block (no CPU, no
// polling) until any process frees one, up to the AcquireTimeout; then it
// fails with an *AcquireError that says the consumer is holding the
// segments, never with a silent deadlock. Shutdown wakes every waiting
// producer, in every process, with ErrShutdown. Views may be released in any
// order; a View or Lease that is dropped without Release or Abandon is freed
// when it is garbage-collected, and the pool logs it once.
//
// Typed arrays travel with their element type and shape: a producer calls
// Lease.PublishTyped(shm.Float32, 3, 224, 224) after writing through
// shm.Float32s(lease.Bytes()), and the consumer reads View.Shape and
// View.Float32s, without copying.
//
// # Buffers

// A Buffer is a reference-counted block of bytes for code that passes
// large payloads along (graph frames, call results): NewBuffer leases it
// in a pool, Send gives one reference to another process, moving the
// segment itself when it was the last reference (no copy: the receiver's
// View is the same memory; View.Forward passes a viewed segment on) and
// copying it otherwise; ViewBuffer makes a received View a Buffer. The
// last Release frees the segment.
//
// # Shared constants
//
// Share puts a block of bytes (model weights, a lookup table) in a sealed,
// read-only memfd that every worker maps instead of holding its own copy;
// OpenConstant maps one received from another process, and Lookup finds a
// constant by name from anywhere in the process:
//
//	weights, err := shm.Share("weights", data) // the parent; weights.FD() goes to every worker
//	c, err := shm.OpenConstant("weights", fd)  // a worker, once
//	w, ok := shm.Lookup("weights")             // worker code, anywhere
//
// # Debug builds
//
// Built with -tags ferrydebug, the package catches use after release:
// Bytes of a released View (or of a published Lease) panics, and a process
// cannot touch a segment it does not currently hold, so a slice kept past
// Release faults instead of reading data another producer is writing. The
// checks cost nothing in normal builds.
//
// # Platforms
//
// Shared memory needs Linux (memfd_create, seals, futex). The package
// builds on every OS; elsewhere NewSegmentPool, OpenSegmentPool, Share and
// OpenConstant fail with ErrUnsupported, which names the OS.
//
// The design, the control block's layout and the rules of ownership are in
// docs/decisions/0004-shared-memory.md.
package shm
