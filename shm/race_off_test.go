//go:build !race && linux && !ferrynolinux

package shm_test

const raceEnabled = false
