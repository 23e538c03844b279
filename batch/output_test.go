package batch_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ferrypipe/ferry/batch"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	if err := batch.WriteFileAtomic(path, 0o640, func(w io.Writer) error {
		_, err := io.WriteString(w, "first")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// A write that fails leaves the file as it was, and no temporary file.
	boom := errors.New("boom")
	err := batch.WriteFileAtomic(path, 0o640, func(w io.Writer) error {
		if _, err := io.WriteString(w, "half"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("a failed write: %v", err)
	}
	// Two writers at once (an index run twice): one whole file wins.
	var wg sync.WaitGroup
	for _, s := range []string{"AAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBB"} {
		wg.Go(func() {
			if err := batch.WriteFileAtomic(path, 0o640, func(w io.Writer) error {
				for range 1000 {
					if _, err := io.WriteString(w, s); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 16000 || (b[0] != 'A' && b[0] != 'B') || string(b[:16]) != string(b[len(b)-16:]) {
		t.Fatalf("after two writers: %d bytes, %q … %q", len(b), b[:16], b[len(b)-16:])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("files left: %v", entries)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := batch.WriteFileAtomic(filepath.Join(dir, "no", "such", "dir"), 0o644, func(io.Writer) error { return nil }); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}
