package mcpwire

// ReplaceMember returns the JSON object obj with the value of its top-level member name replaced
// by val, every other byte kept; false when obj has no such member, or has it twice (parsers
// disagree on which one counts). obj must be valid JSON. The gateway rewrites results with it
// (redaction, tool filtering) without re-encoding what it does not change.
func ReplaceMember(obj []byte, name string, val []byte) ([]byte, bool) {
	s := scan{b: obj}
	s.ws()
	if !s.eat('{') {
		return nil, false
	}
	start, end := -1, -1
	for {
		s.ws()
		if s.eat('}') {
			break
		}
		key, ok := s.key()
		if !ok {
			return nil, false
		}
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		vs := s.i
		if !s.value() {
			return nil, false
		}
		if key == name {
			if start >= 0 {
				return nil, false
			}
			start, end = vs, s.i
		}
		s.ws()
		if !s.eat(',') && (s.i >= len(obj) || obj[s.i] != '}') {
			return nil, false
		}
	}
	if start < 0 {
		return nil, false
	}
	out := make([]byte, 0, len(obj)-(end-start)+len(val))
	out = append(append(append(out, obj[:start]...), val...), obj[end:]...)
	return out, true
}
