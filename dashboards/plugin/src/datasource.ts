import type { DataSourceInstanceSettings } from '@grafana/data';
import { DataSourceWithBackend } from '@grafana/runtime';

import { defaultQuery, type MCPWatchOptions, type MCPWatchQuery } from './types';

/** A control in force, as GET /controls returns it (response/ops.Rows). */
export type ControlRow = Record<string, unknown>;

/**
 * The mcpwatch datasource: queries go to the backend (QueryData); operator actions go through its
 * resources, where the backend checks the Grafana user's role and records the action.
 */
export class DataSource extends DataSourceWithBackend<MCPWatchQuery, MCPWatchOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<MCPWatchOptions>) {
    super(instanceSettings);
  }

  getDefaultQuery(): Partial<MCPWatchQuery> {
    return defaultQuery;
  }

  /** The controls in force (any signed-in user). */
  controls(): Promise<ControlRow[]> {
    return this.getResource('controls');
  }

  /**
   * Approval requests (state: pending by default, or approved, denied, expired, consumed, all).
   * Read-only: votes are Ed25519-signed by each approver with `mcpwatch response approve|deny`.
   */
  approvals(state = 'pending'): Promise<unknown[]> {
    return this.getResource('approvals', { state });
  }

  /** Lifts one control (role at least the datasource's operatorRole); returns the actions written. */
  lift(key: string, reason: string, findingId?: string): Promise<{ actions: unknown[] }> {
    return this.postResource('lift', { key, reason, findingId });
  }
}
