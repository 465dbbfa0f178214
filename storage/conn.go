// Package storage is mcpwatch's ClickHouse layer: connection, versioned schema migrations, the
// sink stage that writes events, findings and actions, and a small query helper for forensic SQL.
//
// It targets ClickHouse 18.16 (the oldest server mcpwatch supports, and the only one installable
// on the project's machines) through 26.x, over the native protocol only: clickhouse-go's HTTP
// protocol does not work against 18.16. Features newer servers add (DateTime64, LowCardinality
// without a setting, Map, IPv6, TTL, CODEC, skip indexes) are marked "newer servers:" where they
// would apply; [Version] is how code decides.
package storage

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Options says how to reach ClickHouse and as whom.
type Options struct {
	// Addr is host:port of the native protocol (9000 by default; 19000 in the local stack).
	// Several comma-separated addresses are tried in order.
	Addr     string
	Database string // default database of the connection; "" means the server's default
	User     string
	Password string
	// DialTimeout bounds connecting and the initial ping. Default 10s.
	DialTimeout time.Duration
	// ReadTimeout bounds one read from the server. Default 5m (a forensic query may scan long).
	ReadTimeout time.Duration
	// MaxOpenConns bounds the pool. Default 10.
	MaxOpenConns int
}

// ErrConfig marks options that cannot work.
var ErrConfig = errors.New("clickhouse: invalid options")

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if len(o.addrs()) == 0 {
		return fmt.Errorf("%w: no address (set --clickhouse or MCPWATCH_CLICKHOUSE_ADDR)", ErrConfig)
	}
	if o.Database != "" {
		if err := ValidIdentifier(o.Database); err != nil {
			return fmt.Errorf("%w: database: %w", ErrConfig, err)
		}
	}
	if o.DialTimeout < 0 || o.ReadTimeout < 0 || o.MaxOpenConns < 0 {
		return fmt.Errorf("%w: negative timeout or pool size", ErrConfig)
	}
	return nil
}

func (o Options) addrs() []string {
	var out []string
	for _, a := range strings.Split(o.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Open connects over the native protocol with LZ4 compression and pings the server, so that a
// wrong address, a wrong password or a server that is down fails here with a clear error rather
// than at the first insert. The password never appears in errors.
func Open(ctx context.Context, o Options) (driver.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	if o.MaxOpenConns == 0 {
		o.MaxOpenConns = 10
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:     clickhouse.Native,
		Addr:         o.addrs(),
		Auth:         clickhouse.Auth{Database: o.Database, Username: o.User, Password: o.Password},
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		MaxOpenConns: o.MaxOpenConns,
		MaxIdleConns: min(5, o.MaxOpenConns),
		Compression:  &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		ClientInfo:   clickhouse.ClientInfo{Products: []struct{ Name, Version string }{{Name: "mcpwatch", Version: "1"}}},
	})
	who := fmt.Sprintf("clickhouse %s as %q", o.Addr, o.User)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", who, err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		_ = conn.Close()
		var ex *clickhouse.Exception
		if errors.As(err, &ex) {
			return nil, fmt.Errorf("connect to %s: server refused: %w", who, err)
		}
		return nil, fmt.Errorf("connect to %s (is it running, and is this its native port?): %w", who, err)
	}
	return conn, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// ValidIdentifier accepts database names mcpwatch is willing to splice into SQL: letters, digits
// and underscores, not starting with a digit, at most 64 characters. Identifiers cannot be bound
// as query parameters, so this is what keeps them from being SQL.
func ValidIdentifier(name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("identifier %q: want [A-Za-z_][A-Za-z0-9_]*, at most 64 characters", name)
	}
	return nil
}

// Version is a ClickHouse server version.
type Version struct {
	Major, Minor, Patch int
	Raw                 string // as the server reports it, e.g. "18.16.1" or "24.8.4.13"
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

func (v Version) String() string { return v.Raw }

// ServerVersion asks the server for version() and parses it.
func ServerVersion(ctx context.Context, conn driver.Conn) (Version, error) {
	var raw string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		return Version{}, fmt.Errorf("clickhouse version(): %w", err)
	}
	return ParseVersion(raw)
}

// ParseVersion parses "major.minor.patch[.build]".
func ParseVersion(raw string) (Version, error) {
	parts := strings.Split(raw, ".")
	if len(parts) < 3 {
		return Version{}, fmt.Errorf("clickhouse version %q: want major.minor.patch", raw)
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(parts[i])
		if err != nil || v < 0 {
			return Version{}, fmt.Errorf("clickhouse version %q: part %d not a number", raw, i+1)
		}
		n[i] = v
	}
	return Version{Major: n[0], Minor: n[1], Patch: n[2], Raw: raw}, nil
}

// MinServer is the oldest server this build supports.
var MinServer = Version{Major: 18, Minor: 16, Patch: 0, Raw: "18.16.0"}

// QueryTable runs a query and returns its column names and every row with each value as text:
// strings as they are, times as UTC "2006-01-02 15:04:05", arrays as [1,2] with strings inside
// quoted Go-style (["a","b"]), NULL as "NULL". It
// is meant for printing forensic SQL output, so the caller should LIMIT the query. Arguments bind
// client-side (`?` placeholders): ClickHouse 18.16 has no server-side query parameters, and the
// driver quotes the values. The server gives the query at most a minute (max_execution_time),
// because cancelling the context does not always stop a query on old servers.
func QueryTable(ctx context.Context, conn driver.Conn, sql string, args ...any) ([]string, [][]string, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 60}))
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	cols := rows.Columns()
	dest := make([]any, len(types))
	for i, ct := range types {
		dest[i] = reflect.New(ct.ScanType()).Interface()
	}
	var out [][]string
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("query: scan row %d: %w", len(out)+1, err)
		}
		row := make([]string, len(dest))
		for i, d := range dest {
			row[i] = formatValue(reflect.ValueOf(d).Elem(), false)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	return cols, out, nil
}

var timeType = reflect.TypeFor[time.Time]()

func formatValue(v reflect.Value, nested bool) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return "NULL"
		}
		v = v.Elem()
	}
	if v.Type() == timeType {
		t := v.Interface().(time.Time).UTC()
		if t.Nanosecond() != 0 {
			return t.Format("2006-01-02 15:04:05.999999999")
		}
		return t.Format("2006-01-02 15:04:05")
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	switch v.Kind() {
	case reflect.String:
		if nested {
			return strconv.Quote(v.String())
		}
		return v.String()
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits())
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i), true)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case reflect.Map:
		parts := make([]string, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			parts = append(parts, formatValue(it.Key(), true)+":"+formatValue(it.Value(), true))
		}
		slices.Sort(parts)
		return "{" + strings.Join(parts, ",") + "}"
	}
	return fmt.Sprint(v.Interface())
}
