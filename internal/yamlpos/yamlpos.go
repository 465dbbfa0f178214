// Package yamlpos words goccy/go-yaml's decoding errors for people who write YAML, at the
// position of the token they are about: what the strict config and playbook loaders share.
package yamlpos

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Locate returns the line and column (1-based; 0 when unknown) and the message of a decoding
// error. Some errors carry no token (a duration that does not parse): then the first scalar
// under within whose quoted value the message names is taken as the culprit.
func Locate(err error, within ast.Node) (line, col int, msg string) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return Line(te.Token), Col(te.Token), fmt.Sprintf("want %s, got %s", TypeName(te.DstType), TypeName(te.SrcType))
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		tk := ye.GetToken()
		msg = ye.GetMessage()
		if k, ok := strings.CutPrefix(msg, "mapping key "); ok {
			if k, _, ok = strings.Cut(k, " already defined"); ok {
				msg = "key " + k + " given twice"
			}
		}
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			msg = "unknown key " + f
		}
		return Line(tk), Col(tk), msg
	}
	msg = err.Error()
	if strings.HasPrefix(msg, "time: invalid duration") {
		msg = "want a duration such as 30m or 1h: " + msg
	}
	if within != nil {
		for _, n := range ast.Filter(ast.StringType, within) {
			if tk := n.GetToken(); tk != nil && strings.Contains(err.Error(), strconv.Quote(tk.Value)) {
				return Line(tk), Col(tk), msg
			}
		}
	}
	return 0, 0, msg
}

// TypeName names a Go type the way a YAML author thinks of it.
func TypeName(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	if t == reflect.TypeOf(time.Duration(0)) {
		return "a duration (e.g. 1500ms, 30s, 1h)"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return TypeName(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// Line is the 1-based line of tk, 0 when unknown.
func Line(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

// Col is the 1-based column of tk, 0 when unknown.
func Col(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Column
}
