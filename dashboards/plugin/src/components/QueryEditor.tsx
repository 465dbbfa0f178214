import * as React from 'react';
import type { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { dpAggregates, dpColumns, fieldsFor, queryTypes, subjects, type DPRequest, type MCPWatchOptions, type MCPWatchQuery } from '../types';

type Props = QueryEditorProps<DataSource, MCPWatchQuery, MCPWatchOptions>;

const subjectOptions = subjects.map((s) => ({ value: s, label: s }));
const aggregateOptions = dpAggregates.map((s) => ({ value: s, label: s }));
const columnOptions = dpColumns.map((s) => ({ value: s, label: s }));

/** A number from an input, or undefined when it is not one (so nothing invalid is sent). */
const float = (s: string) => {
  const n = parseFloat(s);
  return Number.isFinite(n) ? n : undefined;
};

/** Picks the query type and shows only the parameters that type reads. */
export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const f = fieldsFor(query.queryType);
  const set = (patch: Partial<MCPWatchQuery>, run = false) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  return (
    <InlineFieldRow>
      <InlineField label="Query type" labelWidth={14}>
        <Select
          inputId="mcpwatch-query-type"
          width={28}
          options={queryTypes.map((q) => ({ ...q }))}
          value={query.queryType}
          onChange={(v) => set({ queryType: v.value }, true)}
        />
      </InlineField>
      {f.subject && (
        <InlineField label="Subject" labelWidth={10}>
          <Select
            inputId="mcpwatch-subject"
            width={16}
            options={subjectOptions}
            value={query.subject ?? 'principal'}
            onChange={(v) => set({ subject: v.value }, true)}
          />
        </InlineField>
      )}
      {f.tenant && (
        <InlineField label="Tenant" labelWidth={10} tooltip="empty or $__all: every tenant">
          <Input
            id="mcpwatch-tenant"
            width={20}
            value={query.tenant ?? ''}
            onChange={(e) => set({ tenant: e.currentTarget.value })}
            onBlur={onRunQuery}
          />
        </InlineField>
      )}
      {f.dp ? (
        <DPFields dp={query.dp ?? {}} set={(p, run) => set({ dp: { ...query.dp, ...p } }, run)} onRunQuery={onRunQuery} />
      ) : (
        <>
      <InlineField label={f.value} labelWidth={20}>
        <Input
          id="mcpwatch-value"
          width={32}
          value={query.value ?? ''}
          onChange={(e) => set({ value: e.currentTarget.value })}
          onBlur={onRunQuery}
        />
      </InlineField>
      <InlineField label="Limit" labelWidth={8} tooltip="rows; capped by the datasource's row limit">
        <Input
          id="mcpwatch-limit"
          type="number"
          width={10}
          value={query.limit ?? ''}
          onChange={(e) => {
            const n = parseInt(e.currentTarget.value, 10);
            set({ limit: Number.isFinite(n) && n > 0 ? n : undefined });
          }}
          onBlur={onRunQuery}
        />
      </InlineField>
        </>
      )}
    </InlineFieldRow>
  );
}

/**
 * The dp_aggregate question: aggregate, value column and clamping bounds (sum and mean), the
 * filter (privacy.ParseFilter's grammar) and ε. Each run spends ε of the viewer's own budget, so
 * edits do not run the query; only leaving a field or picking an aggregate does.
 */
function DPFields({ dp, set, onRunQuery }: { dp: DPRequest; set: (p: Partial<DPRequest>, run?: boolean) => void; onRunQuery: () => void }) {
  const valued = dp.aggregate === 'sum' || dp.aggregate === 'mean';
  return (
    <>
      <InlineField label="Aggregate" labelWidth={12}>
        <Select
          inputId="mcpwatch-dp-aggregate"
          width={12}
          options={aggregateOptions}
          value={dp.aggregate ?? 'count'}
          onChange={(v) =>
            set(v.value === 'count' ? { aggregate: v.value, column: undefined, lower: undefined, upper: undefined } : { aggregate: v.value })
          }
        />
      </InlineField>
      {valued && (
        <>
          <InlineField label="Column" labelWidth={10}>
            <Select inputId="mcpwatch-dp-column" width={20} options={columnOptions} value={dp.column} onChange={(v) => set({ column: v.value })} />
          </InlineField>
          <InlineField label="Clamp" labelWidth={8} tooltip="every value is clamped to [lower, upper]: the bound on one record's influence">
            <Input id="mcpwatch-dp-lower" type="number" width={10} placeholder="lower" value={dp.lower ?? ''}
              onChange={(e) => set({ lower: float(e.currentTarget.value) })} onBlur={onRunQuery} />
          </InlineField>
          <InlineField label="to" labelWidth={4}>
            <Input id="mcpwatch-dp-upper" type="number" width={10} placeholder="upper" value={dp.upper ?? ''}
              onChange={(e) => set({ upper: float(e.currentTarget.value) })} onBlur={onRunQuery} />
          </InlineField>
        </>
      )}
      <InlineField label="Filter" labelWidth={8} tooltip="e.g. tool = 'db_query' AND result = 'denied'; see docs/privacy.md">
        <Input id="mcpwatch-dp-filter" width={36} value={dp.filter ?? ''} onChange={(e) => set({ filter: e.currentTarget.value })} onBlur={onRunQuery} />
      </InlineField>
      <InlineField label="ε" labelWidth={4} tooltip="spent from your budget on every run; default 0.5">
        <Input id="mcpwatch-dp-epsilon" type="number" width={8} placeholder="0.5" value={dp.epsilon ?? ''}
          onChange={(e) => {
            const n = float(e.currentTarget.value);
            set({ epsilon: n !== undefined && n > 0 ? n : undefined });
          }}
          onBlur={onRunQuery} />
      </InlineField>
    </>
  );
}
