import type { DataSourceInstanceSettings } from '@grafana/data';
import { DataSourceWithBackend } from '@grafana/runtime';

import { defaultQuery, type MCPWatchOptions, type MCPWatchQuery } from './types';
import { signVote, type Decision, type RequestView } from './vote';

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

  /** Approval requests (state: pending by default, or approved, denied, expired, consumed, all). */
  approvals(state = 'pending'): Promise<unknown[]> {
    return this.getResource('approvals', { state });
  }

  /** One approval request with its record and the hash a vote signs (any signed-in user). */
  approval(id: string): Promise<RequestView> {
    return this.getResource(`approvals/${encodeURIComponent(id)}`);
  }

  /**
   * Votes on approval request id as approver, signing in this browser with pkcs8Pem (the PRIVATE
   * KEY file of `mcpwatch response approver-key`, read by the caller from a file input or a
   * paste): it fetches the request, checks that its hash is its record's, signs with WebCrypto
   * and posts the signed vote, which the backend relays to the approvals API. The key never
   * leaves the browser. The backend accepts the vote only from a user with at least the
   * operatorRole whose approver id (jsonData.approverLogins, default the login) is approver.
   * Returns the request's status after the vote.
   */
  async vote(id: string, approver: string, pkcs8Pem: string, decision: Decision, reason: string): Promise<RequestView> {
    const view = await this.approval(id);
    const v = await signVote(view, id, approver, pkcs8Pem, decision, reason);
    return this.postResource(`approvals/${encodeURIComponent(id)}/votes`, v);
  }

  /** Lifts one control (role at least the datasource's operatorRole); returns the actions written. */
  lift(key: string, reason: string, findingId?: string): Promise<{ actions: unknown[] }> {
    return this.postResource('lift', { key, reason, findingId });
  }
}
