package shm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ferrypipe/ferry/internal/platform"
)

// constantSeals are the seals Share applies: the contents and the size of a
// constant can never change again, in any process.
const constantSeals = sealShrink | sealGrow | sealWrite | sealSeal

// requiredSeals are the seals OpenConstant insists on: no writes (the bytes
// are immutable) and no resizing (a shrink would make reads fault).
const requiredSeals = sealShrink | sealGrow | sealWrite

// A Constant is a named, immutable block of bytes in shared memory (SGN's
// to_shm): model weights or a lookup table that every worker process maps
// instead of holding its own copy. Share creates one; its FD goes to the
// workers, which map it with OpenConstant; code anywhere in a process finds
// it by name with Lookup.
//
// The memory is a sealed memfd (no writes, no resizing, no more seals) mapped
// read-only: writing to Bytes faults, in every process.
type Constant struct {
	name string
	fd   int
	data []byte // the read-only mapping; empty and unmapped for a zero-length constant

	mu     sync.Mutex
	closed bool
}

var registry = struct {
	sync.RWMutex
	m map[string]*Constant
}{m: map[string]*Constant{}}

// Share copies data into a new sealed memfd, maps it read-only and
// registers it in this process under name (see Lookup). It fails with
// ErrNameInUse if name is already registered. The caller may reuse data
// afterwards.
func Share(name string, data []byte) (*Constant, error) {
	if name == "" {
		return nil, errors.New("shm: Share: empty name")
	}
	if !platform.Supported {
		return nil, fmt.Errorf("shm: Share %q: %w", name, ErrUnsupported)
	}
	if _, ok := Lookup(name); ok {
		return nil, fmt.Errorf("shm: Share %q: %w", name, ErrNameInUse)
	}
	fd, err := memfdCreate("ferry-const:" + name)
	if err != nil {
		return nil, fmt.Errorf("shm: Share %q: memfd_create: %w", name, err)
	}
	if err := fill(fd, data); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: Share %q: writing %s: %w", name, sizeString(len(data)), err)
	}
	if err := addSeals(fd, constantSeals); err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: Share %q: sealing: %w", name, err)
	}
	c, err := mapConstant(name, fd, len(data))
	if err != nil {
		closeFD(fd)
		return nil, fmt.Errorf("shm: Share %q: %w", name, err)
	}
	if err := register(c); err != nil {
		c.unmap()
		return nil, fmt.Errorf("shm: Share %q: %w", name, err)
	}
	return c, nil
}

// fill writes data to the new memfd. write(2) rather than a writable
// mapping: F_SEAL_WRITE cannot be applied while a writable shared mapping
// exists.
func fill(fd int, data []byte) error {
	if err := ftruncate(fd, int64(len(data))); err != nil {
		return err
	}
	return pwriteAll(fd, data)
}

// OpenConstant maps a constant received from another process (the fd of its
// Constant, sent over SCM_RIGHTS or passed with exec's ExtraFiles) read-only
// and registers it under name. The fd must be sealed against writing,
// shrinking and growing, as Share leaves it. OpenConstant duplicates fd:
// the caller keeps ownership of fd. It fails with ErrNameInUse if name is
// already registered.
func OpenConstant(name string, fd int) (*Constant, error) {
	if name == "" {
		return nil, errors.New("shm: OpenConstant: empty name")
	}
	if !platform.Supported {
		return nil, fmt.Errorf("shm: OpenConstant %q: %w", name, ErrUnsupported)
	}
	nfd, err := dupFD(fd)
	if err != nil {
		return nil, fmt.Errorf("shm: OpenConstant %q: dup fd %d: %w", name, fd, err)
	}
	fail := func(format string, args ...any) (*Constant, error) {
		closeFD(nfd)
		return nil, fmt.Errorf("shm: OpenConstant %q from fd %d: "+format, append([]any{name, fd}, args...)...)
	}
	seals, err := getSeals(nfd)
	if err != nil {
		return fail("reading seals (not a memfd?): %w", err)
	}
	if seals&requiredSeals != requiredSeals {
		return fail("not sealed against writing and resizing (seals %#x)", seals)
	}
	size, err := fileSize(nfd)
	if err != nil {
		return fail("fstat: %w", err)
	}
	c, err := mapConstant(name, nfd, int(size))
	if err != nil {
		return fail("%w", err)
	}
	if err := register(c); err != nil {
		c.unmap()
		return nil, fmt.Errorf("shm: OpenConstant %q: %w", name, err)
	}
	return c, nil
}

func mapConstant(name string, fd, size int) (*Constant, error) {
	c := &Constant{name: name, fd: fd, data: []byte{}}
	if size > 0 {
		data, err := mmapShared(fd, size, protRead)
		if err != nil {
			return nil, fmt.Errorf("mapping %s read-only: %w", sizeString(size), err)
		}
		c.data = data
	}
	return c, nil
}

func register(c *Constant) error {
	registry.Lock()
	defer registry.Unlock()
	if _, ok := registry.m[c.name]; ok {
		return ErrNameInUse
	}
	registry.m[c.name] = c
	return nil
}

// Lookup returns the constant registered in this process under name, by
// Share or OpenConstant, and whether there is one.
func Lookup(name string) (*Constant, bool) {
	registry.RLock()
	defer registry.RUnlock()
	c, ok := registry.m[name]
	return c, ok
}

// Name returns the name the constant is registered under.
func (c *Constant) Name() string { return c.name }

// FD returns the constant's memfd, to send to another process. It remains
// owned by the Constant and is closed by Close.
func (c *Constant) FD() int { return c.fd }

// Len returns the size of the constant in bytes.
func (c *Constant) Len() int { return len(c.data) }

// Bytes returns the constant's contents: a read-only shared mapping, which
// must not be written to (a write faults) nor used after Close.
func (c *Constant) Bytes() []byte {
	if debug {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			panic(fmt.Sprintf("shm: Constant(%q).Bytes after Close", c.name))
		}
	}
	return c.data
}

// Close unregisters the constant, unmaps it and closes its fd. Other
// processes keep their own mappings. Close is idempotent.
func (c *Constant) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	registry.Lock()
	if registry.m[c.name] == c {
		delete(registry.m, c.name)
	}
	registry.Unlock()
	if err := c.unmap(); err != nil {
		return fmt.Errorf("shm: close constant %q: %w", c.name, err)
	}
	return nil
}

func (c *Constant) unmap() error {
	var err error
	if len(c.data) > 0 {
		err = munmap(c.data)
	}
	if cerr := closeFD(c.fd); err == nil {
		err = cerr
	}
	return err
}
