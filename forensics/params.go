package forensics

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// BindParams lets saved queries use ClickHouse's {name:Type} parameter syntax on every server.
// ClickHouse 18.16 has no server-side parameters, so each {name:Type} outside string literals,
// quoted identifiers and comments becomes clickhouse-go's @name placeholder, and its value,
// parsed as Type, becomes a named argument the driver quotes into the query. Types: String,
// DateTime (RFC 3339, "2006-01-02 15:04:05" or "2006-01-02", UTC), Int8..Int64, UInt8..UInt64,
// Float32, Float64. A placeholder without a value, a value without a placeholder, and a value
// that does not parse as its type are errors.
//
// The same query text runs unchanged in clickhouse-client --param_name=value on newer servers.
func BindParams(sql string, params map[string]string) (string, []any, error) {
	var (
		b     strings.Builder
		args  []any
		used  = map[string]bool{}
		types = map[string]string{}
	)
	for i := 0; i < len(sql); {
		switch c := sql[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := skipQuoted(sql, i)
			b.WriteString(sql[i:j])
			i = j
		case c == '-' && strings.HasPrefix(sql[i:], "--"), c == '#':
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				j = len(sql) - i
			}
			b.WriteString(sql[i : i+j])
			i += j
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				j = len(sql) - i - 2
			} else {
				j += 2
			}
			b.WriteString(sql[i : i+2+j])
			i += 2 + j
		case c == '{':
			name, typ, n, ok := placeholder(sql[i:])
			if !ok {
				b.WriteByte(c)
				i++
				continue
			}
			if prev, seen := types[name]; seen && prev != typ {
				return "", nil, fmt.Errorf("parameter %s is declared as both %s and %s", name, prev, typ)
			}
			types[name] = typ
			raw, have := params[name]
			if !have {
				return "", nil, fmt.Errorf("query needs parameter %s (%s): pass --param %s=VALUE", name, typ, name)
			}
			if !used[name] {
				v, err := parseParam(typ, raw)
				if err != nil {
					return "", nil, fmt.Errorf("parameter %s: %w", name, err)
				}
				args = append(args, clickhouse.Named(name, v))
				used[name] = true
			}
			b.WriteString("@" + name)
			i += n
		default:
			b.WriteByte(c)
			i++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !used[name] {
			return "", nil, fmt.Errorf("parameter %s is not used by the query (placeholders look like {%s:String})", name, name)
		}
	}
	return b.String(), args, nil
}

// skipQuoted returns the index after the quoted token starting at i (doubled quotes and
// backslash escapes stay inside).
func skipQuoted(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(s)
}

// placeholder parses "{name:Type}" at the start of s.
func placeholder(s string) (name, typ string, n int, ok bool) {
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", "", 0, false
	}
	name, typ, found := strings.Cut(s[1:end], ":")
	name, typ = strings.TrimSpace(name), strings.TrimSpace(typ)
	if !found || !isIdent(name) || !isIdent(typ) {
		return "", "", 0, false
	}
	return name, typ, end + 1, true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r != '_' && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func parseParam(typ, raw string) (any, error) {
	switch {
	case typ == "String":
		return raw, nil
	case typ == "DateTime":
		return parseTime(raw)
	case strings.HasPrefix(typ, "UInt"):
		bits, err := strconv.Atoi(typ[4:])
		if err != nil {
			break
		}
		v, err := strconv.ParseUint(strings.TrimSpace(raw), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%q is not a %s", raw, typ)
		}
		return v, nil
	case strings.HasPrefix(typ, "Int"):
		bits, err := strconv.Atoi(typ[3:])
		if err != nil {
			break
		}
		v, err := strconv.ParseInt(strings.TrimSpace(raw), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%q is not an %s", raw, typ)
		}
		return v, nil
	case typ == "Float32" || typ == "Float64":
		v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || v != v {
			return nil, fmt.Errorf("%q is not a %s", raw, typ)
		}
		return v, nil
	}
	return nil, fmt.Errorf("type %s is not supported (String, DateTime, IntN, UIntN, FloatN)", typ)
}
