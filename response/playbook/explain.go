package playbook

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/mcpwatch/mcpwatch/event"
)

// Explanation says, for each playbook, whether it matched a finding and why (or why not).
type Explanation struct {
	Playbooks []PlaybookExplanation
}

// PlaybookExplanation is one playbook's verdict on a finding.
type PlaybookExplanation struct {
	Name    string
	Matched bool
	// Conditions are the matched conditions when Matched; Failed the first failed one otherwise.
	Conditions []string
	Failed     string
	Actions    []Action
	DryRun     bool
}

// Explain tests f against every playbook without touching any state.
func (s *Set) Explain(f *event.Finding) Explanation {
	var out Explanation
	for _, p := range s.Playbooks {
		matched, failed := p.match.test(f)
		out.Playbooks = append(out.Playbooks, PlaybookExplanation{Name: p.Name, Matched: failed == "",
			Conditions: matched, Failed: failed, Actions: p.Actions, DryRun: p.DryRun})
	}
	return out
}

// String renders the explanation for a terminal.
func (e Explanation) String() string {
	var b strings.Builder
	for _, p := range e.Playbooks {
		if !p.Matched {
			fmt.Fprintf(&b, "playbook %s: no match: %s\n", p.Name, p.Failed)
			continue
		}
		dry := ""
		if p.DryRun {
			dry = " (dry run)"
		}
		fmt.Fprintf(&b, "playbook %s: match%s: %s\n", p.Name, dry, strings.Join(p.Conditions, ", "))
		for _, a := range p.Actions {
			fmt.Fprintf(&b, "  %s\n", a.String())
			if a.Escalate != nil {
				fmt.Fprintf(&b, "    after %d findings within %s: %s\n", a.Escalate.After, a.Escalate.Within, a.Escalate.To.String())
			}
		}
	}
	return b.String()
}

// String renders an action: "revoke subject for 1h0m0s", "notify soc".
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	switch {
	case a.Kind == KindNotify:
		b.WriteString(" " + a.Channel)
	default:
		b.WriteString(" " + string(a.Scope))
	}
	switch {
	case a.Permanent:
		b.WriteString(" permanently")
	case a.ExpireAfter > 0:
		b.WriteString(" for " + a.ExpireAfter.String())
	}
	if a.DedupWindow > 0 {
		b.WriteString(", dedup " + a.DedupWindow.String())
	}
	if a.NeedsApproval {
		b.WriteString(", after approval (impact " + a.Impact().String() + ")")
	}
	return b.String()
}

// ReadFinding reads a finding record as JSON (as on the findings topic) from path, for
// `mcpwatch playbook explain`.
func ReadFinding(path string) (*event.Finding, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f event.Finding
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: not a finding record: %w", path, err)
	}
	return &f, nil
}
