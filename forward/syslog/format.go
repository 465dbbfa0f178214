// Package syslog sends CEF lines to a SIEM's syslog collector: RFC 5424 messages in RFC 6587
// octet-counted frames over TLS 1.3 (RFC 5425) or, only when configured explicitly, plain TCP.
//
// [Formatter] builds the frames; [Client] holds the connection, reconnects with backoff and
// reports a batch written only when every byte reached the socket of a live connection.
package syslog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// RFC 5424 field limits (section 6).
const (
	MaxHostname = 255
	MaxAppName  = 48
	MaxProcID   = 128
	MaxMsgID    = 32
	MaxSDName   = 32
)

// DefaultMaxMessage is the default limit on one SYSLOG-MSG (header, structured data and CEF
// line). RFC 5425 receivers must accept 2048 octets and should accept 8192; CEF lines of tool
// calls with long arguments are larger, so the default is 64 KiB and the collector must be told
// (rsyslog: global(maxMessageSize="64k"); syslog-ng: log-msg-size(65536)).
const DefaultMaxMessage = 64 << 10

// AppName is the APP-NAME of every message.
const AppName = "mcpwatch"

// Errors that make one message unsendable. They are permanent: the record is dead-lettered.
var (
	ErrInvalidMessage = errors.New("syslog: message is not sendable")
	ErrTooLarge       = errors.New("syslog: message exceeds the size limit")
)

// Facility is a syslog facility, 0–23.
type Facility int

// Facilities mcpwatch users pick: audit trails usually go to "audit" (13), "authpriv" (10) or one
// of local0–local7.
var facilityNames = map[string]Facility{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14,
	"clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
	"local5": 21, "local6": 22, "local7": 23,
}

// DefaultFacility is "audit" (13, "log audit" in RFC 5424).
const DefaultFacility Facility = 13

// ParseFacility reads a facility name (audit, authpriv, local4, ...) or number 0–23.
func ParseFacility(s string) (Facility, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if f, ok := facilityNames[s]; ok {
		return f, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 23 {
		return Facility(n), nil
	}
	return 0, fmt.Errorf("syslog facility %q: want a name (audit, authpriv, local0..local7, ...) or 0-23", s)
}

// Severity maps a CEF severity (0–10) to a syslog severity (0–7). The CEF bands are ArcSight's:
//
//	CEF 0–3  Low        → 6 Informational
//	CEF 4–6  Medium     → 4 Warning
//	CEF 7–8  High       → 3 Error
//	CEF 9–10 Very-High  → 2 Critical
//
// Emergency (0) and Alert (1) mean the sending system itself is unusable, which an audited MCP
// call never says about mcpwatch, so they are not used. Values outside 0–10 are clamped.
func Severity(cef int) int {
	switch {
	case cef <= 3:
		return 6
	case cef <= 6:
		return 4
	case cef <= 8:
		return 3
	}
	return 2
}

// Message is one event or finding to send.
type Message struct {
	Time     time.Time // when it happened; written in UTC with microseconds
	Severity int       // CEF severity 0–10
	MsgID    string    // the CEF signature id, e.g. MCP-1001 (MSGID)
	ID       string    // the event or finding id, written as structured data when enabled
	CEF      string    // the CEF line, sent unchanged as MSG
}

// Formatter renders [Message]s as RFC 5424 SYSLOG-MSGs. Use [NewFormatter]; the zero value is not
// usable.
type Formatter struct {
	pri      int // facility*8, severity added per message
	hostname string
	procID   string
	sdID     string // "" writes STRUCTURED-DATA as "-"
	bom      bool
	max      int
}

// FormatterConfig configures a [Formatter].
type FormatterConfig struct {
	// Facility of every message. Its zero value is kern (0): set [DefaultFacility] or another.
	Facility Facility
	// Hostname is HOSTNAME: 1–255 printable US-ASCII characters. Empty means "-" (unknown).
	Hostname string
	// ProcID is PROCID, usually the process id: 1–128 printable US-ASCII characters or "".
	ProcID string
	// SDID, when set, adds one SD element `[SDID id="<event id>"]`. A private SD-ID must carry
	// the sender's IANA enterprise number (RFC 5424 section 7.2.2), e.g. "mcpwatch@32473"
	// (32473 is the documentation number of RFC 5612). Empty: STRUCTURED-DATA is "-".
	SDID string
	// BOM starts MSG with the UTF-8 byte order mark, as RFC 5424 section 6.4 asks of UTF-8 MSGs.
	// Off by default: most CEF parsers (ArcSight, QRadar, Splunk add-ons) expect "CEF:" as the
	// first bytes, and a BOM ahead of it breaks them.
	BOM bool
	// MaxMessage bounds one SYSLOG-MSG in octets. Default [DefaultMaxMessage].
	MaxMessage int
}

// NewFormatter validates cfg.
func NewFormatter(cfg FormatterConfig) (*Formatter, error) {
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("syslog facility %d: want 0-23", cfg.Facility)
	}
	if err := checkField("hostname", cfg.Hostname, MaxHostname); err != nil {
		return nil, err
	}
	if err := checkField("procid", cfg.ProcID, MaxProcID); err != nil {
		return nil, err
	}
	if cfg.SDID != "" {
		if err := checkField("SD-ID", cfg.SDID, MaxSDName); err != nil {
			return nil, err
		}
		if strings.ContainsAny(cfg.SDID, `= ]"`) {
			return nil, fmt.Errorf("syslog SD-ID %q: must not contain '=', ' ', ']' or '\"'", cfg.SDID)
		}
		if !strings.Contains(cfg.SDID, "@") {
			return nil, fmt.Errorf("syslog SD-ID %q: a private SD-ID is name@<IANA enterprise number>, e.g. mcpwatch@32473", cfg.SDID)
		}
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxMessage < 480 {
		return nil, fmt.Errorf("syslog max message %d: RFC 5424 requires at least 480 octets", cfg.MaxMessage)
	}
	return &Formatter{pri: int(cfg.Facility) * 8, hostname: nilValue(cfg.Hostname), procID: nilValue(cfg.ProcID),
		sdID: cfg.SDID, bom: cfg.BOM, max: cfg.MaxMessage}, nil
}

// checkField rejects a header field that is too long or not printable US-ASCII (RFC 5424
// PRINTUSASCII, %d33-126).
func checkField(name, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("syslog %s %q: longer than %d characters", name, v, limit)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 33 || v[i] > 126 {
			return fmt.Errorf("syslog %s %q: only printable US-ASCII characters without spaces are allowed", name, v)
		}
	}
	return nil
}

func nilValue(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// timeLayout is RFC 3339 in UTC with TIME-SECFRAC of 6 digits, the most RFC 5424 allows.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Append appends m as one SYSLOG-MSG (no framing) to dst. It fails with [ErrInvalidMessage] if the
// CEF line is empty, not UTF-8 or holds control characters other than TAB (a CEF renderer
// escapes them, so such a line did not come from one, and a raw newline would split the event
// in every collector that writes lines), and with [ErrTooLarge] past the size limit.
func (f *Formatter) Append(dst []byte, m Message) ([]byte, error) {
	if err := checkMSG(m.CEF); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(f.pri+Severity(m.Severity)), 10)
	dst = append(dst, ">1 "...)
	if t := m.Time.UTC(); m.Time.IsZero() || t.Year() < 1 || t.Year() > 9999 {
		dst = append(dst, '-') // RFC 3339 has four-digit years only
	} else {
		dst = t.AppendFormat(dst, timeLayout)
	}
	dst = append(dst, ' ')
	dst = append(dst, f.hostname...)
	dst = append(dst, ' ')
	dst = append(dst, AppName...)
	dst = append(dst, ' ')
	dst = append(dst, f.procID...)
	dst = append(dst, ' ')
	dst = appendPrintable(dst, m.MsgID, MaxMsgID)
	dst = append(dst, ' ')
	if f.sdID == "" || m.ID == "" {
		dst = append(dst, '-')
	} else {
		dst = append(dst, '[')
		dst = append(dst, f.sdID...)
		dst = append(dst, ` id="`...)
		dst = appendParamValue(dst, m.ID)
		dst = append(dst, `"]`...)
	}
	dst = append(dst, ' ')
	if f.bom {
		dst = append(dst, "\ufeff"...)
	}
	dst = append(dst, m.CEF...)
	if n := len(dst) - start; n > f.max {
		return dst[:start], fmt.Errorf("%w: %d octets, limit %d (raise the limit here and in the collector)", ErrTooLarge, n, f.max)
	}
	return dst, nil
}

// checkMSG accepts what a CEF renderer writes: non-empty UTF-8 without control characters other
// than TAB.
func checkMSG(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty CEF line", ErrInvalidMessage)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: CEF line is not valid UTF-8", ErrInvalidMessage)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return fmt.Errorf("%w: CEF line holds control character %#02x at byte %d (newlines must be escaped as \\n)", ErrInvalidMessage, c, i)
		}
	}
	return nil
}

// appendPrintable appends s as a header field: at most limit bytes, bytes outside PRINTUSASCII
// replaced by '_', "-" when empty.
func appendPrintable(dst []byte, s string, limit int) []byte {
	if s == "" {
		return append(dst, '-')
	}
	if len(s) > limit {
		s = s[:limit]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendParamValue appends an SD-PARAM value: UTF-8 with '"', '\' and ']' escaped by a backslash
// (RFC 5424 section 6.3.3). Invalid UTF-8 and control characters become U+FFFD, so the header
// never carries a newline or NUL.
func appendParamValue(dst []byte, s string) []byte {
	for _, r := range s { // ranging a string yields U+FFFD for invalid bytes
		switch {
		case r == '"' || r == '\\' || r == ']':
			dst = append(dst, '\\', byte(r))
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			dst = utf8.AppendRune(dst, utf8.RuneError)
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// AppendFrame appends msg with RFC 6587 octet-counting framing: "MSG-LEN SP SYSLOG-MSG", the
// framing RFC 5425 mandates for TLS.
func AppendFrame(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}

// ErrFrame marks bytes that are not an octet-counted frame.
var ErrFrame = errors.New("syslog: malformed octet-counted frame")

// ReadFrame splits the first octet-counted frame off b. It returns the SYSLOG-MSG and the bytes
// after it. It is the inverse of [AppendFrame], for tests and receivers.
func ReadFrame(b []byte) (msg, rest []byte, err error) {
	i := 0
	for i < len(b) && i < 10 && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' || b[0] == '0' {
		return nil, b, fmt.Errorf("%w: no MSG-LEN", ErrFrame)
	}
	n, err := strconv.Atoi(string(b[:i]))
	if err != nil || n > len(b)-i-1 {
		return nil, b, fmt.Errorf("%w: MSG-LEN %s, %d octets follow", ErrFrame, b[:i], len(b)-i-1)
	}
	return b[i+1 : i+1+n], b[i+1+n:], nil
}
