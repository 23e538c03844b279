//go:build !ferrydebug

package shm

// debug enables use-after-release checks; build with -tags ferrydebug. As a
// constant false, the compiler removes every check.
const debug = false
