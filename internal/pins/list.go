package pins

import (
	"slices"
	"time"
)

// States of a pin, as [Pin.State] names them.
const (
	StateOK         = "ok"         // the server announces the approved definition
	StateChanged    = "changed"    // the server announces a definition that was not approved
	StateUnapproved = "unapproved" // no definition was ever approved (strict mode)
)

// State says whether the tool may run as announced: [StateUnapproved], [StateChanged] or
// [StateOK].
func (p Pin) State() string {
	switch {
	case p.SHA256 == "":
		return StateUnapproved
	case p.Pending():
		return StateChanged
	}
	return StateOK
}

// ListColumns name the cells of the rows [File.List] returns.
var ListColumns = []string{"SERVER", "TOOL", "STATE", "PINNED", "SEEN", "APPROVED BY", "APPROVED AT"}

// List returns one row per tool, servers and then tools in name order, as `mcpwatch tools list`
// prints them: server, tool, [Pin.State], the pinned and the last seen hash (first 12 digits,
// "-" when none), who approved the pin and when (RFC 3339, empty when never). With pendingOnly
// it leaves out the tools whose state is ok.
func (f *File) List(pendingOnly bool) [][]string {
	var rows [][]string
	for _, s := range f.ServerNames() {
		var tools []string
		for t := range f.Servers[s] {
			tools = append(tools, t)
		}
		slices.Sort(tools)
		for _, t := range tools {
			p := f.Servers[s][t]
			state := p.State()
			if pendingOnly && state == StateOK {
				continue
			}
			at := ""
			if !p.ApprovedAt.IsZero() {
				at = p.ApprovedAt.Format(time.RFC3339)
			}
			rows = append(rows, []string{s, t, state, shortHash(p.SHA256), shortHash(p.SeenSHA256), p.ApprovedBy, at})
		}
	}
	return rows
}

func shortHash(h string) string {
	if h == "" {
		return "-"
	}
	return h[:min(12, len(h))]
}
