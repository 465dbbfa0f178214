package sigma

import (
	"errors"
	"fmt"
)

// Sentinel errors: every [*Error] wraps one of them, so callers can tell a broken rule from a
// rule that asks for something the engine does not do.
var (
	// ErrInvalid marks a rule that is not valid Sigma (bad YAML, a missing required field, a
	// condition that does not parse, a value of the wrong type).
	ErrInvalid = errors.New("invalid Sigma rule")
	// ErrUnsupported marks a valid Sigma rule that uses a feature this engine does not implement
	// (a modifier, a logsource, a field without a mapping, a correlation type). It is refused
	// rather than run with the feature ignored.
	ErrUnsupported = errors.New("unsupported Sigma feature")
)

// Error is a problem with one rule file, at the position in the file it concerns.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the problem concerns the whole file
	Column int // 1-based
	// Rule is the rule's id (or title) when it is known.
	Rule string
	// Reason says what is wrong and, where it can, what to write instead.
	Reason string
	kind   error
}

// Error renders the error as "file:line:column: reason", the form editors and CI logs link.
func (e *Error) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Reason)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return e.Reason
}

// Unwrap returns [ErrInvalid] or [ErrUnsupported].
func (e *Error) Unwrap() error { return e.kind }
