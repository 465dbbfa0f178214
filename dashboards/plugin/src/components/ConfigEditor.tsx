import * as React from 'react';
import type { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, SecretInput, SecretTextArea, Select } from '@grafana/ui';

import type { MCPWatchOptions, MCPWatchSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<MCPWatchOptions, MCPWatchSecureOptions>;

const roleOptions = [
  { value: 'Editor' as const, label: 'Editor' },
  { value: 'Admin' as const, label: 'Admin' },
];

const w = 24;
const lw = 40;

/**
 * The datasource settings: the ClickHouse read-only connection (the password kept in
 * secureJsonData, write-only from the browser), the server-side limits, and the Kafka connection and
 * role that operator actions (lift) need. The backend validates them (mcpwatchds.Settings.Validate).
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const j = options.jsonData;
  const setJSON = (patch: Partial<MCPWatchOptions>) =>
    onOptionsChange({ ...options, jsonData: { ...j, ...patch } });
  // A PEM field of secureJsonData: write-only from the browser, shown as configured once stored.
  const pem = (field: 'approvalsCaCert' | 'approvalsClientCert' | 'approvalsClientKey', id: string) => (
    <SecretTextArea
      id={id}
      rows={4}
      cols={40}
      placeholder="-----BEGIN ..."
      isConfigured={Boolean(options.secureJsonFields?.[field])}
      value={options.secureJsonData?.[field] ?? ''}
      onChange={(e) =>
        onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, [field]: e.currentTarget.value } })
      }
      onReset={() =>
        onOptionsChange({
          ...options,
          secureJsonFields: { ...options.secureJsonFields, [field]: false },
          secureJsonData: { ...options.secureJsonData, [field]: '' },
        })
      }
    />
  );
  const num = (s: string) => {
    const n = parseInt(s, 10);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  };
  return (
    <>
      <h3 className="page-heading">ClickHouse (read-only user)</h3>
      <InlineField label="Address" labelWidth={lw} tooltip="native protocol, host:9000">
        <Input id="mcpwatch-addr" width={w} placeholder="127.0.0.1:9000" value={j.addr ?? ''}
          onChange={(e) => setJSON({ addr: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="Database" labelWidth={lw}>
        <Input id="mcpwatch-database" width={w} placeholder="mcpwatch" value={j.database ?? ''}
          onChange={(e) => setJSON({ database: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="User" labelWidth={lw} tooltip="a user with the reader role; Save & test refuses one that can write">
        <Input id="mcpwatch-user" width={w} placeholder="mcpwatch_reader" value={j.user ?? ''}
          onChange={(e) => setJSON({ user: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="Password" labelWidth={lw}>
        <SecretInput
          id="mcpwatch-password"
          width={w}
          isConfigured={Boolean(options.secureJsonFields?.password)}
          value={options.secureJsonData?.password ?? ''}
          onChange={(e) =>
            onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, password: e.currentTarget.value } })
          }
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...options.secureJsonFields, password: false },
              secureJsonData: { ...options.secureJsonData, password: '' },
            })
          }
        />
      </InlineField>
      <h3 className="page-heading">Limits</h3>
      <InlineField label="Row limit" labelWidth={lw} tooltip="every result is capped here; default 10000, at most 1000000">
        <Input id="mcpwatch-max-rows" type="number" width={w} placeholder="10000" value={j.maxRows ?? ''}
          onChange={(e) => setJSON({ maxRows: num(e.currentTarget.value) })} />
      </InlineField>
      <InlineField label="Max execution time (s)" labelWidth={lw} tooltip="sent as max_execution_time; default 30, at most 600">
        <Input id="mcpwatch-max-exec" type="number" width={w} placeholder="30" value={j.maxExecutionSeconds ?? ''}
          onChange={(e) => setJSON({ maxExecutionSeconds: num(e.currentTarget.value) })} />
      </InlineField>
      <h3 className="page-heading">Operator actions</h3>
      <InlineField label="Kafka brokers" labelWidth={lw} tooltip="comma-separated; empty turns lifting off">
        <Input id="mcpwatch-kafka" width={w} value={j.kafkaBrokers ?? ''}
          onChange={(e) => setJSON({ kafkaBrokers: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="Topic prefix" labelWidth={lw}>
        <Input id="mcpwatch-topic-prefix" width={w} value={j.topicPrefix ?? ''}
          onChange={(e) => setJSON({ topicPrefix: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="Approvals API URL" labelWidth={lw} tooltip="mcpwatch response approvals-serve; lists requests and relays votes signed in the browser">
        <Input id="mcpwatch-approvals-url" width={w} placeholder="http://127.0.0.1:8390" value={j.approvalsUrl ?? ''}
          onChange={(e) => setJSON({ approvalsUrl: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="Approvals API CA (PEM)" labelWidth={lw} tooltip="verifies an https approvals API; empty: the system's roots">
        {pem('approvalsCaCert', 'mcpwatch-approvals-ca')}
      </InlineField>
      <InlineField label="Approvals client certificate (PEM)" labelWidth={lw} tooltip="for an approvals API run with --client-ca (mTLS)">
        {pem('approvalsClientCert', 'mcpwatch-approvals-cert')}
      </InlineField>
      <InlineField label="Approvals client key (PEM)" labelWidth={lw}>
        {pem('approvalsClientKey', 'mcpwatch-approvals-key')}
      </InlineField>
      <InlineField label="Role needed to lift controls" labelWidth={lw}>
        <Select inputId="mcpwatch-operator-role" width={w} options={roleOptions} value={j.operatorRole ?? 'Editor'}
          onChange={(v) => setJSON({ operatorRole: v.value })} />
      </InlineField>
      <h3 className="page-heading">Differential privacy (ε ledger user)</h3>
      <InlineField label="DP user" labelWidth={lw} tooltip="writes the ε ledger for DP aggregates (dp_user.sql); empty turns them off">
        <Input id="mcpwatch-dp-user" width={w} placeholder="mcpwatch_dp" value={j.dpUser ?? ''}
          onChange={(e) => setJSON({ dpUser: e.currentTarget.value })} />
      </InlineField>
      <InlineField label="DP user password" labelWidth={lw}>
        <SecretInput
          id="mcpwatch-dp-password"
          width={w}
          isConfigured={Boolean(options.secureJsonFields?.dpPassword)}
          value={options.secureJsonData?.dpPassword ?? ''}
          onChange={(e) =>
            onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, dpPassword: e.currentTarget.value } })
          }
          onReset={() =>
            onOptionsChange({
              ...options,
              secureJsonFields: { ...options.secureJsonFields, dpPassword: false },
              secureJsonData: { ...options.secureJsonData, dpPassword: '' },
            })
          }
        />
      </InlineField>
      <InlineField label="ε budget per Grafana login" labelWidth={lw} tooltip="default 5">
        <Input id="mcpwatch-dp-budget" type="number" width={w} placeholder="5" value={j.dpBudget ?? ''}
          onChange={(e) => {
            const n = parseFloat(e.currentTarget.value);
            setJSON({ dpBudget: Number.isFinite(n) && n > 0 ? n : undefined });
          }} />
      </InlineField>
      <InlineField label="Budget period (days)" labelWidth={lw} tooltip="rolling window; default 30">
        <Input id="mcpwatch-dp-period" type="number" width={w} placeholder="30" value={j.dpPeriodDays ?? ''}
          onChange={(e) => setJSON({ dpPeriodDays: num(e.currentTarget.value) })} />
      </InlineField>
    </>
  );
}
