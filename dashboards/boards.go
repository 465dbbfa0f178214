package dashboards

//lint:file-ignore SA1019 the v1 dashboard schema is what Grafana 10 and 11 provision from files; dashboardv2 needs Grafana 12

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dashboard UIDs: links between boards use them, so they never change.
const (
	UIDOverview  = "mcpwatch-soc"
	UIDPrincipal = "mcpwatch-principal"
	UIDResponse  = "mcpwatch-response"
	UIDServers   = "mcpwatch-servers"
	UIDSandboxes = "mcpwatch-sandboxes"
	UIDPipeline  = "mcpwatch-pipeline"
)

// Filters every SQL panel shares. Grafana's ClickHouse datasource replaces $__conditionalAll
// with 1=1 when the variable is "All", so the filter costs nothing then.
const (
	tenantF    = "$__conditionalAll(tenant IN (${tenant:sqlstring}), $tenant)"
	serverF    = "$__conditionalAll(server IN (${server:sqlstring}), $server)"
	principalF = "principal = ${principal:sqlstring}"
	// bucket groups a DateTime column into Grafana's interval. 18.16 has no toStartOfInterval
	// (what $__timeInterval expands to), so the bucket is computed by integer division.
	bucket = "toDateTime(intDiv(toUInt32(%s), $__interval_s) * $__interval_s)"
)

func bucketOf(col string) string { return sprintf(bucket, col) }

// Board is one dashboard and the file it is provisioned from.
type Board struct {
	File    string
	Builder *dashboard.DashboardBuilder
}

// Boards returns every dashboard, in the order of the navigation links.
func Boards() []Board {
	return []Board{
		{"soc-overview.json", overview()},
		{"principal-investigation.json", principal()},
		{"findings-response.json", response()},
		{"mcp-servers-tools.json", servers()},
		{"sandboxes-kernel.json", sandboxes()},
		{"pipeline-health.json", pipeline()},
	}
}

// board starts a dashboard with the settings every board shares: UTC, last 24 hours, the
// mcpwatch tag and a dropdown of links to the other boards that keeps time range and variables.
func board(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"mcpwatch"}).
		Timezone("utc").
		Time("now-24h", "now").
		Refresh("1m").
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("mcpwatch").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"mcpwatch"}).
			AsDropdown(true).IncludeVars(true).KeepTime(true).
			TargetBlank(false).Icon("external link").Tooltip("").Url(""))
}

// chVar is a template variable filled by a ClickHouse query.
func chVar(name, label, sql string, multi bool) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(ClickHouse()).
		Query(dashboard.StringOrMap{String: &sql}).
		Definition(sql).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(multi).
		IncludeAll(multi)
}

func tenantVar() *dashboard.QueryVariableBuilder {
	return chVar("tenant", "Tenant", "SELECT DISTINCT tenant FROM events_per_minute WHERE $__timeFilter(minute) ORDER BY tenant", true)
}

func principalVar() *dashboard.QueryVariableBuilder {
	return chVar("principal", "Principal", "SELECT DISTINCT principal FROM events_per_minute WHERE $__timeFilter(minute) AND "+tenantF+" ORDER BY principal LIMIT 1000", false)
}

func serverVar() *dashboard.QueryVariableBuilder {
	return chVar("server", "MCP server", "SELECT DISTINCT server FROM events_per_minute WHERE $__timeFilter(minute) AND "+tenantF+" AND server != '' ORDER BY server", true)
}

// linkToPrincipal makes a column's values open the principal investigation for that row.
func linkToPrincipal(column string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{{
		"title": "Investigate ${__value.raw}",
		"url":   "/d/" + UIDPrincipal + "?var-tenant=${__data.fields.tenant}&var-principal=${__value.raw}&${__url_time_range}",
	}}}}
}

func statPanel(title, desc string, q cog.Builder[variants.Dataquery]) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(desc).Datasource(ClickHouse()).
		Height(4).Span(6).GraphMode(common.BigValueGraphModeNone).WithTarget(q)
}

func tsPanel(title, desc string, ds common.DataSourceRef, qs ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Datasource(ds).Height(8).Span(12).FillOpacity(10)
	for _, q := range qs {
		p.WithTarget(q)
	}
	return p
}

func tablePanel(title, desc string, ds common.DataSourceRef, q cog.Builder[variants.Dataquery]) *table.PanelBuilder {
	return table.NewPanelBuilder().Title(title).Description(desc).Datasource(ds).Height(9).Span(24).WithTarget(q)
}

func overview() *dashboard.DashboardBuilder {
	return board(UIDOverview, "mcpwatch · SOC overview",
		"Calls, denials, findings and actions across tenants, and the principals with the highest threat scores. Click a principal to investigate it.").
		WithVariable(tenantVar()).
		WithPanel(statPanel("Calls", "MCP calls seen by the gateways in the time range.",
			tableSQL("A", "SELECT sum(calls) AS calls FROM events_per_minute WHERE $__timeFilter(minute) AND "+tenantF))).
		WithPanel(statPanel("Denials", "Calls the policy denied.",
			tableSQL("A", "SELECT sum(denied) AS denied FROM events_per_minute WHERE $__timeFilter(minute) AND "+tenantF))).
		WithPanel(statPanel("Findings", "Findings the detectors raised.",
			tableSQL("A", "SELECT count() AS findings FROM findings_dedup WHERE $__timeFilter(time) AND "+tenantF))).
		WithPanel(statPanel("Actions", "Response actions taken (revocations, quarantines, webhooks, lifts, ...).",
			tableSQL("A", "SELECT count() AS actions FROM actions_dedup WHERE $__timeFilter(time) AND "+tenantF))).
		WithPanel(tsPanel("Calls, denials and errors", "Per interval, from the per-minute aggregates.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("minute")+` AS time, sum(calls) AS calls, sum(denied) AS denials, sum(errors) AS errors
FROM events_per_minute
WHERE $__timeFilter(minute) AND `+tenantF+`
GROUP BY time ORDER BY time`))).
		WithPanel(tsPanel("Findings and actions", "Findings by detector and actions by kind, per interval.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("time")+` AS time, concat('finding ', detector) AS series, count() AS n
FROM findings_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
GROUP BY time, series ORDER BY time`),
			tsSQL("B", `
SELECT `+bucketOf("time")+` AS time, concat('action ', kind) AS series, count() AS n
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
GROUP BY time, series ORDER BY time`))).
		WithPanel(tablePanel("Top-risk principals", "Highest threat score in the time range and the latest explanation. Click a principal to investigate.", ClickHouse(),
			tableSQL("A", `
SELECT tenant, subject AS principal, max(score) AS max_score, argMax(score, time) AS latest_score,
       argMax(explanation, time) AS explanation, count() AS scores
FROM scores_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
GROUP BY tenant, principal
ORDER BY max_score DESC
LIMIT 20`)).OverrideByName("principal", linkToPrincipal("principal"))).
		WithPanel(tablePanel("Latest findings", "The newest findings with their one-line explanation.", ClickHouse(),
			tableSQL("A", `
SELECT time, tenant, principal, detector, check, score, severity, summary, explanation
FROM findings_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
ORDER BY time DESC
LIMIT 50`)).OverrideByName("principal", linkToPrincipal("principal")))
}

func principal() *dashboard.DashboardBuilder {
	return board(UIDPrincipal, "mcpwatch · principal investigation",
		"One principal: its calls, denials, findings and actions; its threat score over time with components and evidence; its profile against its peers.").
		WithVariable(tenantVar()).
		WithVariable(principalVar()).
		WithPanel(tsPanel("Calls and denials", "The principal's calls per interval.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("minute")+` AS time, sum(calls) AS calls, sum(denied) AS denials, sum(pii_hits) AS pii_hits
FROM events_per_minute
WHERE $__timeFilter(minute) AND `+tenantF+` AND `+principalF+`
GROUP BY time ORDER BY time`))).
		WithPanel(tsPanel("Threat score and components", "The score (0–100) and each component's value, as the detectors published them.", ClickHouse(),
			tsSQL("A", `
SELECT time, score
FROM scores_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND subject = ${principal:sqlstring}
ORDER BY time`),
			tsSQL("B", `
SELECT time, component, value
FROM scores_dedup
ARRAY JOIN component_names AS component, component_values AS value
WHERE $__timeFilter(time) AND `+tenantF+` AND subject = ${principal:sqlstring}
ORDER BY time`))).
		WithPanel(tablePanel("Score evidence", "Why the score is what it is: each signal, what was observed against which baseline, and the points it added.", ClickHouse(),
			tableSQL("A", `
SELECT time, score, e.detector AS detector, e.check AS check, e.component AS component, e.feature AS feature,
       e.observed AS observed, e.baseline AS baseline, e.baseline_source AS baseline_source,
       e.peer_percentile AS peer_percentile, e.contribution AS contribution, e.detail AS detail
FROM scores_dedup
ARRAY JOIN evidence AS e
WHERE $__timeFilter(time) AND `+tenantF+` AND subject = ${principal:sqlstring}
ORDER BY time DESC, contribution DESC
LIMIT 200`))).
		WithPanel(tablePanel("Score explanation (plugin)", "The latest score explained by the mcpwatch plugin: one row per evidence, with the events it rests on.", Plugin(),
			pluginQuery("A", "score_explanation", "${tenant}", "${principal}"))).
		WithPanel(tablePanel("Timeline: calls", "Every call of the principal, newest first.", ClickHouse(),
			tableSQL("A", `
SELECT time, source, method, tool, resource_uri, server, result, policy_rule, reason, src_ip, session_id, sandbox
FROM events_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+principalF+`
ORDER BY time DESC
LIMIT 500`))).
		WithPanel(tablePanel("Timeline: findings", "Findings about the principal.", ClickHouse(),
			tableSQL("A", `
SELECT time, detector, check, score, severity, summary, explanation, tags
FROM findings_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+principalF+`
ORDER BY time DESC
LIMIT 200`))).
		WithPanel(tablePanel("Timeline: actions", "Actions taken on the principal (revocations, step-ups, lifts, ...).", ClickHouse(),
			tableSQL("A", `
SELECT time, kind, target, status, actor, playbook, reason, dry_run,
       if(expires_ms = 0, '', toString(toDateTime(intDiv(expires_ms, 1000), 'UTC'))) AS expires
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND subject = ${principal:sqlstring}
ORDER BY time DESC
LIMIT 200`))).
		WithPanel(tablePanel("Profile against peers", "The principal's behaviour baseline next to its peer group's (the detectors' profiles, latest version).", ClickHouse(),
			tableSQL("A", `
SELECT feature, self_mean, self_p95, peer_mean, peer_p95, observations
FROM
(
    SELECT feature, mean AS self_mean, p95 AS self_p95, observations
    FROM profiles_latest
    ARRAY JOIN feature_names AS feature, feature_mean AS mean, feature_p95 AS p95
    WHERE `+tenantF+` AND `+principalF+`
)
ANY LEFT JOIN
(
    SELECT feature, mean AS peer_mean, p95 AS peer_p95
    FROM profiles_latest
    ARRAY JOIN feature_names AS feature, feature_mean AS mean, feature_p95 AS p95
    WHERE `+tenantF+` AND principal IN
        (SELECT concat('peer:', peer_group) FROM profiles_latest WHERE `+tenantF+` AND `+principalF+` AND peer_group != '')
) USING feature
ORDER BY feature`))).
		Link(dashboard.NewDashboardLinkBuilder("Findings and response").Type(dashboard.DashboardLinkTypeLink).
			Url("/d/" + UIDResponse).IncludeVars(true).KeepTime(true).Icon("dashboard").Tooltip("").TargetBlank(false).AsDropdown(false))
}

func response() *dashboard.DashboardBuilder {
	return board(UIDResponse, "mcpwatch · findings and response",
		"Open findings, the actions taken on them, approvals, lifts and controls still in force, and the hash-chained response audit trail.").
		WithVariable(tenantVar()).
		WithPanel(tablePanel("Open findings", "Findings in the time range that no action refers to yet, highest score first.", ClickHouse(),
			tableSQL("A", `
SELECT time, tenant, principal, detector, check, score, severity, summary
FROM findings_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
  AND id NOT IN (SELECT finding_id FROM actions_dedup WHERE finding_id != '')
ORDER BY score DESC, time DESC
LIMIT 100`)).OverrideByName("principal", linkToPrincipal("principal"))).
		WithPanel(tsPanel("Actions by kind and status", "Per interval.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("time")+` AS time, concat(kind, ' ', status) AS series, count() AS n
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
GROUP BY time, series ORDER BY time`))).
		WithPanel(tsPanel("Response latency", "Time from finding to action, by kind (p50 and max).", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("time")+` AS time, kind, quantile(0.5)(latency_ms) AS p50_ms
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND latency_ms > 0
GROUP BY time, kind ORDER BY time`))).
		WithPanel(tablePanel("Actions", "Every action with who or what decided it, under which playbook, why, on what scope and until when.", ClickHouse(),
			tableSQL("A", `
SELECT time, tenant, kind, target, status, scope, actor, playbook, reason, dry_run, attempts, latency_ms,
       if(expires_ms = 0, '', toString(toDateTime(intDiv(expires_ms, 1000), 'UTC'))) AS expires
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
ORDER BY time DESC
LIMIT 500`))).
		WithPanel(tablePanel("Controls in force at the end of the range", "Timed controls (quarantines, revocations, egress blocks) whose expiry is after the range's end and that no lift has ended.", ClickHouse(),
			tableSQL("A", `
SELECT tenant, kind, target, scope, actor, reason, toDateTime(intDiv(expires_ms, 1000), 'UTC') AS expires, control_id
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+`
  AND expires_ms > toUInt64(toUnixTimestamp($__toTime)) * 1000 AND kind != 'lift' AND dry_run = 0
  AND control_id NOT IN (SELECT control_id FROM actions_dedup WHERE kind = 'lift' AND control_id != '')
ORDER BY expires`))).
		WithPanel(tablePanel("Approvals and lifts", "Approval requests, votes and outcomes, and controls lifted by operators or on expiry.", ClickHouse(),
			tableSQL("A", `
SELECT time, tenant, kind, target, status, actor, reason, control_id
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND kind IN ('approval', 'lift')
ORDER BY time DESC
LIMIT 200`))).
		WithPanel(tablePanel("Response audit trail", "The hash-chained, signed audit entries of every response action (verify with `mcpwatch response verify`).", ClickHouse(),
			tableSQL("A", `
SELECT seq, time, tenant, kind, actor, action, action_id, key_id, substring(hash, 1, 16) AS hash_prefix
FROM response_audit
WHERE $__timeFilter(time) AND `+tenantF+`
ORDER BY seq DESC
LIMIT 200`)))
}

func servers() *dashboard.DashboardBuilder {
	return board(UIDServers, "mcpwatch · MCP servers and tools",
		"Usage of each MCP server and tool, tool-definition changes (the tools/list hash), and quarantines.").
		WithVariable(tenantVar()).
		WithVariable(serverVar()).
		WithPanel(tsPanel("Calls by server", "Per interval.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("minute")+` AS time, server, sum(calls) AS calls
FROM events_per_minute
WHERE $__timeFilter(minute) AND `+tenantF+` AND `+serverF+` AND server != ''
GROUP BY time, server ORDER BY time`))).
		WithPanel(tablePanel("Tool usage", "Calls, denials, errors and callers per tool, and the worst per-minute p99 latency.", ClickHouse(),
			tableSQL("A", `
SELECT server, tool, sum(calls) AS calls, sum(denied) AS denials, sum(errors) AS errors,
       uniqExact(principal) AS principals, max(latency_ms_p50_p90_p99[3]) AS worst_minute_p99_ms
FROM events_per_minute
WHERE $__timeFilter(minute) AND `+tenantF+` AND `+serverF+` AND tool != ''
GROUP BY server, tool
ORDER BY calls DESC
LIMIT 200`))).
		WithPanel(tablePanel("Tool definitions seen", "Each distinct tools/list hash a server answered with: a new hash means the server's tools changed (a pinned server changing its tools is a rug pull).", ClickHouse(),
			tableSQL("A", `
SELECT server, tools_hash, min(time) AS first_seen, max(time) AS last_seen, count() AS listings, uniqExact(principal) AS principals
FROM events_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+serverF+` AND method = 'tools/list' AND tools_hash != ''
GROUP BY server, tools_hash
ORDER BY server, first_seen`))).
		WithPanel(tablePanel("Quarantines", "Sandboxes quarantined and lifted.", ClickHouse(),
			tableSQL("A", `
SELECT time, tenant, kind, target, status, actor, reason, attempts, latency_ms
FROM actions_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND (kind = 'quarantine' OR (kind = 'lift' AND target LIKE 'quarantine/%'))
ORDER BY time DESC
LIMIT 200`)))
}

func sandboxes() *dashboard.DashboardBuilder {
	return board(UIDSandboxes, "mcpwatch · sandboxes and kernel activity",
		"What MCP server sandboxes did in the kernel (eBPF: exec, connect, open), next to their MCP calls.").
		WithVariable(tenantVar()).
		WithVariable(serverVar()).
		WithPanel(tsPanel("Kernel events by syscall", "Per interval.", ClickHouse(),
			tsSQL("A", `
SELECT `+bucketOf("time")+` AS time, proc_syscall AS syscall, count() AS events
FROM events_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+serverF+` AND source = 'kernel'
GROUP BY time, syscall ORDER BY time`))).
		WithPanel(tablePanel("Sandboxes", "Per sandbox: MCP calls, denials and kernel events.", ClickHouse(),
			tableSQL("A", `
SELECT sandbox, any(server) AS mcp_server, countIf(source = 'mcp') AS mcp_calls, countIf(result = 'denied') AS denials,
       countIf(source = 'kernel') AS kernel_events, min(time) AS first_seen, max(time) AS last_seen
FROM events_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+serverF+` AND sandbox != ''
GROUP BY sandbox
ORDER BY kernel_events DESC, mcp_calls DESC`))).
		WithPanel(tablePanel("Kernel events", "The newest kernel events of sandboxes.", ClickHouse(),
			tableSQL("A", `
SELECT time, sandbox, server, proc_comm, proc_pid, proc_syscall, proc_path, proc_exe, reason
FROM events_dedup
WHERE $__timeFilter(time) AND `+tenantF+` AND `+serverF+` AND source = 'kernel'
ORDER BY time DESC
LIMIT 500`)))
}

// PrometheusMetrics are the metric names the pipeline-health board queries; a test checks each
// is defined in the code.
var PrometheusMetrics = []string{
	"mcpwatch_stage_consumer_lag",
	"mcpwatch_stage_records_in_total",
	"mcpwatch_stage_dead_letters_total",
	"mcpwatch_stage_errors_total",
	"mcpwatch_sink_rows_total",
	"mcpwatch_sink_rejected_records_total",
	"mcpwatch_gateway_audit_spool_records",
	"mcpwatch_gateway_audit_spooled_total",
	"mcpwatch_gateway_audit_dropped_total",
	"mcpwatch_gateway_messages_total",
	"mcpwatch_response_actions_total",
}

func prom(refID, expr, legend string) cog.Builder[variants.Dataquery] {
	return prometheus.NewDataqueryBuilder().RefId(refID).Datasource(Prometheus()).Expr(expr).LegendFormat(legend).Range()
}

func pipeline() *dashboard.DashboardBuilder {
	return board(UIDPipeline, "mcpwatch · pipeline health",
		"The stages' Prometheus metrics: consumer lag, throughput, dead letters, errors, the gateway's audit spool and drops, the ClickHouse sink.").
		WithPanel(tsPanel("Consumer lag", "Records behind the high watermark, by stage.", Prometheus(),
			prom("A", "sum by (stage) (mcpwatch_stage_consumer_lag)", "{{stage}}"))).
		WithPanel(tsPanel("Throughput", "Records consumed per second, by stage.", Prometheus(),
			prom("A", "sum by (stage) (rate(mcpwatch_stage_records_in_total[$__rate_interval]))", "{{stage}}"))).
		WithPanel(tsPanel("Dead letters and errors", "Records dead-lettered per second, and errors by step.", Prometheus(),
			prom("A", "sum by (stage) (rate(mcpwatch_stage_dead_letters_total[$__rate_interval]))", "dead letters {{stage}}"),
			prom("B", "sum by (stage, step) (rate(mcpwatch_stage_errors_total[$__rate_interval]))", "errors {{stage}} {{step}}"))).
		WithPanel(tsPanel("Gateway audit: spool and drops", "Audit records waiting in the gateway's disk spool, spooled and dropped per second. Any drop is an audit gap.", Prometheus(),
			prom("A", "sum(mcpwatch_gateway_audit_spool_records)", "in spool"),
			prom("B", "sum(rate(mcpwatch_gateway_audit_spooled_total[$__rate_interval]))", "spooled/s"),
			prom("C", "sum(rate(mcpwatch_gateway_audit_dropped_total[$__rate_interval]))", "dropped/s"))).
		WithPanel(tsPanel("ClickHouse sink", "Rows written and records rejected (dead-lettered with a reason) per second.", Prometheus(),
			prom("A", "sum by (table) (rate(mcpwatch_sink_rows_total[$__rate_interval]))", "rows {{table}}"),
			prom("B", "sum(rate(mcpwatch_sink_rejected_records_total[$__rate_interval]))", "rejected"))).
		WithPanel(tsPanel("Gateway messages and response actions", "MCP messages through the gateways and response actions taken, per second.", Prometheus(),
			prom("A", "sum(rate(mcpwatch_gateway_messages_total[$__rate_interval]))", "gateway messages"),
			prom("B", "sum by (kind) (rate(mcpwatch_response_actions_total[$__rate_interval]))", "actions {{kind}}")))
}
