//go:build race && linux && !ferrynolinux

package shm_test

// raceEnabled: the race detector's runtime maps memory of its own as the
// heap grows.
const raceEnabled = true
