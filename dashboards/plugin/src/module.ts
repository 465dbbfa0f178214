import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import type { MCPWatchOptions, MCPWatchQuery } from './types';

export const plugin = new DataSourcePlugin<DataSource, MCPWatchQuery, MCPWatchOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);

// Grafana reads only `plugin`; the signing helpers are exported for test/vote.mjs, which checks
// them against the Go verifier.
export { checkView, rfc3339Nano, signingBytes, signVote } from './vote';
