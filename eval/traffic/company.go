package traffic

import (
	_ "embed"
	"fmt"
	"strings"
)

// The simulated company: its MCP servers, what each role does with them, and its people. The
// catalog and policy are embedded YAML loaded by the real loaders (enrich, policy); the directory
// is rendered from the roster (its size is a parameter) in the same YAML format.

//go:embed catalog.yaml
var catalogYAML []byte

//go:embed policy.yaml
var policyYAML []byte

// Tenant is the simulated company's tenant.
const Tenant = "acme"

// CatalogYAML is the data catalog (enrich.ParseCatalog format).
func CatalogYAML() []byte { return catalogYAML }

// PolicyYAML is the access policy (policy.Load format).
func PolicyYAML() []byte { return policyYAML }

// Action is one kind of thing a principal does: a tool call, a resource read or a prompt get.
type Action struct {
	Method string // tools/call, resources/read, prompts/get
	Server string
	Name   string // tool or prompt name; the URI prefix for resources
	// RespMedian is the typical response size in bytes.
	RespMedian int
}

func tool(server, name string, resp int) Action {
	return Action{Method: "tools/call", Server: server, Name: name, RespMedian: resp}
}

// Tools of every server, by "server/tool".
var allTools = []Action{
	tool("data", "db_query", 4000), tool("data", "file_read", 16000), tool("data", "list_tables", 600),
	tool("crm", "lookup_customer", 1200), tool("crm", "update_ticket", 300), tool("crm", "search_tickets", 2500),
	tool("payments", "transfer_funds", 400), tool("payments", "refund", 350), tool("payments", "get_balance", 250),
	tool("comms", "send_email", 200), tool("comms", "post_message", 150), tool("comms", "http_post", 300),
	tool("devops", "deploy", 900), tool("devops", "read_logs", 12000), tool("devops", "get_secret", 200),
	tool("hr", "employee_record", 1500), tool("hr", "org_chart", 3000),
}

func toolAction(key string) Action {
	for _, a := range allTools {
		if a.Server+"/"+a.Name == key {
			return a
		}
	}
	panic("traffic: unknown tool " + key)
}

var (
	resReports = Action{Method: "resources/read", Server: "data", Name: "file:///reports/", RespMedian: 20000}
	resFinance = Action{Method: "resources/read", Server: "data", Name: "s3://finance-data/", RespMedian: 30000}
	resWiki    = Action{Method: "resources/read", Server: "wiki", Name: "wiki://eng/", RespMedian: 5000}
	resHR      = Action{Method: "resources/read", Server: "hr", Name: "hr://records/", RespMedian: 2000}
	prSQL      = Action{Method: "prompts/get", Server: "data", Name: "sql_helper", RespMedian: 800}
	prTicket   = Action{Method: "prompts/get", Server: "crm", Name: "summarize_ticket", RespMedian: 900}
)

// Role is a persona: what people in it do and how.
type Role struct {
	Name       string
	Department string
	// Mix is the role's usual actions with base weights; each principal reweights and drops some.
	Mix []Weighted
	// Service roles run around the clock at a steady pace.
	Service bool
	Share   float64 // of the roster
}

// Weighted is an action with its base weight.
type Weighted struct {
	Action
	W float64
}

func w(a Action, wt float64) Weighted { return Weighted{a, wt} }
func wt(key string, x float64) Weighted {
	return Weighted{toolAction(key), x}
}

// Roles of the company.
var Roles = []Role{
	{Name: "analyst", Department: "finance", Share: 0.22, Mix: []Weighted{
		wt("data/db_query", 8), wt("data/file_read", 3), wt("data/list_tables", 1), w(resReports, 2), w(resFinance, 1),
		w(prSQL, 1), wt("comms/send_email", 1), wt("comms/post_message", 2), wt("hr/org_chart", 0.2)}},
	{Name: "support", Department: "customer-care", Share: 0.22, Mix: []Weighted{
		wt("crm/lookup_customer", 8), wt("crm/update_ticket", 6), wt("crm/search_tickets", 3), w(prTicket, 1),
		wt("comms/send_email", 3), wt("comms/post_message", 1), wt("payments/get_balance", 1)}},
	{Name: "engineer", Department: "engineering", Share: 0.22, Mix: []Weighted{
		wt("devops/read_logs", 6), wt("devops/deploy", 2), wt("devops/get_secret", 0.5), wt("data/list_tables", 1),
		wt("data/db_query", 1.5), w(resWiki, 2), w(prSQL, 0.5), wt("comms/post_message", 3), wt("comms/http_post", 1)}},
	{Name: "sales", Department: "sales", Share: 0.14, Mix: []Weighted{
		wt("crm/lookup_customer", 6), wt("crm/search_tickets", 2), wt("comms/send_email", 5), wt("comms/post_message", 2)}},
	{Name: "hr", Department: "people", Share: 0.07, Mix: []Weighted{
		wt("hr/employee_record", 6), wt("hr/org_chart", 3), w(resHR, 2), wt("comms/send_email", 2), wt("comms/post_message", 1)}},
	{Name: "finance-ops", Department: "finance", Share: 0.09, Mix: []Weighted{
		wt("payments/transfer_funds", 3), wt("payments/refund", 3), wt("payments/get_balance", 5), wt("data/db_query", 3),
		w(resFinance, 2), wt("comms/send_email", 1)}},
	{Name: "service", Department: "data-platform", Share: 0.04, Service: true, Mix: []Weighted{
		wt("data/db_query", 6), wt("data/file_read", 2), w(resReports, 1), wt("comms/http_post", 2)}},
}

// Zones where people work, with their office network and the share of the roster.
var zones = []struct {
	Name   string
	Office string // first three octets of the office network
	Share  float64
}{
	{"Europe/Berlin", "10.20.1", 0.4}, {"America/New_York", "10.30.1", 0.35}, {"Asia/Seoul", "10.10.1", 0.25},
}

// Clients people and services use: name, versions, user-agent form.
var clients = []struct {
	Name     string
	Versions []string
	UA       string // %s is the version
}{
	{"claude-desktop", []string{"0.12.4", "0.13.1"}, "Claude-User/%s (darwin)"},
	{"cursor", []string{"1.6.2", "1.7.0"}, "Cursor/%s (linux x64)"},
	{"vscode-copilot", []string{"1.312.0"}, "VSCode/1.104 copilot-chat/%s"},
	{"acme-agent", []string{"2.3.0", "2.4.1"}, "acme-agent/%s python-httpx/0.28"},
}

var serviceClient = struct{ Name, Version, UA string }{"acme-batch", "5.1.0", "acme-batch/5.1.0 go-http-client/1.1"}

// DirectoryYAML renders the roster as a principal directory (enrich.ParseDirectory YAML format).
func DirectoryYAML(ps []*Principal) []byte {
	var b strings.Builder
	b.WriteString("# Generated by eval/traffic: the simulated company's principal directory.\nversion: 1\nprincipals:\n")
	for _, p := range ps {
		if p.Subject != "" {
			fmt.Fprintf(&b, "  - subject: %s\n", p.Subject)
		} else {
			fmt.Fprintf(&b, "  - client_id: %s\n", p.ClientID)
		}
		fmt.Fprintf(&b, "    roles: [%s]\n    department: %s\n    peer_group: %s\n", p.Role.Name, p.Role.Department, p.PeerGroup)
	}
	return []byte(b.String())
}
