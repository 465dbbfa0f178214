// Package mcpwatchds is mcpwatch's Grafana backend datasource: typed investigations over the
// ClickHouse tables (principal timeline, investigation by session or sandbox, score explanation,
// the differential-privacy ε ledger, and differential-privacy aggregates charged to the Grafana
// login's ε budget), a health check, and operator actions (lift a control) gated
// by the Grafana role of the user who asks and recorded as an action like
// `mcpwatch response lift`.
//
// Every query is parameterized (values are bound by clickhouse-go, never spliced into SQL), runs
// with readonly=2 and max_execution_time sent by the plugin whatever the user's profile says, and
// is capped at the configured number of rows. The one exception to readonly=2 is the ε ledger of
// dp_aggregate, written as the separately configured dpUser.
package mcpwatchds

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/mcpwatch/mcpwatch/internal/approval"
	"github.com/mcpwatch/mcpwatch/privacy"
	"github.com/mcpwatch/mcpwatch/storage"
)

// PluginID is the plugin's id in plugin.json and the datasource provisioning.
const PluginID = "mcpwatch-soc-datasource"

// Datasource is one configured mcpwatch datasource.
type Datasource struct {
	settings Settings
	conn     driver.Conn
	// dpConn writes and sums the ε ledger as settings.DPUser; dp is the privacy engine over
	// conn (the aggregate, read-only) and dpConn (the ledger). Both nil when dpUser is unset.
	dpConn driver.Conn
	dp     *privacy.Engine
	// approvalsAPI reaches the approvals API (one client, so its TLS connections are reused).
	approvalsAPI *approval.Client
	backend.CallResourceHandler
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// New creates a datasource instance from Grafana's settings. The ClickHouse connection is lazy:
// a server that is down shows in CheckHealth and in each query's error, not here.
func New(_ context.Context, is backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	s, err := LoadSettings(is)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: brokers(s.Addr),
		Auth: clickhouse.Auth{Database: s.Database, Username: s.User, Password: s.Password},
		Settings: clickhouse.Settings{
			// The plugin never writes: refused by the server even if a writer user is configured.
			"readonly":           2,
			"max_execution_time": s.MaxExecutionSeconds,
		},
		DialTimeout: 10 * time.Second,
		ReadTimeout: time.Duration(s.MaxExecutionSeconds+10) * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	tc, err := s.approvalsTLS()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	d := &Datasource{settings: s, conn: conn, approvalsAPI: &approval.Client{BaseURL: s.ApprovalsURL, TLS: tc}}
	if s.DPUser != "" {
		// No readonly setting here: this connection must INSERT ledger rows. What it may touch
		// is the dp user's grants (dp_user.sql), or, on 18.16, everything the writer may.
		d.dpConn, err = clickhouse.Open(&clickhouse.Options{
			Addr:        brokers(s.Addr),
			Auth:        clickhouse.Auth{Database: s.Database, Username: s.DPUser, Password: s.DPPassword},
			Settings:    clickhouse.Settings{"max_execution_time": s.MaxExecutionSeconds},
			DialTimeout: 10 * time.Second,
			ReadTimeout: time.Duration(s.MaxExecutionSeconds+10) * time.Second,
		})
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("clickhouse dp user: %w", err)
		}
		d.dp, err = privacy.New(conn, d.dpConn, privacy.Config{Database: s.Database, Budget: s.DPBudget,
			Period: time.Duration(s.DPPeriodDays) * 24 * time.Hour})
		if err != nil {
			_ = conn.Close()
			_ = d.dpConn.Close()
			return nil, err
		}
	}
	d.CallResourceHandler = httpadapter.New(d.routes())
	return d, nil
}

// Dispose closes the connection when Grafana drops the instance (settings changed).
func (d *Datasource) Dispose() {
	_ = d.conn.Close()
	d.approvalsAPI.CloseIdleConnections()
	if d.dpConn != nil {
		_ = d.dpConn.Close()
	}
}

// CheckHealth connects, reads the server version and checks the connection is read-only.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var version, readonly string
	row := d.conn.QueryRow(ctx, "SELECT version(), (SELECT value FROM system.settings WHERE name = 'readonly')")
	if err := row.Scan(&version, &readonly); err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: fmt.Sprintf("ClickHouse at %s as %s: %v", d.settings.Addr, d.settings.User, err)}, nil
	}
	if readonly == "0" {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: "the ClickHouse connection can write: configure the read-only user"}, nil
	}
	var tables uint64
	if err := d.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'findings', 'actions', 'scores', 'privacy_budget')",
		d.settings.Database).Scan(&tables); err != nil || tables < 5 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError,
			Message: fmt.Sprintf("database %s: mcpwatch tables missing (%d of 5; run `mcpwatch migrate`): %v", d.settings.Database, tables, err)}, nil
	}
	ops := "operator actions off (no kafkaBrokers)"
	if d.settings.KafkaBrokers != "" {
		ops = "operator actions for " + d.settings.OperatorRole + " and above"
	}
	dp, err := d.checkDP(ctx)
	if err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: err.Error()}, nil
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: fmt.Sprintf("ClickHouse %s, database %s, read-only; %s; %s", version, d.settings.Database, ops, dp)}, nil
}

// checkDP reads the ledger as the dp user and says how far that user's privileges reach. On a
// server without SQL access control (18.16) a user that can INSERT into privacy_budget can write
// every table of the database, so the health message carries a warning rather than pretending.
func (d *Datasource) checkDP(ctx context.Context) (string, error) {
	if d.dpConn == nil {
		return "differential-privacy aggregates off (no dpUser)", nil
	}
	var n uint64
	if err := d.dpConn.QueryRow(ctx, "SELECT count() FROM "+d.settings.Database+".privacy_budget WHERE 0").Scan(&n); err != nil {
		return "", fmt.Errorf("dpUser %s cannot read the ε ledger %s.privacy_budget: %v", d.settings.DPUser, d.settings.Database, err)
	}
	var readonly string
	if err := d.dpConn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'readonly'").Scan(&readonly); err != nil {
		return "", fmt.Errorf("dpUser %s: %v", d.settings.DPUser, err)
	}
	if readonly != "0" {
		return "", fmt.Errorf("dpUser %s is read-only (readonly=%s) and cannot reserve ε in the ledger: configure a user with INSERT on privacy_budget (dashboards/plugin/dp_user.sql)", d.settings.DPUser, readonly)
	}
	ver, err := storage.ServerVersion(ctx, d.dpConn)
	if err != nil {
		return "", fmt.Errorf("dpUser %s: %v", d.settings.DPUser, err)
	}
	if !storage.FeaturesFor(ver).RBAC {
		return fmt.Sprintf("differential-privacy aggregates on, ε budget %v per login per %d days; WARNING: ClickHouse %s has no table-level grants, so dpUser %s can write every table, not only the ε ledger (upgrade to 20.5+ and use dp_user.sql)",
			d.settings.DPBudget, d.settings.DPPeriodDays, ver, d.settings.DPUser), nil
	}
	return fmt.Sprintf("differential-privacy aggregates on as %s, ε budget %v per login per %d days",
		d.settings.DPUser, d.settings.DPBudget, d.settings.DPPeriodDays), nil
}
