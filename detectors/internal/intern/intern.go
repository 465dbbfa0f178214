// Package intern hands out shared copies of the strings that repeat across a table's keys.
package intern

// Max bounds the strings a [Table] shares; past it, [Table.Copy] copies.
const Max = 1 << 10

// Table hands out one shared copy of each string, for keys that repeat a few values over many
// entries (the tenant of every principal): the entries then hold one copy between them rather
// than one each, and comparing a key with them reads memory that is already in the cache. The
// zero Table is ready to use. It is not safe for concurrent use.
type Table struct{ m map[string]string }

// Copy returns a copy of s that does not refer to s's bytes: the shared one while the table
// holds fewer than [Max] strings, else a fresh one.
func (t *Table) Copy(s string) string {
	if c, ok := t.m[s]; ok {
		return c
	}
	c := string(append([]byte(nil), s...))
	if len(t.m) < Max {
		if t.m == nil {
			t.m = make(map[string]string)
		}
		t.m[c] = c
	}
	return c
}
