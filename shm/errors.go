package shm

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ferrypipe/ferry/internal/platform"
)

// ErrShutdown is returned by Acquire once the pool has been shut down (by
// any process that maps it), including to producers that were waiting.
var ErrShutdown = errors.New("shm: segment pool is shut down")

// ErrClosed is returned by operations on a SegmentPool or Constant after its
// Close.
var ErrClosed = errors.New("shm: closed")

// ErrUnsupported is the cause of the errors of NewSegmentPool,
// OpenSegmentPool, Share and OpenConstant on an OS other than Linux: shared
// memory is made of Linux's memfds, seals and futexes. Its message names
// the OS. It is the same error as proc.ErrUnsupported, and matches
// errors.ErrUnsupported.
var ErrUnsupported = platform.ErrUnsupported

// ErrNameInUse is returned by Share and OpenConstant when this process
// already has a constant registered under the name.
var ErrNameInUse = errors.New("shm: constant name already registered in this process")

// AcquireError reports that no segment became free before the acquire
// timeout (or the context's deadline). It is almost always a consumer that
// holds on to its views: release them sooner, or make the pool larger.
type AcquireError struct {
	Count       int           // segments in the pool
	SegmentSize int           // bytes per segment
	Held        int           // segments published and not yet released by the consumer
	Leased      int           // segments leased by producers (not yet published)
	Published   uint64        // segments ever published
	Reclaimed   uint64        // published segments ever released
	Waited      time.Duration // how long Acquire waited (0: AcquireTimeout(0))
	// Err is context.DeadlineExceeded when the context's deadline ended the
	// wait, nil when the pool's acquire timeout did.
	Err error
}

func (e *AcquireError) Error() string {
	var b strings.Builder
	b.WriteString("shm: no free segment")
	if e.Waited > 0 {
		fmt.Fprintf(&b, " after %v", e.Waited.Round(time.Millisecond))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	counters := fmt.Sprintf("(published %d, reclaimed %d)", e.Published, e.Reclaimed)
	if e.Held == e.Count {
		fmt.Fprintf(&b, ": all %d segments of %s are held by the consumer %s: release views or make the pool larger",
			e.Count, sizeString(e.SegmentSize), counters)
	} else {
		fmt.Fprintf(&b, ": %d segments of %s are in use: %d held by the consumer %s, %d leased by producers: release views, publish or abandon leases, or make the pool larger",
			e.Count, sizeString(e.SegmentSize), e.Held, counters, e.Leased)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *AcquireError) Unwrap() error { return e.Err }

// TooLargeError reports data that does not fit in one segment.
type TooLargeError struct {
	Len         int // bytes that were to be written or published
	SegmentSize int // bytes per segment
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("shm: %s do not fit in a segment of %s", sizeString(e.Len), sizeString(e.SegmentSize))
}

// RefError reports a Ref that does not designate a published segment of the
// pool: from another pool, out of range, already released (stale), already
// viewed, or with a length that differs from what was published.
type RefError struct {
	Ref    Ref
	Reason string
}

func (e *RefError) Error() string {
	return fmt.Sprintf("shm: invalid ref to segment %d (generation %d, %d bytes): %s", e.Ref.Segment, e.Ref.Gen, e.Ref.Len, e.Reason)
}

// sizeString formats a byte count for error messages: "8 MiB" when exact,
// "9437185 bytes (9.0 MiB)" otherwise.
func sizeString(n int) string {
	units := []struct {
		size int
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%d bytes (%.1f %s)", n, float64(n)/float64(u.size), u.name)
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
