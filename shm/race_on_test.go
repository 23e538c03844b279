//go:build race

package shm_test

// raceEnabled: the race detector's runtime maps memory of its own as the
// heap grows.
const raceEnabled = true
