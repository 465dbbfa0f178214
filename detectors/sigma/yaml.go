package sigma

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// node is a YAML value with the position it was written at, so every error about a rule can point
// at the exact key or value a person has to change.
type node struct {
	kind nodeKind
	line int
	col  int

	// scalars
	str    string     // the value as text (for numbers and booleans, their canonical text)
	scalar scalarKind // what YAML typed the scalar as
	num    float64    // for sInt and sFloat

	// mappings: keys and values in document order; keys are scalars
	keys []*node
	vals []*node
	// sequences
	items []*node

	size int // nodes in this subtree, aliases expanded
}

type nodeKind uint8

const (
	nNull nodeKind = iota
	nScalar
	nMap
	nSeq
)

type scalarKind uint8

const (
	sString scalarKind = iota
	sInt
	sFloat
	sBool
)

func (n *node) kindName() string {
	switch n.kind {
	case nNull:
		return "null"
	case nMap:
		return "a mapping"
	case nSeq:
		return "a list"
	}
	switch n.scalar {
	case sInt, sFloat:
		return "a number"
	case sBool:
		return "a boolean"
	}
	return "a string"
}

// get returns the value under key k of a mapping, or nil.
func (n *node) get(k string) *node {
	for i, key := range n.keys {
		if key.str == k {
			return n.vals[i]
		}
	}
	return nil
}

// maxDocSize bounds the nodes of one document with aliases expanded, so a YAML "billion laughs"
// cannot make the compiler walk an exponential tree.
const maxDocSize = 100_000

// maxDepth bounds the nesting of YAML values; Sigma rules are a few levels deep.
const maxDepth = 64

// parseYAML parses every document of a file into nodes. A syntax error carries the position the
// YAML parser reported.
func parseYAML(file string, data []byte) (docs []*node, err error) {
	defer func() {
		// The YAML parser faces untrusted rule files; a panic in it is a broken file, not a
		// crashed stage.
		if r := recover(); r != nil {
			docs, err = nil, &Error{File: file, Line: 1, Column: 1, Reason: fmt.Sprintf("YAML parser failed: %v", r), kind: ErrInvalid}
		}
	}()
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		e := &Error{File: file, Reason: "YAML syntax: " + err.Error(), kind: ErrInvalid}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Reason = "YAML syntax: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			}
		}
		return nil, e
	}
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		c := converter{file: file, anchors: map[string]*node{}}
		n, err := c.convert(d.Body, 0)
		if err != nil {
			return nil, err
		}
		docs = append(docs, n)
	}
	return docs, nil
}

type converter struct {
	file    string
	anchors map[string]*node
	total   int
}

func (c *converter) errAt(n ast.Node, format string, args ...any) *Error {
	e := &Error{File: c.file, Reason: fmt.Sprintf(format, args...), kind: ErrInvalid}
	if n != nil {
		if tk := n.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
	}
	return e
}

func (c *converter) at(n ast.Node, kind nodeKind) *node {
	out := &node{kind: kind, size: 1}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		out.line, out.col = tk.Position.Line, tk.Position.Column
	}
	return out
}

func (c *converter) convert(n ast.Node, depth int) (*node, error) {
	if depth > maxDepth {
		return nil, c.errAt(n, "YAML nested deeper than %d levels", maxDepth)
	}
	c.total++
	if c.total > maxDocSize {
		return nil, c.errAt(n, "YAML document larger than %d values", maxDocSize)
	}
	switch v := n.(type) {
	case nil:
		return &node{kind: nNull, size: 1}, nil
	case *ast.NullNode:
		return c.at(v, nNull), nil
	case *ast.StringNode:
		out := c.at(v, nScalar)
		out.str = v.Value
		return out, nil
	case *ast.LiteralNode:
		out := c.at(v, nScalar)
		if v.Value != nil {
			out.str = v.Value.Value
		}
		return out, nil
	case *ast.IntegerNode:
		out := c.at(v, nScalar)
		out.scalar = sInt
		switch x := v.Value.(type) {
		case int64:
			out.num, out.str = float64(x), strconv.FormatInt(x, 10)
		case uint64:
			out.num, out.str = float64(x), strconv.FormatUint(x, 10)
		default:
			out.str = fmt.Sprint(x)
			out.num, _ = strconv.ParseFloat(out.str, 64)
		}
		return out, nil
	case *ast.FloatNode:
		out := c.at(v, nScalar)
		out.scalar, out.num = sFloat, v.Value
		out.str = strconv.FormatFloat(v.Value, 'f', -1, 64)
		return out, nil
	case *ast.InfinityNode, *ast.NanNode:
		return nil, c.errAt(v, "infinite or NaN numbers are not valid Sigma values")
	case *ast.BoolNode:
		out := c.at(v, nScalar)
		out.scalar, out.str = sBool, strconv.FormatBool(v.Value)
		return out, nil
	case *ast.MappingNode:
		out := c.at(v, nMap)
		if len(v.Values) > 0 {
			if tk := v.Values[0].Key.GetToken(); tk != nil && tk.Position != nil {
				out.line, out.col = tk.Position.Line, tk.Position.Column
			}
		}
		for _, mv := range v.Values {
			if err := c.entry(out, mv, depth); err != nil {
				return nil, err
			}
		}
		return out, nil
	case *ast.MappingValueNode:
		out := c.at(v.Key, nMap)
		if err := c.entry(out, v, depth); err != nil {
			return nil, err
		}
		return out, nil
	case *ast.SequenceNode:
		out := c.at(v, nSeq)
		for _, it := range v.Values {
			item, err := c.convert(it, depth+1)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, item)
			out.size += item.size
		}
		return out, nil
	case *ast.AnchorNode:
		val, err := c.convert(v.Value, depth+1)
		if err != nil {
			return nil, err
		}
		if v.Name != nil {
			c.anchors[v.Name.GetToken().Value] = val
		}
		return val, nil
	case *ast.AliasNode:
		name := ""
		if v.Value != nil {
			name = v.Value.GetToken().Value
		}
		val, ok := c.anchors[name]
		if !ok {
			return nil, c.errAt(v, "alias *%s names no anchor defined before it", name)
		}
		c.total += val.size
		if c.total > maxDocSize {
			return nil, c.errAt(v, "YAML document larger than %d values once its aliases are expanded", maxDocSize)
		}
		return val, nil
	case *ast.TagNode:
		tag := v.Start.Value
		switch tag {
		case "!!str":
			val, err := c.convert(v.Value, depth+1)
			if err != nil {
				return nil, err
			}
			if val.kind == nScalar {
				val.scalar = sString
			}
			return val, nil
		}
		return nil, c.errAt(v, "YAML tag %s is not supported in Sigma rules", tag)
	case *ast.MergeKeyNode:
		return nil, c.errAt(v, "YAML merge keys (<<) are not supported in Sigma rules")
	}
	return nil, c.errAt(n, "unexpected YAML %s", n.Type())
}

func (c *converter) entry(m *node, mv *ast.MappingValueNode, depth int) error {
	kn := ast.Node(mv.Key)
	if mk, ok := kn.(*ast.MappingKeyNode); ok {
		kn = mk.Value
	}
	if _, ok := kn.(*ast.MergeKeyNode); ok {
		return c.errAt(kn, "YAML merge keys (<<) are not supported in Sigma rules")
	}
	key, err := c.convert(kn, depth+1)
	if err != nil {
		return err
	}
	if key.kind != nScalar {
		return c.errAt(kn, "a mapping key must be a string, not %s", key.kindName())
	}
	for _, k := range m.keys {
		if k.str == key.str {
			return c.errAt(kn, "duplicate key %q (first at line %d)", key.str, k.line)
		}
	}
	val, err := c.convert(mv.Value, depth+1)
	if err != nil {
		return err
	}
	m.keys = append(m.keys, key)
	m.vals = append(m.vals, val)
	m.size += val.size + 1
	return nil
}
