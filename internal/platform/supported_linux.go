//go:build !ferrynolinux

package platform

// Supported reports whether worker processes and shared memory work in
// this build: on Linux.
const Supported = true
