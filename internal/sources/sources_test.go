package sources

import "testing"

func TestRemoveOnlyWhatItAdded(t *testing.T) {
	var s Set[int]
	rm1 := s.Add("a", 1)
	rm2 := s.Add("a", 2) // replaces it
	rm1()                // the old remove: nothing
	if got := s.All(); got["a"] != 2 {
		t.Fatalf("after the old remove: %v, want a=2", got)
	}
	rm2()
	if got := s.All(); len(got) != 0 {
		t.Fatalf("after the new remove: %v, want nothing", got)
	}
}
