package batch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes a sink's output file so that it is idempotent
// under at-least-once execution: write fills a temporary file of its own in
// path's directory, which is flushed to disk and renamed to path only if
// write and the flush succeed. A reader (or a resumed run) never sees half
// a file, and an index run twice — its worker died after its sink ran, a
// retry, two workers racing for a redelivered unit — replaces the file
// whole instead of mixing two writes. On failure the temporary file is
// removed and path is left as it was.
func WriteFileAtomic(path string, perm os.FileMode, write func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("batch: writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("batch: writing %s: %w", path, err)
	}
	if err := errors.Join(f.Chmod(perm), f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("batch: writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("batch: writing %s: %w", path, err)
	}
	return nil
}
