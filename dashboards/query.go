package dashboards

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// Datasource UIDs and plugin types, as provisioned by provisioning/datasources/mcpwatch.yaml.
const (
	ClickHouseUID    = "mcpwatch-clickhouse"
	ClickHouseType   = "grafana-clickhouse-datasource"
	PrometheusUID    = "mcpwatch-prometheus"
	PrometheusType   = "prometheus"
	PluginUID        = "mcpwatch-soc"
	PluginType       = "mcpwatch-soc-datasource"
	pluginVersionCH  = "4.0.0" // the query model of grafana-clickhouse-datasource v4
	formatTimeSeries = 0       // sqlds FormatQueryOption: time series
	formatTable      = 1       // sqlds FormatQueryOption: table
)

func ref(typ, uid string) common.DataSourceRef { return common.DataSourceRef{Type: &typ, Uid: &uid} }

// ClickHouse is the datasource reference of Grafana's official ClickHouse datasource.
func ClickHouse() common.DataSourceRef { return ref(ClickHouseType, ClickHouseUID) }

// Prometheus is the datasource reference of the Prometheus that scrapes mcpwatch's stages.
func Prometheus() common.DataSourceRef { return ref(PrometheusType, PrometheusUID) }

// Plugin is the datasource reference of mcpwatch's own backend plugin (dashboards/plugin).
func Plugin() common.DataSourceRef { return ref(PluginType, PluginUID) }

// SQLQuery is a query of grafana-clickhouse-datasource (v4) in the raw SQL editor. The Foundation
// SDK has no type for that plugin, so this one implements its dataquery variant; the JSON is the
// model the datasource's editor saves.
type SQLQuery struct {
	RefID         string               `json:"refId"`
	Datasource    common.DataSourceRef `json:"datasource"`
	EditorType    string               `json:"editorType"`
	QueryType     string               `json:"queryType"`
	Format        int                  `json:"format"`
	RawSQL        string               `json:"rawSql"`
	PluginVersion string               `json:"pluginVersion"`
}

// ImplementsDataqueryVariant marks SQLQuery as a panel target.
func (SQLQuery) ImplementsDataqueryVariant() {}

// DataqueryType is the datasource plugin the query is for.
func (SQLQuery) DataqueryType() string { return ClickHouseType }

// Equals reports whether other is the same query.
func (q SQLQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(SQLQuery)
	return ok && reflect.DeepEqual(q, o)
}

// Validate refuses a query without SQL or refId.
func (q SQLQuery) Validate() error {
	if strings.TrimSpace(q.RawSQL) == "" || q.RefID == "" {
		return fmt.Errorf("clickhouse query %q: empty SQL or refId", q.RefID)
	}
	return nil
}

// sqlBuilder builds an SQLQuery as a cog builder, which panels take as targets.
type sqlBuilder struct{ q SQLQuery }

func (b sqlBuilder) Build() (variants.Dataquery, error) { return b.q, b.q.Validate() }

// tsSQL is a ClickHouse query whose result Grafana reads as time series (a time column, then
// values; a string column splits series).
func tsSQL(refID, sql string) cog.Builder[variants.Dataquery] {
	return sqlBuilder{SQLQuery{RefID: refID, Datasource: ClickHouse(), EditorType: "sql", QueryType: "timeseries",
		Format: formatTimeSeries, RawSQL: strings.TrimSpace(sql), PluginVersion: pluginVersionCH}}
}

// tableSQL is a ClickHouse query shown as a table.
func tableSQL(refID, sql string) cog.Builder[variants.Dataquery] {
	return sqlBuilder{SQLQuery{RefID: refID, Datasource: ClickHouse(), EditorType: "sql", QueryType: "table",
		Format: formatTable, RawSQL: strings.TrimSpace(sql), PluginVersion: pluginVersionCH}}
}

// PluginQuery is a typed query of mcpwatch's backend plugin; the plugin's query model
// (dashboards/plugin) decodes the same JSON.
type PluginQuery struct {
	RefID      string               `json:"refId"`
	Datasource common.DataSourceRef `json:"datasource"`
	QueryType  string               `json:"queryType"`
	Tenant     string               `json:"tenant,omitempty"`
	Value      string               `json:"value,omitempty"`
	Limit      int                  `json:"limit,omitempty"`
}

// ImplementsDataqueryVariant marks PluginQuery as a panel target.
func (PluginQuery) ImplementsDataqueryVariant() {}

// DataqueryType is the datasource plugin the query is for.
func (PluginQuery) DataqueryType() string { return PluginType }

// Equals reports whether other is the same query.
func (q PluginQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(PluginQuery)
	return ok && q == o
}

// Validate refuses a query without a type.
func (q PluginQuery) Validate() error {
	if q.QueryType == "" || q.RefID == "" {
		return fmt.Errorf("plugin query %q: no queryType or refId", q.RefID)
	}
	return nil
}

type pluginBuilder struct{ q PluginQuery }

func (b pluginBuilder) Build() (variants.Dataquery, error) { return b.q, b.q.Validate() }

func pluginQuery(refID, queryType, tenant, value string) cog.Builder[variants.Dataquery] {
	return pluginBuilder{PluginQuery{RefID: refID, Datasource: Plugin(), QueryType: queryType, Tenant: tenant, Value: value}}
}
