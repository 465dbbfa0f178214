import * as React from 'react';
import type { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { fieldsFor, queryTypes, subjects, type MCPWatchOptions, type MCPWatchQuery } from '../types';

type Props = QueryEditorProps<DataSource, MCPWatchQuery, MCPWatchOptions>;

const subjectOptions = subjects.map((s) => ({ value: s, label: s }));

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
    </InlineFieldRow>
  );
}
