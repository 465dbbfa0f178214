package enrich

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/mcpwatch/mcpwatch/event"
)

func mustDirectory(t testing.TB, path string) *Directory {
	t.Helper()
	d, err := LoadDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func principalEvent(tenant string, p event.Principal) *event.Event {
	return &event.Event{Tenant: tenant, Principal: p, MCP: &event.MCP{Tool: "db_query"}}
}

// The YAML and CSV forms of one directory enrich identically: lookup by subject and client id,
// tenant-specific entries first, credential roles kept, directory roles only when the token had
// none, unknown principals marked. If this breaks, detectors see the wrong department or peer
// group, or the directory overrides what a token said.
func TestDirectoryApply(t *testing.T) {
	for _, path := range []string{"testdata/directory.yaml", "testdata/directory.csv", "testdata/directory-bom.csv"} {
		t.Run(path, func(t *testing.T) {
			d := mustDirectory(t, path)
			if d.Len() != 4 {
				t.Fatalf("%d entries, want 4", d.Len())
			}
			cases := []struct {
				name       string
				tenant     string
				p          event.Principal
				roles      []string
				dept, peer string
				attrs      map[string]string
			}{
				{"token roles kept, directory roles recorded", "acme",
					event.Principal{Subject: "alice", Roles: []string{"admin"}},
					[]string{"admin"}, "finance", "fin-analysts",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "subject", AttrDirectoryRoles: "analyst",
						"directory.manager": "dave", "directory.risk_tier": "low"}},
				{"no token roles: the directory's, marked", "acme",
					event.Principal{Subject: "alice"},
					[]string{"analyst"}, "finance", "fin-analysts",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "subject", AttrDirectoryRoles: "analyst",
						AttrRolesSource: "directory", "directory.manager": "dave", "directory.risk_tier": "low"}},
				{"tenant entry before the any-tenant entry", "acme",
					event.Principal{Subject: "bob"},
					[]string{"analyst", "reporting"}, "sales", "sales-analysts",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "subject", AttrDirectoryRoles: "analyst,reporting",
						AttrRolesSource: "directory"}},
				{"any-tenant entry elsewhere", "other",
					event.Principal{Subject: "bob"},
					nil, "elsewhere", "other",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "subject"}},
				{"client id of a service principal", "acme",
					event.Principal{ClientID: "nightly-etl"},
					[]string{"service"}, "data-platform", "batch-jobs",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "client_id", AttrDirectoryRoles: "service",
						AttrRolesSource: "directory", "directory.risk_tier": "high"}},
				{"unlisted person using a listed client stays unknown", "acme",
					event.Principal{Subject: "mallory", ClientID: "nightly-etl"},
					nil, "", "",
					map[string]string{AttrDirectory: "unknown"}},
				{"client-credentials token: subject is the client id", "acme",
					event.Principal{Subject: "nightly-etl", ClientID: "nightly-etl"},
					[]string{"service"}, "data-platform", "batch-jobs",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "client_id", AttrDirectoryRoles: "service",
						AttrRolesSource: "directory", "directory.risk_tier": "high"}},
				{"subject wins over client id", "acme",
					event.Principal{Subject: "alice", ClientID: "nightly-etl", Roles: []string{"analyst"}},
					[]string{"analyst"}, "finance", "fin-analysts",
					map[string]string{AttrDirectory: "known", AttrDirectoryMatch: "subject", AttrDirectoryRoles: "analyst",
						"directory.manager": "dave", "directory.risk_tier": "low"}},
				{"unknown principal is marked, not refused", "acme",
					event.Principal{Subject: "mallory", Roles: []string{"analyst"}, Department: "forged"},
					[]string{"analyst"}, "", "",
					map[string]string{AttrDirectory: "unknown"}},
				{"no identity: nothing to look up", "acme",
					event.Principal{},
					nil, "", "",
					nil},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					e := principalEvent(tc.tenant, tc.p)
					d.Apply(e)
					p := e.Principal
					if !slices.Equal(p.Roles, tc.roles) || p.Department != tc.dept || p.PeerGroup != tc.peer {
						t.Errorf("principal %+v, want roles %v department %q peer group %q", p, tc.roles, tc.dept, tc.peer)
					}
					if !maps.Equal(e.Attributes, tc.attrs) {
						t.Errorf("attributes %v, want %v", e.Attributes, tc.attrs)
					}
				})
			}
		})
	}
}

// A source cannot forge directory attributes or claim its roles came from the directory: only
// enrichment sets them.
func TestDirectoryScrubsForgedAttributes(t *testing.T) {
	d := mustDirectory(t, "testdata/directory.yaml")
	e := principalEvent("acme", event.Principal{Subject: "mallory", PeerGroup: "admins"})
	e.Attributes = map[string]string{AttrDirectory: "known", "directory.risk_tier": "low", AttrRolesSource: "directory", "keep": "me"}
	d.Apply(e)
	want := map[string]string{AttrDirectory: "unknown", "keep": "me"}
	if !maps.Equal(e.Attributes, want) || e.Principal.PeerGroup != "" {
		t.Fatalf("attributes %v peer group %q, want %v and none", e.Attributes, e.Principal.PeerGroup, want)
	}
}

// The directory's roles handed to an event are a copy: an event consumer appending to them must
// not change the directory.
func TestDirectoryRolesAreCopied(t *testing.T) {
	d := mustDirectory(t, "testdata/directory.yaml")
	e := principalEvent("acme", event.Principal{Subject: "bob"})
	d.Apply(e)
	e.Principal.Roles[0] = "admin"
	e2 := principalEvent("acme", event.Principal{Subject: "bob"})
	d.Apply(e2)
	if e2.Principal.Roles[0] != "analyst" {
		t.Fatalf("directory changed through an event: %v", e2.Principal.Roles)
	}
}

// Each broken directory is refused with its file, line and a message that says what to fix.
func TestDirectoryErrors(t *testing.T) {
	cases := []struct{ name, file, src, want string }{
		{"unknown format", "d.json", "{}", "d.json: unknown directory format"},
		{"yaml: empty", "d.yaml", "", "d.yaml: empty file"},
		{"yaml: version", "d.yaml", "principals: []\n", "d.yaml:1: version 0"},
		{"yaml: unknown field", "d.yaml", "version: 1\nprincipals:\n  - subject: a\n    departement: x\n", `d.yaml:4: unknown field "departement"`},
		{"yaml: duplicate subject", "d.yaml", "version: 1\nprincipals:\n  - subject: a\n  - subject: b\n  - subject: a\n",
			`d.yaml:5: principal "a": subject "a" listed twice (first at line 3)`},
		{"yaml: duplicate subject in a tenant", "d.yaml", "version: 1\nprincipals:\n  - {subject: a, tenant: t}\n  - {subject: a, tenant: t}\n",
			`d.yaml:4: principal "a": subject "a" listed twice in tenant t (first at line 3)`},
		{"yaml: duplicate client", "d.yaml", "version: 1\nprincipals:\n  - client_id: c\n  - client_id: c\n",
			`d.yaml:4: client "c": client_id "c" listed twice (first at line 3)`},
		{"yaml: no identity", "d.yaml", "version: 1\nprincipals:\n  - department: x\n", "d.yaml:3: principal #1: no subject or client_id"},
		{"yaml: control character", "d.yaml", "version: 1\nprincipals:\n  - subject: \"a\\nb\"\n", "d.yaml:3: principal \"a\\nb\": subject"},
		{"yaml: reserved attribute", "d.yaml", "version: 1\nprincipals:\n  - subject: a\n    attributes: {status: known}\n", `attribute name "status" is reserved`},
		{"yaml: comma in role", "d.yaml", "version: 1\nprincipals:\n  - subject: a\n    roles: [\"x,y\"]\n", `role "x,y"`},
		{"yaml: roles not a list", "d.yaml", "version: 1\nprincipals:\n  - subject: a\n    roles: 3\n", "d.yaml:4: cannot unmarshal"},
		{"csv: empty", "d.csv", "", "d.csv: empty file"},
		{"csv: no id column", "d.csv", "department,peer_group\nx,y\n", "d.csv:1: no subject or client_id column"},
		{"csv: duplicate column", "d.csv", "subject,subject\n", `d.csv:1: column "subject" given twice`},
		{"csv: bad column name", "d.csv", "subject,cost center\n", `d.csv:1: column 2: attribute name "cost center"`},
		{"csv: reserved column", "d.csv", "subject,status\n", `attribute name "status" is reserved`},
		{"csv: wrong field count", "d.csv", "subject,department\na,x\nb\n", "d.csv:3: invalid CSV: wrong number of fields"},
		{"csv: bad quote", "d.csv", "subject,department\na,x\n\"b,y\n", "d.csv:3: invalid CSV"},
		{"csv: duplicate subject", "d.csv", "# comment\nsubject,department\na,x\nb,y\na,z\n", `d.csv:5: principal "a": subject "a" listed twice (first at line 3)`},
		{"csv: no identity", "d.csv", "subject,client_id,department\n,,x\n", "d.csv:2: principal #1: no subject or client_id"},
		{"csv: not UTF-8", "d.csv", "subject\n\xff\n", "d.csv: not UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDirectory([]byte(tc.src), tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Errors are capped so a wholly broken 50k-line export yields a readable message.
func TestDirectoryErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("subject\n")
	for range 200 {
		b.WriteString("same\n")
	}
	_, err := ParseDirectory([]byte(b.String()), "d.csv")
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("and %d more problems", 199-maxErrors)) {
		t.Fatalf("error %v", err)
	}
}

func TestDirectoryExampleLoads(t *testing.T) {
	mustDirectory(t, "../deploy/local/directory.yaml")
}
