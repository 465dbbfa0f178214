// Loads the built module.js the way Grafana's plugin loader does (an AMD define() handed react and
// Grafana's packages) with stand-ins for @grafana/data, runtime and ui, and checks what Grafana
// relies on: the module exports a DataSourcePlugin whose datasource extends DataSourceWithBackend
// and whose config and query editors render with real React and write the settings and query
// fields the backend reads. Run by frontend_test.go; exits non-zero with the reason on failure.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const React = require('react');
const { renderToStaticMarkup } = require('react-dom/server');

// Grafana shares these with plugins (among others); the module may import nothing else.
const shared = new Set(['react', '@grafana/data', '@grafana/runtime', '@grafana/ui']);

class DataSourcePlugin {
  constructor(ds) {
    this.DataSourceClass = ds;
    this.components = {};
  }
  setConfigEditor(c) {
    this.components.ConfigEditor = c;
    return this;
  }
  setQueryEditor(c) {
    this.components.QueryEditor = c;
    return this;
  }
}
const resourceCalls = [];
class DataSourceWithBackend {
  constructor(settings) {
    this.instanceSettings = settings;
  }
  getResource(path, params) {
    resourceCalls.push(['GET', path, params]);
    return Promise.resolve([]);
  }
  postResource(path, body) {
    resourceCalls.push(['POST', path, body]);
    return Promise.resolve({ actions: [] });
  }
}
// UI stand-ins render plain elements and remember each input's props by id, so the test can fire
// the editor's handlers the way the real components would.
const inputs = new Map();
const el = (tag, idProp) => (props) => {
  inputs.set(props[idProp], props);
  return React.createElement(tag, { id: props[idProp], 'data-value': String(props.value ?? '') });
};
const ui = {
  InlineField: ({ label, children }) => React.createElement('div', null, React.createElement('label', null, label), children),
  InlineFieldRow: ({ children }) => React.createElement('div', null, children),
  Input: el('input', 'id'),
  SecretInput: el('input', 'id'),
  SecretTextArea: el('textarea', 'id'),
  Select: el('select', 'inputId'),
};

let defined;
globalThis.define = (deps, factory) => {
  for (const d of deps) assert.ok(shared.has(d), `module.js imports ${d}, which Grafana does not share with plugins`);
  const mods = { react: React, '@grafana/data': { DataSourcePlugin }, '@grafana/runtime': { DataSourceWithBackend }, '@grafana/ui': ui };
  defined = factory(...deps.map((d) => mods[d]));
};
new Function(readFileSync(process.argv[2] ?? 'dist/module.js', 'utf8'))();

assert.ok(defined, 'module.js did not call define()');
const { plugin } = defined;
assert.ok(plugin instanceof DataSourcePlugin, 'module.js exports no `plugin` made with DataSourcePlugin');
const { ConfigEditor, QueryEditor } = plugin.components;
assert.equal(typeof ConfigEditor, 'function', 'no config editor');
assert.equal(typeof QueryEditor, 'function', 'no query editor');

// The datasource: backend queries, default query, and the resources of operator actions.
const ds = new plugin.DataSourceClass({ uid: 'x', jsonData: {} });
assert.ok(ds instanceof DataSourceWithBackend, 'the datasource must extend DataSourceWithBackend (queries go to the backend)');
assert.equal(ds.getDefaultQuery().queryType, 'principal_timeline');
await ds.controls();
await ds.approvals();
await ds.lift('k1', 'false positive', 'f1');
assert.deepEqual(resourceCalls, [
  ['GET', 'controls', undefined],
  ['GET', 'approvals', { state: 'pending' }],
  ['POST', 'lift', { key: 'k1', reason: 'false positive', findingId: 'f1' }],
]);

// Query editor: each type shows only the fields the backend reads.
const render = (C, props) => {
  inputs.clear();
  return renderToStaticMarkup(React.createElement(C, props));
};
let changed, ran;
const qprops = (query) => ({ query, onChange: (q) => (changed = q), onRunQuery: () => (ran = true), datasource: ds });
let html = render(QueryEditor, qprops({ refId: 'A', queryType: 'principal_timeline' }));
assert.match(html, /Principal/);
assert.ok(!inputs.has('mcpwatch-subject'), 'principal_timeline shows a subject');
html = render(QueryEditor, qprops({ refId: 'A', queryType: 'investigation' }));
assert.ok(inputs.has('mcpwatch-subject') && inputs.has('mcpwatch-tenant'), 'investigation needs subject and tenant');
assert.deepEqual(inputs.get('mcpwatch-subject').options.map((o) => o.value), ['principal', 'session', 'resource', 'sandbox']);
html = render(QueryEditor, qprops({ refId: 'A', queryType: 'epsilon_ledger' }));
assert.ok(!inputs.has('mcpwatch-tenant'), 'the ledger query reads no tenant');
assert.match(html, /Analyst/);
assert.deepEqual(inputs.get('mcpwatch-query-type').options.map((o) => o.value),
  ['principal_timeline', 'investigation', 'score_explanation', 'epsilon_ledger', 'dp_aggregate']);
// dp_aggregate: aggregate, filter, ε and tenant under the backend's names (query.dp is
// privacy.Request); column and clamping bounds only for sum and mean; no value or limit.
html = render(QueryEditor, qprops({ refId: 'A', queryType: 'dp_aggregate', tenant: 'acme' }));
assert.ok(inputs.has('mcpwatch-tenant') && inputs.has('mcpwatch-dp-aggregate') && inputs.has('mcpwatch-dp-epsilon'), 'dp_aggregate fields missing');
assert.ok(!inputs.has('mcpwatch-value') && !inputs.has('mcpwatch-limit'), 'dp_aggregate reads no value or limit');
assert.ok(!inputs.has('mcpwatch-dp-column'), 'count shows a column');
assert.deepEqual(inputs.get('mcpwatch-dp-aggregate').options.map((o) => o.value), ['count', 'sum', 'mean']);
ran = false;
inputs.get('mcpwatch-dp-filter').onChange({ currentTarget: { value: "tool = 'db_query'" } });
assert.deepEqual(changed, { refId: 'A', queryType: 'dp_aggregate', tenant: 'acme', dp: { filter: "tool = 'db_query'" } });
assert.equal(ran, false, 'typing a filter must not run (and spend ε)');
inputs.get('mcpwatch-dp-epsilon').onChange({ currentTarget: { value: '-1' } });
assert.equal(changed.dp.epsilon, undefined, 'a non-positive ε must not be sent');
inputs.get('mcpwatch-dp-epsilon').onChange({ currentTarget: { value: '0.25' } });
assert.equal(changed.dp.epsilon, 0.25);
render(QueryEditor, qprops({ refId: 'A', queryType: 'dp_aggregate', dp: { aggregate: 'mean', column: 'latency_ms' } }));
assert.deepEqual(inputs.get('mcpwatch-dp-column').options.map((o) => o.value),
  ['request_bytes', 'response_bytes', 'latency_ms', 'severity', 'sensitivity', 'span_duration_ms', 'pii_count']);
inputs.get('mcpwatch-dp-lower').onChange({ currentTarget: { value: '0' } });
assert.equal(changed.dp.lower, 0);
inputs.get('mcpwatch-dp-upper').onChange({ currentTarget: { value: '100' } });
assert.deepEqual(changed.dp, { aggregate: 'mean', column: 'latency_ms', upper: 100 });
inputs.get('mcpwatch-dp-aggregate').onChange({ value: 'count' });
assert.deepEqual(changed.dp, { aggregate: 'count', column: undefined, lower: undefined, upper: undefined }, 'count must drop column and bounds');
// Changing the type keeps the other fields and runs the query.
render(QueryEditor, qprops({ refId: 'A', queryType: 'principal_timeline', value: 'alice' }));
inputs.get('mcpwatch-query-type').onChange({ value: 'score_explanation' });
assert.deepEqual(changed, { refId: 'A', queryType: 'score_explanation', value: 'alice' });
assert.equal(ran, true);
inputs.get('mcpwatch-limit').onChange({ currentTarget: { value: '-3' } });
assert.equal(changed.limit, undefined, 'a negative limit must not be sent');
inputs.get('mcpwatch-limit').onChange({ currentTarget: { value: '50' } });
assert.equal(changed.limit, 50);

// Config editor: settings go to jsonData under the backend's names, the password only to
// secureJsonData.
let opts;
const options = { jsonData: { addr: 'ch:9000' }, secureJsonFields: { password: true }, secureJsonData: {} };
render(ConfigEditor, { options, onOptionsChange: (o) => (opts = o) });
assert.equal(inputs.get('mcpwatch-password').isConfigured, true, 'a stored password must show as configured');
inputs.get('mcpwatch-password').onChange({ currentTarget: { value: 's3cret' } });
assert.equal(opts.secureJsonData.password, 's3cret');
assert.ok(!JSON.stringify(opts.jsonData).includes('s3cret'), 'the password leaked into jsonData');
const set = (id, value) => {
  inputs.get(id).onChange({ currentTarget: { value } });
  return opts.jsonData;
};
assert.deepEqual(set('mcpwatch-database', 'mcpwatch'), { addr: 'ch:9000', database: 'mcpwatch' });
assert.equal(set('mcpwatch-user', 'reader').user, 'reader');
assert.equal(set('mcpwatch-max-rows', '500').maxRows, 500);
assert.equal(set('mcpwatch-max-exec', 'x').maxExecutionSeconds, undefined);
assert.equal(set('mcpwatch-kafka', 'k:9092').kafkaBrokers, 'k:9092');
assert.equal(set('mcpwatch-topic-prefix', 'p.').topicPrefix, 'p.');
assert.equal(set('mcpwatch-approvals-url', 'http://a:1').approvalsUrl, 'http://a:1');
assert.deepEqual(inputs.get('mcpwatch-operator-role').options.map((o) => o.value), ['Editor', 'Admin']);
inputs.get('mcpwatch-operator-role').onChange({ value: 'Admin' });
assert.equal(opts.jsonData.operatorRole, 'Admin');
inputs.get('mcpwatch-password').onReset();
assert.equal(opts.secureJsonFields.password, false);
// The DP user: name and budget in jsonData, its password only in secureJsonData.
assert.equal(set('mcpwatch-dp-user', 'mcpwatch_dp').dpUser, 'mcpwatch_dp');
assert.equal(set('mcpwatch-dp-budget', '2.5').dpBudget, 2.5);
assert.equal(set('mcpwatch-dp-budget', '0').dpBudget, undefined);
assert.equal(set('mcpwatch-dp-period', '7').dpPeriodDays, 7);
assert.equal(inputs.get('mcpwatch-dp-password').isConfigured, false);
inputs.get('mcpwatch-dp-password').onChange({ currentTarget: { value: 'dp-s3cret' } });
assert.equal(opts.secureJsonData.dpPassword, 'dp-s3cret');
assert.ok(!JSON.stringify(opts.jsonData).includes('dp-s3cret'), 'the dp password leaked into jsonData');
inputs.get('mcpwatch-dp-password').onReset();
assert.equal(opts.secureJsonFields.dpPassword, false);

// The approvals API's TLS material: PEM text only in secureJsonData.
for (const [id, field] of [['mcpwatch-approvals-ca', 'approvalsCaCert'], ['mcpwatch-approvals-cert', 'approvalsClientCert'],
  ['mcpwatch-approvals-key', 'approvalsClientKey']]) {
  const text = `-----BEGIN ${field}-----`;
  inputs.get(id).onChange({ currentTarget: { value: text } });
  assert.equal(opts.secureJsonData[field], text);
  assert.ok(!JSON.stringify(opts.jsonData).includes(text), `${field} leaked into jsonData`);
  inputs.get(id).onReset();
  assert.equal(opts.secureJsonFields[field], false);
}

console.log('module.js: plugin, datasource, query editor and config editor ok');
