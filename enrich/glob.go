package enrich

import (
	"errors"
	"unicode/utf8"

	"github.com/mcpwatch/mcpwatch/internal/glob"
)

// Patterns use the glob language of the access policy (package internal/glob), so one pattern
// means the same thing in both files:
//
//	*    any run of bytes, possibly empty, that contains no '/'
//	**   any run of bytes, possibly empty, including '/'
//	\c   the character c literally (\* is a literal star, \\ a backslash)
//
// Everything else is literal, including '?', '[' and '{' (they occur in URIs). "***" and a
// trailing backslash are errors. "s3://bucket/**" matches every object under bucket/ but not
// "s3://bucket" itself. The catalog also refuses empty patterns and patterns that are not UTF-8.

var (
	errPatternEmpty = errors.New("empty pattern")
	errPatternUTF8  = errors.New("pattern is not valid UTF-8")
)

func compileGlob(p string) (*glob.Pattern, error) {
	switch {
	case p == "":
		return nil, errPatternEmpty
	case !utf8.ValidString(p):
		return nil, errPatternUTF8
	}
	return glob.Compile(p)
}
