//go:build cgo

// Package crash makes a process fail the ways native code does, for
// ferry's supervision tests and examples.
package crash

/*
static void segfault(void) {
	volatile int *p = 0;
	*p = 1;
}
*/
import "C"

// Segfault writes through a null pointer in C: the process dies of SIGSEGV,
// as it would from a bug in a C library.
func Segfault() { C.segfault() }
