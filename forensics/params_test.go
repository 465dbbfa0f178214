package forensics

import (
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// {name:Type} placeholders become driver-bound @name arguments, except inside literals and
// comments; a missing, unused or unparsable parameter is an error that names it.
func TestBindParams(t *testing.T) {
	sql, args, err := BindParams("SELECT '{x:String}' -- {y:String}\nFROM t WHERE a = {tenant:String} AND t >= {since:DateTime} AND n < {n:UInt16} AND b = {tenant:String} /* {z:Int8} */",
		map[string]string{"tenant": "acme' OR 1=1", "since": "2026-11-20", "n": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "SELECT '{x:String}' -- {y:String}\nFROM t WHERE a = @tenant AND t >= @since AND n < @n AND b = @tenant /* {z:Int8} */"; sql != want {
		t.Fatalf("got %q\nwant %q", sql, want)
	}
	if len(args) != 3 {
		t.Fatalf("args %v", args)
	}
	got := map[string]any{}
	for _, a := range args {
		nv := a.(driver.NamedValue)
		got[nv.Name] = nv.Value
	}
	if got["tenant"] != "acme' OR 1=1" || got["since"] != time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC) || got["n"] != uint64(7) {
		t.Fatalf("values %v", got)
	}
	for _, c := range []struct {
		sql    string
		params map[string]string
		want   string
	}{
		{"a = {t:String}", nil, "needs parameter t (String)"},
		{"a = 1", map[string]string{"t": "x"}, "parameter t is not used"},
		{"a = {t:UInt8}", map[string]string{"t": "300"}, `"300" is not a UInt8`},
		{"a = {t:DateTime}", map[string]string{"t": "yesterday"}, "want RFC 3339"},
		{"a = {t:Decimal}", map[string]string{"t": "1"}, "type Decimal is not supported"},
		{"a = {t:String} AND b = {t:Int8}", map[string]string{"t": "1"}, "declared as both String and Int8"},
	} {
		_, _, err := BindParams(c.sql, c.params)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.sql, err, c.want)
		}
	}
}
