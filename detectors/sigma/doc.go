// Package sigma is mcpwatch's Sigma rule engine: it loads Sigma detection rules (YAML, the Sigma
// specification) and matches them against normalized [event.Event]s.
//
// Rules are compiled once by [Parse], [Load] or [LoadPaths] into a [RuleSet]; a rule that is
// broken, or that uses something this engine does not implement (a modifier, a logsource or
// field without a mapping, aggregation conditions), is refused with an
// [*Error] that names the file, line and column and says why, and the other rules still load.
// Nothing in a rule is ignored silently.
//
// [RuleSet.Match] evaluates every rule against one event and returns a [Match] per rule that
// fired, with the rule's id, title, level and tags and the event's values that made it fire.
// Matching allocates only for matches.
//
// Correlation rules (event_count, value_count, temporal, temporal_ordered) load into the same set
// and are evaluated over event-time windows by a [Correlator], with bounded state per group
// ([Limits]). [Detector] runs a set in the detect stage: matches become findings, and the rule
// files are hot-reloaded ([Detector.Run]).
//
// Logsource product mcpwatch, category mcp_call maps onto MCP messages seen by the gateway or
// an embedded hook; its field names follow the event's JSON names (see [FieldNames] and
// docs/sigma.md).
package sigma
