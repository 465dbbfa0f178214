package detect

// EventID is an event id as a detector keeps it in per-principal state (a sample of the events
// behind its evidence). An id in the canonical text form of a UUID — what sources assign (see
// [event.NewID]) — is held in 16 bytes with no pointer, so that the garbage collector has nothing
// to follow in a table of samples and no small string to mark per event; any other id is held as
// a copy of its own. The zero EventID is no id.
type EventID struct {
	other string
	uuid  [16]byte // valid when other is empty and it is not all zero
}

// MakeEventID returns id as an [EventID]. It keeps no reference to id's bytes.
func MakeEventID(id string) EventID {
	var e EventID
	if parseUUID(id, &e.uuid) && e.uuid != [16]byte{} {
		return e
	}
	if id == "" {
		return EventID{}
	}
	return EventID{other: string([]byte(id))} // a copy: id may refer to a record's bytes
}

// IsZero reports whether e holds no id.
func (e EventID) IsZero() bool { return e == EventID{} }

// String returns the id exactly as it was given to [MakeEventID], or "" for the zero EventID.
func (e EventID) String() string {
	if e.other != "" || e.uuid == [16]byte{} {
		return e.other
	}
	const hex = "0123456789abcdef"
	var b [36]byte
	j := 0
	for i, x := range e.uuid {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[x>>4], hex[x&0xf]
		j += 2
	}
	return string(b[:])
}

// EventIDStrings returns ids as strings, or nil when there are none.
func EventIDStrings(ids []EventID) []string {
	if len(ids) == 0 {
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// parseUUID parses the canonical text form of a UUID, lower-case hex only (an upper-case id
// would not print back as it came), into u.
func parseUUID(s string, u *[16]byte) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
