//go:build ferrydebug

package shm

// debug enables use-after-release checks (this is a ferrydebug build): Bytes
// of a released View or of a published or abandoned Lease panics, and a
// segment is inaccessible (PROT_NONE) in a process whenever that process
// does not hold it through a Lease or View, so that a slice kept too long
// faults.
const debug = true
