package filewatch

import "testing"

// A change is loaded on the second poll that sees it, a failing content is tried once, and going
// back to the content in force clears both. If this failed, a file caught mid-write could be
// loaded, or a broken file retried and reported on every poll.
func TestSettle(t *testing.T) {
	cur, a, b := Hash{1}, Hash{2}, Hash{3}
	var s Settle
	steps := []struct {
		h    Hash
		fail bool
		want Step
	}{
		{cur, false, Unchanged},
		{a, false, Wait},
		{a, true, Load}, // fails
		{a, false, Failed},
		{b, false, Wait},
		{b, false, Load},
		{cur, false, Unchanged},
		{a, false, Wait}, // the failure was forgotten with the return to cur
		{a, false, Load},
	}
	for i, st := range steps {
		if got := s.Next(st.h, cur); got != st.want {
			t.Fatalf("poll %d: %v, want %v", i, got, st.want)
		}
		if st.fail && !s.Fail(st.h) {
			t.Fatalf("poll %d: a first failure not reported as new", i)
		}
	}
	if !s.Fail(a) || s.Fail(a) {
		t.Fatal("Fail reports a failing content as new once")
	}
}
