package event

// Topics names mcpwatch's Kafka topics. Every deployment (and every integration test) derives
// them from one prefix with [TopicNames]; the version suffix changes only with an incompatible
// [SchemaVersion].
type Topics struct {
	Raw        string // events from sources, key: tenant/principal
	Events     string // normalized events, key: tenant/principal
	OCSF       string // the normalized events as bare OCSF 1.x objects, key: tenant/principal
	Findings   string // detector findings, key: tenant/principal
	Scores     string // latest threat score per principal, key: tenant/principal (compacted)
	Profiles   string // latest behaviour profile per principal, key: tenant/principal (compacted)
	Actions    string // response actions taken, key: tenant/principal
	Control    string // revocations and quarantines, key: Control.Key (compacted)
	Approvals  string // approval requests, signed votes and claims, key: request id + entry (compacted)
	Audit      string // the hash-chained, signed audit trail of response actions (one partition)
	DeadLetter string // records a stage could not process, with the reason in headers
}

// DefaultTopicPrefix is the prefix of a deployment that sets none.
const DefaultTopicPrefix = "mcpwatch"

// TopicNames returns the topic names under prefix ("" means [DefaultTopicPrefix]).
func TopicNames(prefix string) Topics {
	if prefix == "" {
		prefix = DefaultTopicPrefix
	}
	n := func(s string) string { return prefix + "." + s + ".v1" }
	return Topics{
		Raw: n("raw"), Events: n("events"), OCSF: n("ocsf"), Findings: n("findings"), Scores: n("scores"),
		Profiles: n("profiles"), Actions: n("actions"), Control: n("control"), Approvals: n("approvals"),
		Audit: n("audit"), DeadLetter: n("deadletter"),
	}
}

// All returns every topic name, for tools that create or delete a deployment's topics.
func (t Topics) All() []string {
	return []string{t.Raw, t.Events, t.OCSF, t.Findings, t.Scores, t.Profiles, t.Actions, t.Control, t.Approvals, t.Audit, t.DeadLetter}
}
