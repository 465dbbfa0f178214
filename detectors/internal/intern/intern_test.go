package intern

import (
	"fmt"
	"testing"
	"unsafe"
)

// A copy must never share the bytes it was given (they may be a record's, overwritten later),
// and repeated values must share one copy, or the tables would hold one per entry again.
func TestCopy(t *testing.T) {
	var tb Table
	b := []byte("acme")
	a := tb.Copy(string(b))
	b[0] = 'x'
	if a != "acme" {
		t.Fatalf("copy changed with its source: %q", a)
	}
	src := []byte("acme")
	again := tb.Copy(unsafe.String(&src[0], len(src)))
	if unsafe.StringData(again) != unsafe.StringData(a) {
		t.Error("the same value was copied twice")
	}
	for i := range Max + 10 {
		tb.Copy(fmt.Sprint("t", i))
	}
	if len(tb.m) > Max {
		t.Errorf("%d strings held, bound %d", len(tb.m), Max)
	}
	if c := tb.Copy("fresh-past-the-bound"); c != "fresh-past-the-bound" {
		t.Errorf("copy past the bound: %q", c)
	}
}
