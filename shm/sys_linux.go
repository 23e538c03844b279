//go:build !ferrynolinux

package shm

import "golang.org/x/sys/unix"

// The system calls of the package, on Linux: memfds with seals, shared
// mappings and their protection. The other half of the package's Linux
// code is the futex (futex_linux.go).

// Seals of a memfd (fcntl F_ADD_SEALS).
const (
	sealSeal   = unix.F_SEAL_SEAL   // no more seals
	sealShrink = unix.F_SEAL_SHRINK // the size cannot go down
	sealGrow   = unix.F_SEAL_GROW   // the size cannot go up
	sealWrite  = unix.F_SEAL_WRITE  // the contents cannot change
)

// Protections of a mapping.
const (
	protNone      = unix.PROT_NONE
	protRead      = unix.PROT_READ
	protReadWrite = unix.PROT_READ | unix.PROT_WRITE
)

// memfdCreate makes a close-on-exec memfd that can be sealed.
func memfdCreate(name string) (int, error) {
	return unix.MemfdCreate(memfdName(name), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
}

// memfdName shortens name to what memfd_create accepts (249 bytes).
func memfdName(name string) string {
	if len(name) > 240 {
		name = name[:240]
	}
	return name
}

// dupFD duplicates fd, close-on-exec.
func dupFD(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func closeFD(fd int) error { return unix.Close(fd) }

func ftruncate(fd int, size int64) error { return unix.Ftruncate(fd, size) }

func pread(fd int, b []byte, off int64) (int, error) { return unix.Pread(fd, b, off) }

// pwriteAll writes data at offset 0, in pieces of at most 1 GiB.
func pwriteAll(fd int, data []byte) error {
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:min(len(data), off+1<<30)], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

// fileSize returns the size of fd's file.
func fileSize(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	return st.Size, nil
}

func addSeals(fd, seals int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
	return err
}

func getSeals(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0) }

// mmapShared maps size bytes of fd, shared with every other mapping.
func mmapShared(fd, size, prot int) ([]byte, error) {
	return unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED)
}

func munmap(b []byte) error { return unix.Munmap(b) }

func mprotect(b []byte, prot int) error { return unix.Mprotect(b, prot) }
