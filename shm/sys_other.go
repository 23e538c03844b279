//go:build !linux || ferrynolinux

package shm

import (
	"sync/atomic"
	"time"

	"github.com/ferrypipe/ferry/internal/platform"
)

// Without Linux there are no memfds, seals or futexes: NewSegmentPool,
// OpenSegmentPool, Share and OpenConstant fail with ErrUnsupported before
// they call any of these, which fail the same way.

// Seals of a memfd, with Linux's values.
const (
	sealSeal   = 1
	sealShrink = 2
	sealGrow   = 4
	sealWrite  = 8
)

// Protections of a mapping, with Linux's values.
const (
	protNone      = 0
	protRead      = 1
	protReadWrite = 3
)

func memfdCreate(string) (int, error)                 { return -1, platform.ErrUnsupported }
func dupFD(int) (int, error)                          { return -1, platform.ErrUnsupported }
func closeFD(int) error                               { return platform.ErrUnsupported }
func ftruncate(int, int64) error                      { return platform.ErrUnsupported }
func pread(int, []byte, int64) (int, error)           { return 0, platform.ErrUnsupported }
func pwriteAll(int, []byte) error                     { return platform.ErrUnsupported }
func fileSize(int) (int64, error)                     { return 0, platform.ErrUnsupported }
func addSeals(int, int) error                         { return platform.ErrUnsupported }
func getSeals(int) (int, error)                       { return 0, platform.ErrUnsupported }
func mmapShared(int, int, int) ([]byte, error)        { return nil, platform.ErrUnsupported }
func munmap([]byte) error                             { return platform.ErrUnsupported }
func mprotect([]byte, int) error                      { return platform.ErrUnsupported }
func futexWait(*atomic.Uint32, uint32, time.Duration) {}
func futexWakeAll(*atomic.Uint32)                     {}
