package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// applyMemoryLimit sets this worker's hard memory limit (see MemoryLimit):
// its RLIMIT_DATA becomes what it has mapped now plus the limit, so that
// the limit bounds what it allocates from here on, whatever the runtime
// reserved at start (under the race detector, terabytes of shadow).
func applyMemoryLimit(v string) error {
	if v == "" {
		return nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return fmt.Errorf("bad %s %q", envMemoryLimit, v)
	}
	base, err := dataSize()
	if err != nil {
		return fmt.Errorf("memory limit: %w", err)
	}
	lim := uint64(base) + uint64(limit)
	if err := setDataLimit(lim); err != nil {
		return fmt.Errorf("memory limit: setting RLIMIT_DATA to %d bytes: %w", lim, err)
	}
	return nil
}

// dataSize is this process's data segment as the kernel counts it for
// RLIMIT_DATA: VmData in /proc/self/status.
func dataSize() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmData:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading VmData %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmData in /proc/self/status")
}
