// Package sources keeps named things to read at each collection (a
// pipeline's Stats, a pool's, an arena) for ferryprom and ferryotel.
package sources

import (
	"maps"
	"sync"
)

// Set is a set of named values, safe for concurrent use.
type Set[V any] struct {
	mu   sync.Mutex
	m    map[string]entry[V]
	next uint64
}

type entry[V any] struct {
	v   V
	gen uint64 // which Add made it
}

// Add sets name to v and returns the function that removes it — only
// it: once name has been added again, the old function does nothing.
func (s *Set[V]) Add(name string, v V) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]entry[V]{}
	}
	s.next++
	gen := s.next
	s.m[name] = entry[V]{v: v, gen: gen}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if e, ok := s.m[name]; ok && e.gen == gen {
			delete(s.m, name)
		}
	}
}

// All returns a copy of the set, to read without the lock.
func (s *Set[V]) All() map[string]V {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]V, len(s.m))
	for k, e := range maps.All(s.m) {
		out[k] = e.v
	}
	return out
}
