package dashboards

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Vars are a dashboard's template variables as a user has set them: each name's selected
// values, or nil for "All".
type Vars map[string][]string

// Range is what Grafana sends with a query: the time picker's range and the panel's interval.
type Range struct {
	From, To time.Time
	Interval time.Duration
}

// Expand turns a panel's SQL into what the ClickHouse server receives from Grafana's official
// ClickHouse datasource (grafana-clickhouse-datasource v4), for the subset mcpwatch's boards
// use:
//
//   - in the browser, $__conditionalAll(cond, $var) becomes 1=1 when var is "All" and cond
//     otherwise; then template variables are interpolated: $var and ${var} as the value(s)
//     joined by commas, ${var:sqlstring} as each value quoted with ' doubled, joined by commas;
//   - in the plugin backend (pkg/macros), $__timeFilter(c) becomes
//     c >= toDateTime(from) AND c <= toDateTime(to) in Unix seconds, $__fromTime and $__toTime
//     toDateTime(unix), $__dateFilter(c) the same with toDate('YYYY-MM-DD'), and $__interval_s
//     the interval in whole seconds, at least 1.
//
// The _ms macros and $__timeInterval are not expanded: they need DateTime64 and
// toStartOfInterval, which ClickHouse 18.16 lacks, so the boards do not use them; Expand
// refuses a query that still holds a $__ macro or a variable it does not know.
func Expand(sql string, vars Vars, r Range) (string, error) {
	out, err := conditionalAll(sql, vars)
	if err != nil {
		return "", err
	}
	if out, err = interpolate(out, vars); err != nil {
		return "", err
	}
	out = macros(out, r)
	if i := strings.Index(out, "$"); i >= 0 {
		return "", fmt.Errorf("unexpanded %q in %q", out[i:min(len(out), i+24)], sql)
	}
	return out, nil
}

func conditionalAll(sql string, vars Vars) (string, error) {
	const name = "$__conditionalAll("
	for {
		i := strings.Index(sql, name)
		if i < 0 {
			return sql, nil
		}
		depth, end, comma := 1, -1, -1
		for j := i + len(name); j < len(sql) && end < 0; j++ {
			switch sql[j] {
			case '(':
				depth++
			case ')':
				if depth--; depth == 0 {
					end = j
				}
			case ',':
				if depth == 1 {
					comma = j
				}
			}
		}
		if end < 0 || comma < 0 {
			return "", fmt.Errorf("$__conditionalAll at %d: want (condition, $variable)", i)
		}
		cond := strings.TrimSpace(sql[i+len(name) : comma])
		v := strings.Trim(strings.TrimSpace(sql[comma+1:end]), "${}")
		vals, ok := vars[v]
		if !ok {
			return "", fmt.Errorf("$__conditionalAll: unknown variable %q", v)
		}
		if vals == nil {
			cond = "1=1"
		}
		sql = sql[:i] + cond + sql[end+1:]
	}
}

var varRef = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-z]+))?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

func interpolate(sql string, vars Vars) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(sql, func(m string) string {
		g := varRef.FindStringSubmatch(m)
		name, format := g[1]+g[3], g[2]
		if strings.HasPrefix(name, "__") {
			return m // a macro, expanded by the backend
		}
		vals, ok := vars[name]
		if !ok || vals == nil {
			err = fmt.Errorf("variable %q: not set (Expand needs a value; All only inside $__conditionalAll)", name)
			return m
		}
		switch format {
		case "":
			return strings.Join(vals, ",")
		case "sqlstring":
			q := make([]string, len(vals))
			for i, v := range vals {
				q[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
			}
			return strings.Join(q, ",")
		default:
			err = fmt.Errorf("variable %q: format %q not supported", name, format)
			return m
		}
	})
	return out, err
}

var macroRef = regexp.MustCompile(`\$__(timeFilter|dateFilter)\(([^()]*)\)|\$__(fromTime|toTime|interval_s)\b`)

func macros(sql string, r Range) string {
	from, to := r.From.UTC(), r.To.UTC()
	return macroRef.ReplaceAllStringFunc(sql, func(m string) string {
		g := macroRef.FindStringSubmatch(m)
		col := strings.TrimSpace(g[2])
		switch g[1] + g[3] {
		case "timeFilter":
			return fmt.Sprintf("%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, from.Unix(), col, to.Unix())
		case "dateFilter":
			return fmt.Sprintf("%s >= toDate('%s') AND %s <= toDate('%s')", col, from.Format(time.DateOnly), col, to.Format(time.DateOnly))
		case "fromTime":
			return fmt.Sprintf("toDateTime(%d)", from.Unix())
		case "toTime":
			return fmt.Sprintf("toDateTime(%d)", to.Unix())
		case "interval_s":
			return fmt.Sprintf("%d", int(math.Max(r.Interval.Seconds(), 1)))
		}
		return m
	})
}
