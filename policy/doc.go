// Package policy is mcpwatch's default-deny access policy for MCP requests: every request is
// denied unless a rule explicitly allows it (zero trust, least privilege), and explicit deny
// rules win over allows.
//
// # File format
//
//	version: 1                    # required; the only version
//	defaults: {decision: deny}    # optional; deny is the only default (allow is an error)
//	rules:
//	  - id: finance-read          # required, unique: [A-Za-z0-9][A-Za-z0-9_.:-]*
//	    description: ...          # optional; deny rules quote it in the reason
//	    effect: allow             # allow (default) or deny
//	    resource: "resource:s3://finance-data/*"   # or resources: [list]
//	    actions: [read]           # call, read, get, list, or *
//	    principals: [role:analyst, sub:alice, client:claude-desktop, group:finance, anonymous]
//	    tenants: [acme]           # optional
//	    conditions:               # a mapping, or a list of one-key mappings as below
//	      - ip_range: "192.168.1.0/24"          # or a list; IPv4 and IPv6; a bare address is /32 or /128
//	      - time: "09:00-18:00"                 # [start, end) local wall clock; may wrap midnight
//	        timezone: Asia/Seoul                # IANA; default UTC
//	        days: [mon-fri]                     # mon..sun and ranges; default every day
//	      - roles: [analyst]                    # principal has any of these roles
//	      - device_health: compliant            # any of
//	      - data_class: {any_of: [pii], none_of: [secret]}   # a plain list means any_of
//	      - auth_methods: [mfa, hwk]            # amr has any of; or {any_of, all_of}
//	      - max_risk: 80                        # threat score above 80: deny
//	      - step_up_risk: 50                    # above 50: step_up
//	        step_up_auth: [mfa]                 # default [mfa]
//	        step_up_max_age: 5m                 # default 5m
//	      - max_auth_age: 10m                   # authenticated over 10m ago (or unknown): step_up
//
// Unknown fields, duplicate keys, a condition given twice, and invalid values are errors with
// file:line:column, e.g. `policy.yaml:12:9: rule "x": ip_range "10.0.0.0/33": invalid CIDR`.
//
// # Targets and patterns
//
// Each governed MCP method maps to an action and a target string:
//
//	tools/call                              call  tool:<server>/<tool>
//	resources/read, subscribe, unsubscribe  read  resource:<uri>
//	prompts/get                             get   prompt:<server>/<prompt>
//	tools/list                              list  tool:<server>/
//	resources/list, resources/templates/list list resource:<server>/
//	prompts/list                            list  prompt:<server>/
//
// A list request's target is the server's catalogue, so "tool:sales-db/*" with actions
// [call, list] grants both calling and listing sales-db's tools. Other methods (initialize, ping,
// notifications, completion/complete) are not governed: [ActionOf] reports them and
// [Policy.Evaluate] denies them. Patterns must begin with tool:, resource: or prompt: (a bare URI
// with a scheme, like the source document's "s3://finance-data/*", is a resource pattern), or be
// "**". In patterns "*" matches within one '/'-separated segment, "**" across segments, "\"
// escapes; everything else, '?' and '[' included, is literal (see package internal/glob).
//
// Targets that a pattern cannot judge safely are denied before any rule is consulted: dot
// segments ("/../"), percent-encoded '.', '/' or '\', backslashes, control bytes, invalid UTF-8,
// more than 4096 bytes — an upstream server could resolve them to something else than the
// patterns saw.
//
// # Evaluation
//
//  1. An ungoverned method or unjudgeable target: deny (rule "default-deny").
//  2. Deny rules in file order: the first whose scope (action, target, tenant, principal) and
//     conditions all match denies.
//  3. Allow rules in file order: the first whose scope and conditions all match decides, by its
//     risk thresholds: risk above max_risk (or unknown while max_risk is set) → deny by that
//     rule; else risk above step_up_risk (or unknown) → step_up, unless the principal has
//     authenticated with one of step_up_auth within step_up_max_age → allow; else, with
//     max_auth_age, an authentication older than it (or of unknown time) → step_up; else allow.
//     The first matching allow rule is final: a risk denial or a step-up does not fall through
//     to later rules.
//  4. Otherwise deny (rule "default-deny"); the reason names the first allow rule whose action
//     and target matched and the check it failed, e.g. "rule finance-read requires ip in
//     192.168.1.0/24, got 10.0.0.5".
//
// Principals: an allow rule without principals applies to every authenticated principal (one
// with a subject or client id), never to anonymous ones unless it lists "anonymous"; a deny rule
// without principals applies to everyone.
//
// Unknown context fails closed: an attribute the request lacks (source IP, time, device health,
// risk) fails an allow rule's condition and satisfies a deny rule's, so missing context never
// allows more and never denies less. Empty roles, groups, amr and data classes are known-empty,
// not unknown: classifying data is the gateway's job.
//
// # Reload and lint
//
// [Store] holds the policy in force behind an atomic pointer and reloads it by [Store.Reload] or
// by polling ([Store.Run]); a broken file never replaces a working policy. [Check] lints a policy
// for shadowed rules, conditions that can never hold, and risky allows.
package policy
