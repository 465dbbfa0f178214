// The query and settings models; the backend (mcpwatchds/query.go, settings.go) reads the same JSON.
import type { DataQuery, DataSourceJsonData } from '@grafana/data';

/** Query types the backend answers (mcpwatchds.Query* constants). */
export const queryTypes = [
  { value: 'principal_timeline', label: 'Principal timeline', description: "one principal's calls, denials, findings and actions" },
  { value: 'investigation', label: 'Investigation', description: 'everything about a principal, session, resource or sandbox' },
  { value: 'score_explanation', label: 'Score explanation', description: 'threat score with its components and evidence' },
  { value: 'epsilon_ledger', label: 'ε ledger', description: 'differential-privacy budget spent, per tenant' },
  { value: 'dp_aggregate', label: 'DP aggregate', description: 'noisy count, sum or mean of events, charged to your ε budget' },
] as const;

export type QueryType = (typeof queryTypes)[number]['value'];

/** Subjects of an investigation (forensics.Subject). */
export const subjects = ['principal', 'session', 'resource', 'sandbox'] as const;

/** Aggregates and value columns of a dp_aggregate (privacy.Aggregate, privacy's allow-list). */
export const dpAggregates = ['count', 'sum', 'mean'] as const;
export const dpColumns = ['request_bytes', 'response_bytes', 'latency_ms', 'severity', 'sensitivity', 'span_duration_ms', 'pii_count'] as const;

/**
 * A dp_aggregate question (privacy.Request as JSON). The analyst charged is the Grafana login,
 * set by the backend; tenant and time range come from the query and the panel.
 */
export interface DPRequest {
  aggregate?: (typeof dpAggregates)[number];
  column?: (typeof dpColumns)[number];
  lower?: number;
  upper?: number;
  filter?: string;
  epsilon?: number;
}

export interface MCPWatchQuery extends DataQuery {
  queryType?: QueryType;
  subject?: (typeof subjects)[number];
  tenant?: string;
  value?: string;
  limit?: number;
  dp?: DPRequest;
}

export const defaultQuery: Partial<MCPWatchQuery> = { queryType: 'principal_timeline', tenant: '$tenant', value: '$principal' };

/** jsonData of the datasource (mcpwatchds.Settings). */
export interface MCPWatchOptions extends DataSourceJsonData {
  addr?: string;
  database?: string;
  user?: string;
  maxExecutionSeconds?: number;
  maxRows?: number;
  kafkaBrokers?: string;
  topicPrefix?: string;
  operatorRole?: 'Editor' | 'Admin';
  /** Base URL of the approvals API; the plugin lists requests there and relays votes signed in the browser. */
  approvalsUrl?: string;
  /** Grafana login → approver id, for logins that differ from their approver id. */
  approverLogins?: Record<string, string>;
  /** ClickHouse user that writes the ε ledger for dp_aggregate (dashboards/plugin/dp_user.sql); empty: off. */
  dpUser?: string;
  /** ε per Grafana login per period; default 5. */
  dpBudget?: number;
  /** Accounting window of the budget in days; default 30. */
  dpPeriodDays?: number;
}

/** secureJsonData: the read-only user's password, never sent back to the browser. */
export interface MCPWatchSecureOptions {
  password?: string;
  /** The dp user's password. */
  dpPassword?: string;
  /** PEM: the CA that verifies an https approvals API (empty: the system's roots). */
  approvalsCaCert?: string;
  /** PEM: the plugin's client certificate and key, for an approvals API that requires one (mTLS). */
  approvalsClientCert?: string;
  approvalsClientKey?: string;
}

/** Which fields a query type uses, so the editor shows only those. */
export function fieldsFor(t: QueryType | undefined): { subject: boolean; tenant: boolean; value: string; dp?: boolean } {
  switch (t) {
    case 'dp_aggregate':
      return { subject: false, tenant: true, value: '', dp: true };
    case 'investigation':
      return { subject: true, tenant: true, value: 'Value' };
    case 'epsilon_ledger':
      return { subject: false, tenant: false, value: 'Analyst (empty: all)' };
    default:
      return { subject: false, tenant: true, value: 'Principal' };
  }
}
