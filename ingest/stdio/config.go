package stdio

import (
	"errors"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/mcpwatch/mcpwatch/event"
	"github.com/mcpwatch/mcpwatch/ingest/mcp"
	"github.com/mcpwatch/mcpwatch/ingest/mcpwire"
	"github.com/mcpwatch/mcpwatch/internal/mask"
	"github.com/mcpwatch/mcpwatch/internal/pins"
)

// Transport is the value of [event.MCP.Transport] for wrapped stdio servers.
const Transport = "stdio"

// Defaults of [Config].
const (
	DefaultMaxLineBytes = 4 << 20
	DefaultGrace        = 5 * time.Second
	DefaultMaxPending   = 4096
)

// CheckFunc decides whether a client message may reach the server: a non-nil error refuses it.
// method is the JSON-RPC method, tool the tools/call tool name ("" otherwise).
type CheckFunc func(p event.Principal, method, tool string) error

// Refusal is a [CheckFunc] error that names the rule which refused ("control:<key>"), recorded
// as [event.Outcome.PolicyRule] of the denied events. Code is the JSON-RPC error code of the
// answer; 0 means [mcp.CodeDenied].
type Refusal struct {
	Rule, Reason string
	Code         int
	audit        string // the full reason for the audit when the client gets less
}

func (r *Refusal) Error() string { return r.Reason }

// Config configures [Wrap] and [Relay]. The zero value is usable: every field has a default.
type Config struct {
	// ServerName is [event.Target.Server]; [Wrap] defaults it to the command's base name.
	ServerName string
	Tenant     string // default mcp.DefaultTenant
	Observer   string // [event.Event.Observer], e.g. the host name
	// Principal is who runs the client. Its Subject defaults to the OS user running the wrapper;
	// its ClientID, when empty, is taken from the initialize request's clientInfo.name.
	Principal event.Principal

	// NoMasking leaves tool arguments out of events entirely; Mask configures masking otherwise
	// (nil: the default kinds).
	NoMasking bool
	Mask      *mask.Config

	// MaxLineBytes is the longest line audited; longer ones are forwarded unread and audited as
	// uninspected. Default [DefaultMaxLineBytes].
	MaxLineBytes int
	// MaxPending bounds the requests awaiting their response in each direction; beyond it new
	// requests are not tracked and their responses are audited as unmatched.
	MaxPending int
	// Grace is how long [Wrap] waits for the server to exit after closing its stdin (or after
	// SIGTERM) before it escalates. Default [DefaultGrace].
	Grace time.Duration

	// Check, if set, is asked about every request and notification from the client before it is
	// forwarded. A refused request is answered by the wrapper with a JSON-RPC error
	// ([mcp.CodeDenied]) and never reaches the server; a refused notification is dropped.
	Check CheckFunc

	// Policy, if set, decides every governed request from the client (tools/call,
	// resources/read, prompts/get, the lists) as the gateway's policy does, once Check has
	// passed: allowed requests are forwarded and their events name the rule; denied ones (and
	// step-ups, which a local stdio client cannot perform) are answered by the wrapper with
	// [mcp.CodeDenied]. The request has no source address and no device health (conditions on
	// them fail closed); risk comes from Scores.
	Policy mcp.Decider
	// Scores gives the principal's live threat score for the policy; nil: unknown.
	Scores mcp.RiskLookup
	// DataClasses labels targets for the policy and the events, as [mcp.Config.DataClasses].
	DataClasses map[string][]string
	// ToolPins, if set, pins the server's tool definitions as the gateway does: tools/list
	// results are checked and changes audited, and calls of a tool whose definition is not
	// approved are refused.
	ToolPins *pins.Store

	// Stderr receives the server's standard error; default os.Stderr.
	Stderr io.Writer
	// Signals, if set, are forwarded to the server process as they arrive (SIGINT, SIGTERM).
	Signals <-chan os.Signal
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if c.MaxLineBytes < 0 || c.MaxPending < 0 || c.Grace < 0 {
		return errors.New("stdio: limits must not be negative")
	}
	if !c.NoMasking {
		if _, err := mcpwire.NewMasker(false, c.Mask); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Tenant == "" {
		c.Tenant = mcp.DefaultTenant
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Principal.Subject == "" {
		c.Principal.Subject = osUser()
	}
	return c
}

// osUser is the name of the user running the process: from the user database, else $USER, else
// the uid.
func osUser() string {
	if u, err := user.Current(); err == nil {
		if u.Username != "" {
			return u.Username
		}
		return "uid:" + u.Uid
	}
	if s := os.Getenv("USER"); s != "" {
		return s
	}
	return "unknown"
}
