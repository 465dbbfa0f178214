// The query and settings models; the backend (mcpwatchds/query.go, settings.go) reads the same JSON.
import type { DataQuery, DataSourceJsonData } from '@grafana/data';

/** Query types the backend answers (mcpwatchds.Query* constants). */
export const queryTypes = [
  { value: 'principal_timeline', label: 'Principal timeline', description: "one principal's calls, denials, findings and actions" },
  { value: 'investigation', label: 'Investigation', description: 'everything about a principal, session, resource or sandbox' },
  { value: 'score_explanation', label: 'Score explanation', description: 'threat score with its components and evidence' },
  { value: 'epsilon_ledger', label: 'ε ledger', description: 'differential-privacy budget spent, per tenant' },
] as const;

export type QueryType = (typeof queryTypes)[number]['value'];

/** Subjects of an investigation (forensics.Subject). */
export const subjects = ['principal', 'session', 'resource', 'sandbox'] as const;

export interface MCPWatchQuery extends DataQuery {
  queryType?: QueryType;
  subject?: (typeof subjects)[number];
  tenant?: string;
  value?: string;
  limit?: number;
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
  /** Base URL of the approvals API; the plugin lists requests there, votes are signed with the CLI. */
  approvalsUrl?: string;
}

/** secureJsonData: the read-only user's password, never sent back to the browser. */
export interface MCPWatchSecureOptions {
  password?: string;
}

/** Which fields a query type uses, so the editor shows only those. */
export function fieldsFor(t: QueryType | undefined): { subject: boolean; tenant: boolean; value: string } {
  switch (t) {
    case 'investigation':
      return { subject: true, tenant: true, value: 'Value' };
    case 'epsilon_ledger':
      return { subject: false, tenant: false, value: 'Analyst (empty: all)' };
    default:
      return { subject: false, tenant: true, value: 'Principal' };
  }
}
