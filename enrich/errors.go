package enrich

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a catalog or directory file, with its position.
type Error struct {
	File string
	Line int // 1-based; 0 if unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// maxErrors bounds how many problems one load reports; the rest are counted.
const maxErrors = 50

// errList collects problems so that one load reports all of them at once.
type errList struct {
	file  string
	errs  []error
	extra int
}

func (l *errList) add(line int, format string, args ...any) {
	if len(l.errs) == maxErrors {
		l.extra++
		return
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (l *errList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	if l.extra > 0 {
		l.errs = append(l.errs, &Error{File: l.file, Msg: fmt.Sprintf("and %d more problems", l.extra)})
	}
	return errors.Join(l.errs...)
}

var (
	yamlLineRE    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// decodeYAML decodes exactly one YAML document from src into v, rejecting unknown fields, and
// turns yaml's errors ("yaml: line 3: ...") into [*Error]s with the file and line.
func decodeYAML(src []byte, name string, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return &Error{File: name, Msg: "empty file (want at least `version: 1`)"}
		}
		return yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return yamlError(name, err)
		}
		return &Error{File: name, Line: extra.Line, Msg: "more than one YAML document"}
	}
	return nil
}

func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		l := &errList{file: name}
		for _, msg := range te.Errors {
			line, text := splitYAMLLine(msg)
			if m := yamlUnknownRE.FindStringSubmatch(text); m != nil {
				text = fmt.Sprintf("unknown field %q", m[1])
			}
			l.add(line, "%s", text)
		}
		return l.err()
	}
	line, text := splitYAMLLine(err.Error())
	return &Error{File: name, Line: line, Msg: "invalid YAML: " + text}
}

func splitYAMLLine(msg string) (int, string) {
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(msg, "yaml: ")
}

// positions finds the line of a value in a YAML document, for errors found after decoding. It
// parses the document only when first asked: files that load cleanly pay nothing.
type positions struct {
	src    []byte
	root   *yaml.Node
	parsed bool
}

// line returns the line of the node at path (mapping keys as strings, sequence indices as ints),
// or of the deepest node on the way that exists; 0 if none.
func (p *positions) line(path ...any) int {
	if !p.parsed {
		p.parsed = true
		var doc yaml.Node
		if yaml.Unmarshal(p.src, &doc) == nil && len(doc.Content) == 1 {
			p.root = doc.Content[0]
		}
	}
	n, line := p.root, 0
	for _, step := range path {
		for n != nil && n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil {
			break
		}
		line = n.Line
		var next *yaml.Node
		switch s := step.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						line, next = n.Content[i].Line, n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
				next = n.Content[s]
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	if n != nil {
		line = n.Line
	}
	return line
}
