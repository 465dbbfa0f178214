package sigma

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpwatch/mcpwatch/detectors/detect"
	"github.com/mcpwatch/mcpwatch/event"
)

// kernelEvent is a kernel event of a sandboxed server as the eBPF agent publishes it.
func kernelEvent(syscall string) *event.Event {
	e := &event.Event{
		Schema: 1, ID: "k-" + syscall, Time: time.Date(2026, 12, 1, 9, 6, 12, 0, time.UTC),
		Source: event.SourceKernel, Tenant: "acme", Principal: event.Principal{Subject: "alice"},
		Correlation: event.Correlation{SessionID: "s-1"}, Target: event.Target{Server: "files", Sandbox: "files-1"},
		Outcome: event.Outcome{Result: event.ResultAllowed},
		Process: &event.Process{PID: 42, PPID: 41, UID: 1000, Comm: "node", CgroupID: 7, Syscall: syscall},
	}
	switch syscall {
	case "execve":
		e.Process.Exe, e.Process.Path, e.Process.Comm = "/bin/sh", "/bin/sh", "sh"
		e.Process.Args = []string{"/bin/sh", "-c", "cat /etc/passwd"}
	case "openat":
		e.Process.Path = "/home/dev/.ssh/id_ed25519"
	case "connect":
		e.Network = event.Network{DstIP: "203.0.113.9", DstPort: 4444}
	}
	return e
}

func kernelRule(category, detection string) string {
	return strings.Replace(rule(detection), "category: mcp_call", "category: "+category, 1)
}

// Each kernel category covers exactly its system calls of kernel events, with the process fields
// and Sigma's taxonomy names; an MCP message never matches a kernel rule, nor a kernel event an
// mcp_call rule that would match anything. If this failed, a shell spawned in a sandbox would go
// unreported, or a file rule would fire on every exec.
func TestKernelCategories(t *testing.T) {
	for _, tc := range []struct {
		name, category, detection string
		matches                   []string // syscalls of kernelEvent that match
	}{
		{"exec by image", CategoryProcessCreation, "  sel:\n    Image|endswith: /sh\n  condition: sel", []string{"execve"}},
		{"exec by JSON name and args", CategoryProcessCreation, "  sel:\n    process.exe: /bin/sh\n    process.args: -c\n    CommandLine|contains: /etc/passwd\n    ParentProcessId: 41\n  condition: sel", []string{"execve"}},
		{"any exec", CategoryProcessCreation, "  sel:\n    target.sandbox: '*'\n  condition: sel", []string{"execve"}},
		{"file by taxonomy name", CategoryFileAccess, "  sel:\n    TargetFilename|contains: /.ssh/\n  condition: sel", []string{"openat"}},
		{"any file", CategoryFileAccess, "  sel:\n    process.syscall|startswith: open\n  condition: sel", []string{"openat"}},
		{"connect", CategoryNetworkConnection, "  sel:\n    DestinationPort: 4444\n  filter:\n    DestinationIp|cidr: [10.0.0.0/8, 127.0.0.0/8]\n  condition: sel and not filter", []string{"connect"}},
		{"attribution", CategoryNetworkConnection, "  sel:\n    principal.id: alice\n    correlation.session_id: s-1\n  condition: sel", []string{"connect"}},
		{"mcp_call rule", CategoryMCP, "  sel:\n    target.server: files\n  condition: sel", nil},
		{"keyword on the command line", CategoryProcessCreation, "  keywords:\n    - passwd\n  condition: keywords", []string{"execve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := mustParse(t, kernelRule(tc.category, tc.detection))
			var got []string
			for _, sc := range []string{"execve", "openat", "connect", "exit"} {
				if len(rs.Match(kernelEvent(sc))) > 0 {
					got = append(got, sc)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.matches, ",") {
				t.Errorf("matched %v, want %v", got, tc.matches)
			}
			mcpEvent := baseEvent()
			mcpEvent.Target.Server, mcpEvent.Target.Sandbox = "files", "files-1"
			mcpEvent.Principal.Subject, mcpEvent.Correlation.SessionID = "alice", "s-1"
			if tc.category != CategoryMCP && len(rs.Match(mcpEvent)) > 0 {
				t.Error("a kernel rule matched an MCP message")
			}
			if tc.category == CategoryMCP && len(rs.Match(mcpEvent)) == 0 {
				t.Error("the mcp_call rule did not match its MCP message")
			}
		})
	}
}

// The detector turns a kernel rule's match into a finding for the event's principal, as it
// does for MCP rules: kernel events reach the detector. If this failed, the detect stage would
// ignore every kernel event (as it did before kernel categories were mapped).
func TestKernelRuleFinding(t *testing.T) {
	rs := mustParse(t, kernelRule(CategoryProcessCreation, "  sel:\n    Image|endswith: /sh\n  condition: sel"))
	d, err := NewWithRules(rs, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out detect.Output
	d.Observe(kernelEvent("execve"), &out)
	if len(out.Findings) != 1 || out.Findings[0].Principal.Subject != "alice" || out.Findings[0].Detector != Name {
		t.Fatalf("findings %+v", out.Findings)
	}
}

// A finding names the server, tool and sandbox of its event as evidence (features "server",
// "tool", "sandbox"), after the matched fields: a playbook quarantines the sandbox a kernel rule
// fired on from that evidence. If this failed, `quarantine: sandbox` on a Sigma finding would
// decide nothing, and notifications would not say which sandbox misbehaved.
func TestFindingNamesItsSandbox(t *testing.T) {
	rs := mustParse(t, kernelRule(CategoryProcessCreation, "  sel:\n    Image|endswith: /sh\n  condition: sel"))
	d, err := NewWithRules(rs, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var out detect.Output
	d.Observe(kernelEvent("execve"), &out)
	if len(out.Findings) != 1 {
		t.Fatalf("findings %+v", out.Findings)
	}
	var got []string
	for _, e := range out.Findings[0].Evidence {
		got = append(got, e.Feature+"="+e.ObservedText)
	}
	// A kernel event names no tool: no tool evidence.
	if want := "Image|endswith=/bin/sh,server=files,sandbox=files-1"; strings.Join(got, ",") != want {
		t.Errorf("evidence %s, want %s", strings.Join(got, ","), want)
	}
}
