package syslog_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/forward/internal/rsyslogd"
	"github.com/mcpwatch/mcpwatch/forward/syslog"
	"github.com/mcpwatch/mcpwatch/normalize"
)

// hostileCEF returns CEF lines, rendered by the processors' CEF writer, whose values carry
// everything that breaks naive syslog and CEF handling.
func hostileCEF() []string {
	long := strings.Repeat("가나다|=\\", 8*1024/12) // > 8 KB of multi-byte text and specials
	vals := []struct{ name, tool, msg string }{
		{"pipes", "a|b||c", "x|y"},
		{"equals", "k=v", "a=b=c"},
		{"backslashes", `C:\tools\new`, `\\server\share\`},
		{"newlines", "line1\nline2", "a\r\nb\nc"},
		{"korean", "주민등록번호_조회", "서울특별시 강남구 테헤란로 ✓"},
		{"tab and unicode separators", "a\tb", "x\u2028y\u2029z"},
		{"control characters", "\x1b[31mred\x1b[0m", "nul\x00byte"},
		{"8KB", long[:4000], long},
		{"syslog lookalike", "<13>1 2025-01-01T00:00:00Z evil app - - -", "123 <14>1 - - - - - - forged"},
	}
	var out []string
	for i, v := range vals {
		c := normalize.NewCEF("mcpwatch", "mcpwatch", "0.1.0", "MCP-1001", "Tool call: "+v.name, i%11)
		c.Ext("rt", strconv.Itoa(1737536772000+i)).Ext("msg", v.msg).Labeled("cs1", "tool", v.tool)
		out = append(out, c.String())
	}
	return out
}

func frames(t testing.TB, f *syslog.Formatter, cefs []string) ([]byte, [][]byte) {
	t.Helper()
	var batch []byte
	var msgs [][]byte
	for i, c := range cefs {
		m, err := f.Append(nil, syslog.Message{Time: time.Date(2025, 1, 22, 9, 6, 12, i*1000, time.UTC),
			Severity: i % 11, MsgID: "MCP-1001", ID: "evt-" + strconv.Itoa(i), CEF: c})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
		batch = syslog.AppendFrame(batch, m)
	}
	return batch, msgs
}

func tlsClient(t testing.TB, d *rsyslogd.Daemon, p rsyslogd.PKI, mutate func(*syslog.Config)) *syslog.Client {
	t.Helper()
	cfg := syslog.Config{Address: d.Addr, CAFile: p.CAFile, ServerName: "localhost", RetryFor: 30 * time.Second,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := syslog.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Every hostile CEF line reaches a real rsyslogd over TLS 1.3 byte for byte: rsyslog's raw
// message equals the SYSLOG-MSG we framed, and its RFC 5424 parser finds our header fields and
// MSG equal to the CEF line. If this fails, SIEM users receive altered or split audit records.
func TestRsyslogTLSByteExact(t *testing.T) {
	p := rsyslogd.NewPKI(t, t.TempDir(), "srv")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &p})
	c := tlsClient(t, d, p, nil)
	f, err := syslog.NewFormatter(syslog.FormatterConfig{Facility: syslog.DefaultFacility, Hostname: "gw-1", ProcID: "777", SDID: "mcpwatch@32473"})
	if err != nil {
		t.Fatal(err)
	}
	cefs := hostileCEF()
	batch, msgs := frames(t, f, cefs)
	ctx := t.Context()
	if err := c.Send(ctx, batch); err != nil {
		t.Fatal(err)
	}
	st, ok := c.TLSState()
	if !ok || st.Version != tls.VersionTLS13 {
		t.Fatalf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
	}
	// The collector is configured TLS 1.3-only (MinProtocol=TLSv1.3, as docs/siem.md shows): a
	// TLS 1.2 client is refused, so the documented receiver config really enforces it.
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(p.CAFile)
	pool.AppendCertsFromPEM(ca)
	if c12, err := tls.Dial("tcp", d.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil {
		c12.Close()
		t.Error("the TLS 1.3-only collector accepted TLS 1.2")
	}
	raw := d.WaitLines(d.Raw, len(msgs), 30*time.Second)
	for i, m := range msgs {
		if raw[i] != string(m) {
			t.Errorf("raw message %d differs\n got %q\nwant %q", i, raw[i], m)
		}
	}
	fields := d.WaitLines(d.Fields, len(msgs), 10*time.Second)
	for i, line := range fields {
		fl := rsyslogd.Fields(line)
		if len(fl) != 8 {
			t.Fatalf("fields line %d: %q", i, line)
		}
		wantPri := strconv.Itoa(13*8 + syslog.Severity(i%11))
		want := []string{wantPri, "", "gw-1", "mcpwatch", "777", "MCP-1001",
			`[mcpwatch@32473 id="evt-` + strconv.Itoa(i) + `"]`, cefs[i]}
		for k := range want {
			if k == 1 {
				ts, err := time.Parse(time.RFC3339Nano, fl[1])
				if err != nil || !ts.Equal(time.Date(2025, 1, 22, 9, 6, 12, i*1000, time.UTC)) {
					t.Errorf("line %d timestamp %q: %v", i, fl[1], err)
				}
				continue
			}
			if fl[k] != want[k] {
				t.Errorf("line %d field %d\n got %q\nwant %q", i, k, fl[k], want[k])
			}
		}
	}
}

// Mutual TLS: with authMode x509/certvalid rsyslog takes messages only from a client whose
// certificate its CA signed.
func TestRsyslogMutualTLS(t *testing.T) {
	p := rsyslogd.NewPKI(t, t.TempDir(), "srv")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &p, AuthMode: "x509/certvalid"})
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	anon := tlsClient(t, d, p, func(c *syslog.Config) { c.RetryFor = 500 * time.Millisecond })
	batch, _ := frames(t, f, []string{"CEF:0|mcpwatch|mcpwatch|0|MCP-1|without client certificate|1|"})
	// In TLS 1.3 the server checks the client certificate after the client finished its
	// handshake; the client must still notice the refusal and report it, not count the batch
	// as sent (its offsets would be committed and the events lost).
	if err := anon.Send(t.Context(), batch); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Send without the client certificate the collector requires: %v", err)
	}

	withCert := tlsClient(t, d, p, func(c *syslog.Config) { c.CertFile, c.KeyFile = p.ClientCert, p.ClientKey })
	batch, msgs := frames(t, f, []string{"CEF:0|mcpwatch|mcpwatch|0|MCP-1|with client certificate|1|"})
	if err := withCert.Send(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	d.WaitLines(d.Raw, 1, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // let a wrongly accepted anonymous message land too
	raw := rsyslogd.Lines(d.Raw)
	if len(raw) != 1 || raw[0] != string(msgs[0]) {
		t.Fatalf("received %q, want only the mutually authenticated message", raw)
	}
}

// A client speaking plain TCP to the TLS listener gets nothing in: rsyslog drops the connection
// and writes no message.
func TestRsyslogRefusesPlainTCP(t *testing.T) {
	p := rsyslogd.NewPKI(t, t.TempDir(), "srv")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &p})
	conn, err := net.DialTimeout("tcp", d.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	batch, _ := frames(t, f, []string{"CEF:0|mcpwatch|mcpwatch|0|MCP-1|plaintext|1|", "CEF:0|mcpwatch|mcpwatch|0|MCP-1|plaintext|1|"})
	_, _ = conn.Write(batch)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = bufio.NewReader(conn).ReadByte()
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("TLS listener kept a plaintext connection open (read: %v)", err)
	}
	time.Sleep(500 * time.Millisecond)
	if lines := rsyslogd.Lines(d.Raw); len(lines) != 0 {
		t.Fatalf("plaintext messages were accepted: %q", lines)
	}
}

// A collector whose certificate our CA bundle does not vouch for is never sent a byte.
func TestRsyslogWrongCA(t *testing.T) {
	dir := t.TempDir()
	p := rsyslogd.NewPKI(t, dir, "srv")
	other := rsyslogd.NewPKI(t, dir, "other")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &p})
	c := tlsClient(t, d, p, func(c *syslog.Config) { c.CAFile = other.CAFile; c.RetryFor = 300 * time.Millisecond })
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	batch, _ := frames(t, f, []string{"CEF:0|mcpwatch|mcpwatch|0|MCP-1|wrong CA|1|"})
	err := c.Send(t.Context(), batch)
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
		t.Fatalf("Send to an untrusted collector: %v, want unknown authority", err)
	}
	// The wrong server name is refused the same way.
	c2 := tlsClient(t, d, p, func(c *syslog.Config) { c.ServerName = "siem.example.com"; c.RetryFor = 300 * time.Millisecond })
	if err := c2.Send(t.Context(), batch); err == nil || !strings.Contains(err.Error(), "siem.example.com") {
		t.Fatalf("Send with a wrong server name: %v", err)
	}
	if lines := rsyslogd.Lines(d.Raw); len(lines) != 0 {
		t.Fatalf("messages reached an unverified collector: %q", lines)
	}
}

// The collector restarts (SIGKILL, then a new rsyslogd on the same port) between batches: the
// next Send notices the dead connection, reconnects and delivers everything. Before the
// liveness check, the first batch after a restart vanished into the dead socket.
func TestRsyslogRestart(t *testing.T) {
	p := rsyslogd.NewPKI(t, t.TempDir(), "srv")
	d := rsyslogd.Start(t, rsyslogd.Options{PKI: &p})
	c := tlsClient(t, d, p, nil)
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	var sent []string
	send := func(n int) {
		var cefs []string
		for range n {
			cefs = append(cefs, "CEF:0|mcpwatch|mcpwatch|0|MCP-1|event|1|cnt="+strconv.Itoa(len(sent)+len(cefs)))
		}
		batch, msgs := frames(t, f, cefs)
		if err := c.Send(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			sent = append(sent, string(m))
		}
	}
	send(5)
	d.WaitLines(d.Raw, 5, 30*time.Second)
	for round := range 3 {
		d.Restart()
		send(5)
		d.WaitLines(d.Raw, len(sent), 30*time.Second)
		t.Logf("round %d: %d messages delivered", round, len(sent))
	}
	got := map[string]int{}
	for _, l := range rsyslogd.Lines(d.Raw) {
		got[l]++
	}
	for _, s := range sent {
		if got[s] == 0 {
			t.Errorf("lost across a collector restart: %q", s)
		}
	}
}

// Plain TCP works when configured explicitly (and only then: the default is TLS).
func TestRsyslogPlainTCPTransport(t *testing.T) {
	d := rsyslogd.Start(t, rsyslogd.Options{})
	c, err := syslog.NewClient(syslog.Config{Address: d.Addr, Transport: syslog.TransportTCP, RetryFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, _ := syslog.NewFormatter(syslog.FormatterConfig{})
	batch, msgs := frames(t, f, hostileCEF()[:3])
	if err := c.Send(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.TLSState(); ok {
		t.Fatal("plain TCP transport reports a TLS state")
	}
	raw := d.WaitLines(d.Raw, len(msgs), 30*time.Second)
	for i, m := range msgs {
		if raw[i] != string(m) {
			t.Errorf("message %d: got %q want %q", i, raw[i], m)
		}
	}
}
