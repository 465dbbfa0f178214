package playbook

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/mcpwatch/mcpwatch/internal/glob"
	"github.com/mcpwatch/mcpwatch/internal/yamlpos"
)

// Limits on what [Load] accepts: a playbook file is small and not trusted to be sane.
const (
	MaxFileSize  = 1 << 20
	maxPlaybooks = 1000
	maxActions   = 32
)

// Error is one problem in a playbook file, with its position.
type Error struct {
	File         string
	Line, Column int // 1-based; 0 when unknown
	Msg          string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// The file as written. Pointers tell "not set" from a zero value.
type fileDoc struct {
	Defaults  defaultsDoc   `yaml:"defaults"`
	DryRun    bool          `yaml:"dry_run"`
	Approval  *approvalDoc  `yaml:"approval"`
	Playbooks []playbookDoc `yaml:"playbooks"`
}

type approvalDoc struct {
	Approvers   []string       `yaml:"approvers"`
	Required    int            `yaml:"required"`
	Timeout     *time.Duration `yaml:"timeout"`
	OnTimeout   string         `yaml:"on_timeout"`
	AboveImpact string         `yaml:"above_impact"`
}

type defaultsDoc struct {
	ExpireAfter *time.Duration `yaml:"expire_after"`
	DedupWindow *time.Duration `yaml:"dedup_window"`
}

type playbookDoc struct {
	Name    string      `yaml:"name"`
	DryRun  bool        `yaml:"dry_run"`
	Match   matchDoc    `yaml:"match"`
	Actions []actionDoc `yaml:"actions"`
}

type matchDoc struct {
	Source      string   `yaml:"source"` // finding (default) or score
	Detector    string   `yaml:"detector"`
	Check       string   `yaml:"check"`
	MinScore    *float64 `yaml:"min_score"`
	MinSeverity *int     `yaml:"min_severity"`
	Role        string   `yaml:"role"`
	Department  string   `yaml:"department"`
	PeerGroup   string   `yaml:"peer_group"`
	Server      string   `yaml:"server"`
	Tool        string   `yaml:"tool"`
	Sandbox     string   `yaml:"sandbox"`
}

type actionDoc struct {
	Revoke      string         `yaml:"revoke"`       // scope: subject, token, client
	Quarantine  string         `yaml:"quarantine"`   // scope: sandbox, server, tool
	BlockEgress *bool          `yaml:"block_egress"` // of the finding's sandbox
	StepUp      *bool          `yaml:"step_up"`      // of the finding's subject
	Notify      string         `yaml:"notify"`       // channel name
	ExpireAfter *time.Duration `yaml:"expire_after"`
	Permanent   bool           `yaml:"permanent"`
	DedupWindow *time.Duration `yaml:"dedup_window"`
	Escalate    *escalateDoc   `yaml:"escalate"`
	// Approval overrides the file's above_impact rule for this action: true waits for approval,
	// false never does.
	Approval *bool `yaml:"approval"`
}

type escalateDoc struct {
	After  int        `yaml:"after"`
	Within string     `yaml:"within"`
	To     *actionDoc `yaml:"to"`
}

// LoadFile loads the playbook file at path.
func LoadFile(path string) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("playbook: %w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("playbook: %w", err)
	}
	return Load(path, src)
}

// Load parses and validates a playbook file; name is used in error positions. Unknown keys,
// duplicate keys, wrong types and every semantic problem are reported, each as an [*Error]
// "name:line:col: message"; semantic problems are all reported at once (joined).
func Load(name string, src []byte) (*Set, error) {
	if len(src) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, posError(name, err, nil)
	}
	if len(file.Docs) > 1 {
		return nil, &Error{File: name, Line: yamlpos.Line(file.Docs[1].Start), Column: yamlpos.Col(file.Docs[1].Start), Msg: "more than one YAML document"}
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, &Error{File: name, Msg: "empty playbook file (want `playbooks:` with at least one playbook)"}
	}
	var doc fileDoc
	if err := yaml.NodeToValue(file.Docs[0].Body, &doc, yaml.Strict()); err != nil {
		return nil, posError(name, err, file.Docs[0].Body)
	}
	c := &compiler{file: name, ast: file}
	s := c.compile(&doc)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	s.name = name
	return s, nil
}

type compiler struct {
	file string
	ast  *ast.File
	errs []error
}

// errf records a problem at the YAML path (e.g. "playbooks[0].actions[1].expire_after"), pointing
// at the node when the file has it, else at the nearest enclosing one.
func (c *compiler) errf(path, format string, args ...any) {
	e := &Error{File: c.file, Msg: path + ": " + fmt.Sprintf(format, args...)}
	for p := path; p != ""; p = parent(p) {
		if yp, err := yaml.PathString("$." + p); err == nil {
			if n, err := yp.FilterFile(c.ast); err == nil && n != nil {
				e.Line, e.Column = yamlpos.Line(n.GetToken()), yamlpos.Col(n.GetToken())
				break
			}
		}
	}
	if len(c.errs) < 100 {
		c.errs = append(c.errs, e)
	}
}

func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

func (c *compiler) compile(d *fileDoc) *Set {
	s := &Set{dryRun: d.DryRun, defaultExpire: time.Hour}
	if d.Defaults.ExpireAfter != nil {
		if *d.Defaults.ExpireAfter <= 0 {
			c.errf("defaults.expire_after", "must be positive (for an action that never expires write `permanent: true` on it)")
		}
		s.defaultExpire = *d.Defaults.ExpireAfter
	}
	if d.Defaults.DedupWindow != nil {
		if *d.Defaults.DedupWindow < 0 {
			c.errf("defaults.dedup_window", "must not be negative")
		}
		s.defaultDedup = *d.Defaults.DedupWindow
	}
	s.approval = c.approval(d.Approval)
	if len(d.Playbooks) == 0 {
		c.errf("playbooks", "no playbooks (want a list under `playbooks:`)")
	}
	if len(d.Playbooks) > maxPlaybooks {
		c.errf("playbooks", "more than %d playbooks", maxPlaybooks)
		return s
	}
	names := map[string]bool{}
	for i := range d.Playbooks {
		pd := &d.Playbooks[i]
		path := fmt.Sprintf("playbooks[%d]", i)
		p := &Playbook{Name: pd.Name, DryRun: d.DryRun || pd.DryRun}
		switch {
		case pd.Name == "":
			c.errf(path, "name is required")
		case names[pd.Name]:
			c.errf(path+".name", "playbook %q is defined twice", pd.Name)
		}
		names[pd.Name] = true
		p.match = c.match(path+".match", &pd.Match)
		if len(pd.Actions) == 0 {
			c.errf(path, "no actions (want at least one of revoke, quarantine, block_egress, step_up, notify)")
		}
		if len(pd.Actions) > maxActions {
			c.errf(path+".actions", "more than %d actions", maxActions)
			continue
		}
		for j := range pd.Actions {
			if a, ok := c.action(fmt.Sprintf("%s.actions[%d]", path, j), &pd.Actions[j], s, true); ok {
				p.Actions = append(p.Actions, a)
			}
		}
		s.Playbooks = append(s.Playbooks, p)
	}
	return s
}

func (c *compiler) glob(path, v string) *glob.Pattern {
	if v == "" {
		return nil
	}
	g, err := glob.Compile(v)
	if err != nil {
		c.errf(path, "bad pattern %q: %v", v, err)
		return nil
	}
	return g
}

func (c *compiler) match(path string, m *matchDoc) match {
	out := match{
		detector: c.glob(path+".detector", m.Detector), check: c.glob(path+".check", m.Check),
		role: c.glob(path+".role", m.Role), department: c.glob(path+".department", m.Department),
		peerGroup: c.glob(path+".peer_group", m.PeerGroup), server: c.glob(path+".server", m.Server),
		tool: c.glob(path+".tool", m.Tool), sandbox: c.glob(path+".sandbox", m.Sandbox),
	}
	switch m.Source {
	case "", string(SourceFinding):
		out.source = SourceFinding
	case string(SourceScore):
		out.source = SourceScore
	default:
		c.errf(path+".source", "must be %q or %q, got %q", SourceFinding, SourceScore, m.Source)
	}
	if m.MinScore != nil {
		if *m.MinScore < 0 || *m.MinScore > 100 || *m.MinScore != *m.MinScore {
			c.errf(path+".min_score", "must be between 0 and 100 (the threat score scale), got %v", *m.MinScore)
		}
		out.minScore, out.hasScore = *m.MinScore, true
	}
	if m.MinSeverity != nil {
		if *m.MinSeverity < 0 || *m.MinSeverity > 10 {
			c.errf(path+".min_severity", "must be between 0 and 10 (the CEF severity scale), got %d", *m.MinSeverity)
		}
		out.minSeverity, out.hasSeverity = *m.MinSeverity, true
	}
	return out
}

var (
	revokeScopes     = []Scope{ScopeSubject, ScopeToken, ScopeClient}
	quarantineScopes = []Scope{ScopeSandbox, ScopeServer, ScopeTool}
)

func (c *compiler) action(path string, d *actionDoc, s *Set, top bool) (Action, bool) {
	var a Action
	n := 0
	if d.Revoke != "" {
		n++
		a.Kind, a.Scope = KindRevoke, Scope(d.Revoke)
		if !containsScope(revokeScopes, a.Scope) {
			c.errf(path+".revoke", "unknown scope %q (want subject, token or client)", d.Revoke)
		}
	}
	if d.Quarantine != "" {
		n++
		a.Kind, a.Scope = KindQuarantine, Scope(d.Quarantine)
		if !containsScope(quarantineScopes, a.Scope) {
			c.errf(path+".quarantine", "unknown scope %q (want sandbox, server or tool)", d.Quarantine)
		}
	}
	if d.BlockEgress != nil {
		n++
		a.Kind, a.Scope = KindBlockEgress, ScopeSandbox
		if !*d.BlockEgress {
			c.errf(path+".block_egress", "write `block_egress: true`, or leave the action out")
		}
	}
	if d.StepUp != nil {
		n++
		a.Kind, a.Scope = KindStepUp, ScopeSubject
		if !*d.StepUp {
			c.errf(path+".step_up", "write `step_up: true`, or leave the action out")
		}
	}
	if d.Notify != "" {
		n++
		a.Kind, a.Scope, a.Channel = KindNotify, ScopeChannel, d.Notify
	}
	switch {
	case n == 0:
		c.errf(path, "no action: set one of revoke, quarantine, block_egress, step_up, notify")
		return a, false
	case n > 1:
		c.errf(path, "more than one action in one entry: give each action its own list entry")
		return a, false
	}
	// Expiry: revocations, quarantines, egress blocks and step-up demands expire by default.
	switch {
	case d.Permanent && d.ExpireAfter != nil:
		c.errf(path+".permanent", "permanent and expire_after exclude each other: keep one")
	case d.Permanent && a.Kind == KindNotify:
		c.errf(path+".permanent", "a notification does not expire; remove permanent")
	case d.ExpireAfter != nil && a.Kind == KindNotify:
		c.errf(path+".expire_after", "a notification does not expire; remove expire_after")
	case d.Permanent:
		a.Permanent = true
	case d.ExpireAfter != nil:
		if *d.ExpireAfter <= 0 {
			c.errf(path+".expire_after", "must be positive (for an action that never expires write `permanent: true`)")
		}
		a.ExpireAfter = *d.ExpireAfter
	case a.Kind != KindNotify:
		a.ExpireAfter = s.defaultExpire
	}
	a.NeedsApproval = s.approval != nil && a.Impact() >= s.approval.AboveImpact && s.approval.AboveImpact > 0
	if d.Approval != nil {
		if *d.Approval && s.approval == nil {
			c.errf(path+".approval", "needs the file's `approval:` section (approvers, required, timeout)")
		}
		if *d.Approval && a.Kind == KindNotify {
			c.errf(path+".approval", "a notification does not wait for approval")
		}
		a.NeedsApproval = *d.Approval && s.approval != nil
	}
	a.DedupWindow = s.defaultDedup
	if d.DedupWindow != nil {
		if *d.DedupWindow < 0 {
			c.errf(path+".dedup_window", "must not be negative")
		}
		a.DedupWindow = *d.DedupWindow
	}
	if d.Escalate != nil {
		if !top {
			c.errf(path+".escalate", "an escalation's action cannot escalate again")
			return a, true
		}
		e := d.Escalate
		within, err := time.ParseDuration(e.Within)
		switch {
		case e.Within == "":
			c.errf(path+".escalate", "within is required (e.g. `within: 1h`)")
		case err != nil || within <= 0:
			c.errf(path+".escalate.within", "want a positive duration such as 30m or 1h, got %q", e.Within)
		}
		if e.After < 2 || e.After > maxEscalateAfter {
			c.errf(path+".escalate.after", "must be between 2 and %d findings, got %d", maxEscalateAfter, e.After)
		}
		if e.To == nil {
			c.errf(path+".escalate", "to is required: the stronger action")
			return a, true
		}
		to, ok := c.action(path+".escalate.to", e.To, s, false)
		if ok {
			a.Escalate = &Escalation{After: e.After, Within: within, To: to}
		}
	}
	return a, true
}

// Limits of an approval section.
const (
	maxApprovers       = 100
	maxApprovalTimeout = 24 * time.Hour // approval.MaxTimeout: the approvals topic's retention rests on it
)

func (c *compiler) approval(d *approvalDoc) *ApprovalSpec {
	if d == nil {
		return nil
	}
	const path = "approval"
	a := &ApprovalSpec{Approvers: d.Approvers, Required: d.Required, Timeout: 15 * time.Minute, OnTimeout: "deny"}
	seen := map[string]bool{}
	for i, id := range d.Approvers {
		if id == "" || seen[id] {
			c.errf(fmt.Sprintf("%s.approvers[%d]", path, i), "approver key ids must be non-empty and distinct, got %q", id)
		}
		seen[id] = true
	}
	switch {
	case len(d.Approvers) == 0:
		c.errf(path+".approvers", "at least one approver key id is required")
	case len(d.Approvers) > maxApprovers:
		c.errf(path+".approvers", "more than %d approvers", maxApprovers)
	}
	if d.Required < 1 || d.Required > len(d.Approvers) {
		c.errf(path+".required", "must be between 1 and the number of approvers (%d), got %d", len(d.Approvers), d.Required)
	}
	if d.Timeout != nil {
		if *d.Timeout <= 0 || *d.Timeout > maxApprovalTimeout {
			c.errf(path+".timeout", "must be positive and at most %s, got %s", maxApprovalTimeout, *d.Timeout)
		}
		a.Timeout = *d.Timeout
	}
	switch d.OnTimeout {
	case "", "deny":
	case "approve":
		a.OnTimeout = "approve"
	default:
		c.errf(path+".on_timeout", `must be "deny" (the default) or "approve", got %q`, d.OnTimeout)
	}
	if d.AboveImpact != "" {
		imp, ok := parseImpact(d.AboveImpact)
		if !ok {
			c.errf(path+".above_impact", `must be "low", "medium" or "high", got %q`, d.AboveImpact)
		}
		a.AboveImpact = imp
	}
	return a
}

func containsScope(s []Scope, v Scope) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// posError turns a goccy/go-yaml error into an [*Error] at its token ([yamlpos.Locate]).
func posError(file string, err error, within ast.Node) error {
	line, col, msg := yamlpos.Locate(err, within)
	if strings.HasPrefix(msg, "unknown key ") {
		msg += " (see docs/response.md for the keys a playbook file takes)"
	}
	return &Error{File: file, Line: line, Column: col, Msg: msg}
}
