define(["react","@grafana/data","@grafana/runtime","@grafana/ui"], function (d0, d1, d2, d3) {
var deps = {"react": d0, "@grafana/data": d1, "@grafana/runtime": d2, "@grafana/ui": d3};
function require(name) {
  if (!Object.prototype.hasOwnProperty.call(deps, name)) throw new Error("mcpwatch plugin: no module " + name);
  return deps[name];
}
var module = { exports: {} }, exports = module.exports;
var __create = Object.create;
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __getProtoOf = Object.getPrototypeOf;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toESM = (mod, isNodeMode, target) => (target = mod != null ? __create(__getProtoOf(mod)) : {}, __copyProps(
  // If the importer is in node compatibility mode or this is not an ESM
  // file that has been converted to a CommonJS file using a Babel-
  // compatible transform (i.e. "__esModule" has not been set), then set
  // "default" to the CommonJS "module.exports" for node compatibility.
  isNodeMode || !mod || !mod.__esModule ? __defProp(target, "default", { value: mod, enumerable: true }) : target,
  mod
));
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

// src/module.ts
var module_exports = {};
__export(module_exports, {
  checkView: () => checkView,
  plugin: () => plugin,
  rfc3339Nano: () => rfc3339Nano,
  signVote: () => signVote,
  signingBytes: () => signingBytes
});
module.exports = __toCommonJS(module_exports);
var import_data = require("@grafana/data");

// src/components/ConfigEditor.tsx
var React = __toESM(require("react"), 1);
var import_ui = require("@grafana/ui");
var roleOptions = [
  { value: "Editor", label: "Editor" },
  { value: "Admin", label: "Admin" }
];
var w = 24;
var lw = 40;
function ConfigEditor({ options, onOptionsChange }) {
  const j = options.jsonData;
  const setJSON = (patch) => onOptionsChange({ ...options, jsonData: { ...j, ...patch } });
  const pem = (field, id) => /* @__PURE__ */ React.createElement(
    import_ui.SecretTextArea,
    {
      id,
      rows: 4,
      cols: 40,
      placeholder: "-----BEGIN ...",
      isConfigured: Boolean(options.secureJsonFields?.[field]),
      value: options.secureJsonData?.[field] ?? "",
      onChange: (e) => onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, [field]: e.currentTarget.value } }),
      onReset: () => onOptionsChange({
        ...options,
        secureJsonFields: { ...options.secureJsonFields, [field]: false },
        secureJsonData: { ...options.secureJsonData, [field]: "" }
      })
    }
  );
  const num = (s) => {
    const n = parseInt(s, 10);
    return Number.isFinite(n) && n > 0 ? n : void 0;
  };
  return /* @__PURE__ */ React.createElement(React.Fragment, null, /* @__PURE__ */ React.createElement("h3", { className: "page-heading" }, "ClickHouse (read-only user)"), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Address", labelWidth: lw, tooltip: "native protocol, host:9000" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-addr",
      width: w,
      placeholder: "127.0.0.1:9000",
      value: j.addr ?? "",
      onChange: (e) => setJSON({ addr: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Database", labelWidth: lw }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-database",
      width: w,
      placeholder: "mcpwatch",
      value: j.database ?? "",
      onChange: (e) => setJSON({ database: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "User", labelWidth: lw, tooltip: "a user with the reader role; Save & test refuses one that can write" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-user",
      width: w,
      placeholder: "mcpwatch_reader",
      value: j.user ?? "",
      onChange: (e) => setJSON({ user: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Password", labelWidth: lw }, /* @__PURE__ */ React.createElement(
    import_ui.SecretInput,
    {
      id: "mcpwatch-password",
      width: w,
      isConfigured: Boolean(options.secureJsonFields?.password),
      value: options.secureJsonData?.password ?? "",
      onChange: (e) => onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, password: e.currentTarget.value } }),
      onReset: () => onOptionsChange({
        ...options,
        secureJsonFields: { ...options.secureJsonFields, password: false },
        secureJsonData: { ...options.secureJsonData, password: "" }
      })
    }
  )), /* @__PURE__ */ React.createElement("h3", { className: "page-heading" }, "Limits"), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Row limit", labelWidth: lw, tooltip: "every result is capped here; default 10000, at most 1000000" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-max-rows",
      type: "number",
      width: w,
      placeholder: "10000",
      value: j.maxRows ?? "",
      onChange: (e) => setJSON({ maxRows: num(e.currentTarget.value) })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Max execution time (s)", labelWidth: lw, tooltip: "sent as max_execution_time; default 30, at most 600" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-max-exec",
      type: "number",
      width: w,
      placeholder: "30",
      value: j.maxExecutionSeconds ?? "",
      onChange: (e) => setJSON({ maxExecutionSeconds: num(e.currentTarget.value) })
    }
  )), /* @__PURE__ */ React.createElement("h3", { className: "page-heading" }, "Operator actions"), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Kafka brokers", labelWidth: lw, tooltip: "comma-separated; empty turns lifting off" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-kafka",
      width: w,
      value: j.kafkaBrokers ?? "",
      onChange: (e) => setJSON({ kafkaBrokers: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Topic prefix", labelWidth: lw }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-topic-prefix",
      width: w,
      value: j.topicPrefix ?? "",
      onChange: (e) => setJSON({ topicPrefix: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Approvals API URL", labelWidth: lw, tooltip: "mcpwatch response approvals-serve; lists requests and relays votes signed in the browser" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-approvals-url",
      width: w,
      placeholder: "http://127.0.0.1:8390",
      value: j.approvalsUrl ?? "",
      onChange: (e) => setJSON({ approvalsUrl: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Approvals API CA (PEM)", labelWidth: lw, tooltip: "verifies an https approvals API; empty: the system's roots" }, pem("approvalsCaCert", "mcpwatch-approvals-ca")), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Approvals client certificate (PEM)", labelWidth: lw, tooltip: "for an approvals API run with --client-ca (mTLS)" }, pem("approvalsClientCert", "mcpwatch-approvals-cert")), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Approvals client key (PEM)", labelWidth: lw }, pem("approvalsClientKey", "mcpwatch-approvals-key")), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Role needed to lift controls", labelWidth: lw }, /* @__PURE__ */ React.createElement(
    import_ui.Select,
    {
      inputId: "mcpwatch-operator-role",
      width: w,
      options: roleOptions,
      value: j.operatorRole ?? "Editor",
      onChange: (v) => setJSON({ operatorRole: v.value })
    }
  )), /* @__PURE__ */ React.createElement("h3", { className: "page-heading" }, "Differential privacy (\u03B5 ledger user)"), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "DP user", labelWidth: lw, tooltip: "writes the \u03B5 ledger for DP aggregates (dp_user.sql); empty turns them off" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-dp-user",
      width: w,
      placeholder: "mcpwatch_dp",
      value: j.dpUser ?? "",
      onChange: (e) => setJSON({ dpUser: e.currentTarget.value })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "DP user password", labelWidth: lw }, /* @__PURE__ */ React.createElement(
    import_ui.SecretInput,
    {
      id: "mcpwatch-dp-password",
      width: w,
      isConfigured: Boolean(options.secureJsonFields?.dpPassword),
      value: options.secureJsonData?.dpPassword ?? "",
      onChange: (e) => onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, dpPassword: e.currentTarget.value } }),
      onReset: () => onOptionsChange({
        ...options,
        secureJsonFields: { ...options.secureJsonFields, dpPassword: false },
        secureJsonData: { ...options.secureJsonData, dpPassword: "" }
      })
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "\u03B5 budget per Grafana login", labelWidth: lw, tooltip: "default 5" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-dp-budget",
      type: "number",
      width: w,
      placeholder: "5",
      value: j.dpBudget ?? "",
      onChange: (e) => {
        const n = parseFloat(e.currentTarget.value);
        setJSON({ dpBudget: Number.isFinite(n) && n > 0 ? n : void 0 });
      }
    }
  )), /* @__PURE__ */ React.createElement(import_ui.InlineField, { label: "Budget period (days)", labelWidth: lw, tooltip: "rolling window; default 30" }, /* @__PURE__ */ React.createElement(
    import_ui.Input,
    {
      id: "mcpwatch-dp-period",
      type: "number",
      width: w,
      placeholder: "30",
      value: j.dpPeriodDays ?? "",
      onChange: (e) => setJSON({ dpPeriodDays: num(e.currentTarget.value) })
    }
  )));
}

// src/components/QueryEditor.tsx
var React2 = __toESM(require("react"), 1);
var import_ui2 = require("@grafana/ui");

// src/types.ts
var queryTypes = [
  { value: "principal_timeline", label: "Principal timeline", description: "one principal's calls, denials, findings and actions" },
  { value: "investigation", label: "Investigation", description: "everything about a principal, session, resource or sandbox" },
  { value: "score_explanation", label: "Score explanation", description: "threat score with its components and evidence" },
  { value: "epsilon_ledger", label: "\u03B5 ledger", description: "differential-privacy budget spent, per tenant" },
  { value: "dp_aggregate", label: "DP aggregate", description: "noisy count, sum or mean of events, charged to your \u03B5 budget" }
];
var subjects = ["principal", "session", "resource", "sandbox"];
var dpAggregates = ["count", "sum", "mean"];
var dpColumns = ["request_bytes", "response_bytes", "latency_ms", "severity", "sensitivity", "span_duration_ms", "pii_count"];
var defaultQuery = { queryType: "principal_timeline", tenant: "$tenant", value: "$principal" };
function fieldsFor(t) {
  switch (t) {
    case "dp_aggregate":
      return { subject: false, tenant: true, value: "", dp: true };
    case "investigation":
      return { subject: true, tenant: true, value: "Value" };
    case "epsilon_ledger":
      return { subject: false, tenant: false, value: "Analyst (empty: all)" };
    default:
      return { subject: false, tenant: true, value: "Principal" };
  }
}

// src/components/QueryEditor.tsx
var subjectOptions = subjects.map((s) => ({ value: s, label: s }));
var aggregateOptions = dpAggregates.map((s) => ({ value: s, label: s }));
var columnOptions = dpColumns.map((s) => ({ value: s, label: s }));
var float = (s) => {
  const n = parseFloat(s);
  return Number.isFinite(n) ? n : void 0;
};
function QueryEditor({ query, onChange, onRunQuery }) {
  const f = fieldsFor(query.queryType);
  const set = (patch, run = false) => {
    onChange({ ...query, ...patch });
    if (run) {
      onRunQuery();
    }
  };
  return /* @__PURE__ */ React2.createElement(import_ui2.InlineFieldRow, null, /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Query type", labelWidth: 14 }, /* @__PURE__ */ React2.createElement(
    import_ui2.Select,
    {
      inputId: "mcpwatch-query-type",
      width: 28,
      options: queryTypes.map((q) => ({ ...q })),
      value: query.queryType,
      onChange: (v) => set({ queryType: v.value }, true)
    }
  )), f.subject && /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Subject", labelWidth: 10 }, /* @__PURE__ */ React2.createElement(
    import_ui2.Select,
    {
      inputId: "mcpwatch-subject",
      width: 16,
      options: subjectOptions,
      value: query.subject ?? "principal",
      onChange: (v) => set({ subject: v.value }, true)
    }
  )), f.tenant && /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Tenant", labelWidth: 10, tooltip: "empty or $__all: every tenant" }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-tenant",
      width: 20,
      value: query.tenant ?? "",
      onChange: (e) => set({ tenant: e.currentTarget.value }),
      onBlur: onRunQuery
    }
  )), f.dp ? /* @__PURE__ */ React2.createElement(DPFields, { dp: query.dp ?? {}, set: (p, run) => set({ dp: { ...query.dp, ...p } }, run), onRunQuery }) : /* @__PURE__ */ React2.createElement(React2.Fragment, null, /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: f.value, labelWidth: 20 }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-value",
      width: 32,
      value: query.value ?? "",
      onChange: (e) => set({ value: e.currentTarget.value }),
      onBlur: onRunQuery
    }
  )), /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Limit", labelWidth: 8, tooltip: "rows; capped by the datasource's row limit" }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-limit",
      type: "number",
      width: 10,
      value: query.limit ?? "",
      onChange: (e) => {
        const n = parseInt(e.currentTarget.value, 10);
        set({ limit: Number.isFinite(n) && n > 0 ? n : void 0 });
      },
      onBlur: onRunQuery
    }
  ))));
}
function DPFields({ dp, set, onRunQuery }) {
  const valued = dp.aggregate === "sum" || dp.aggregate === "mean";
  return /* @__PURE__ */ React2.createElement(React2.Fragment, null, /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Aggregate", labelWidth: 12 }, /* @__PURE__ */ React2.createElement(
    import_ui2.Select,
    {
      inputId: "mcpwatch-dp-aggregate",
      width: 12,
      options: aggregateOptions,
      value: dp.aggregate ?? "count",
      onChange: (v) => set(v.value === "count" ? { aggregate: v.value, column: void 0, lower: void 0, upper: void 0 } : { aggregate: v.value })
    }
  )), valued && /* @__PURE__ */ React2.createElement(React2.Fragment, null, /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Column", labelWidth: 10 }, /* @__PURE__ */ React2.createElement(import_ui2.Select, { inputId: "mcpwatch-dp-column", width: 20, options: columnOptions, value: dp.column, onChange: (v) => set({ column: v.value }) })), /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Clamp", labelWidth: 8, tooltip: "every value is clamped to [lower, upper]: the bound on one record's influence" }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-dp-lower",
      type: "number",
      width: 10,
      placeholder: "lower",
      value: dp.lower ?? "",
      onChange: (e) => set({ lower: float(e.currentTarget.value) }),
      onBlur: onRunQuery
    }
  )), /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "to", labelWidth: 4 }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-dp-upper",
      type: "number",
      width: 10,
      placeholder: "upper",
      value: dp.upper ?? "",
      onChange: (e) => set({ upper: float(e.currentTarget.value) }),
      onBlur: onRunQuery
    }
  ))), /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "Filter", labelWidth: 8, tooltip: "e.g. tool = 'db_query' AND result = 'denied'; see docs/privacy.md" }, /* @__PURE__ */ React2.createElement(import_ui2.Input, { id: "mcpwatch-dp-filter", width: 36, value: dp.filter ?? "", onChange: (e) => set({ filter: e.currentTarget.value }), onBlur: onRunQuery })), /* @__PURE__ */ React2.createElement(import_ui2.InlineField, { label: "\u03B5", labelWidth: 4, tooltip: "spent from your budget on every run; default 0.5" }, /* @__PURE__ */ React2.createElement(
    import_ui2.Input,
    {
      id: "mcpwatch-dp-epsilon",
      type: "number",
      width: 8,
      placeholder: "0.5",
      value: dp.epsilon ?? "",
      onChange: (e) => {
        const n = float(e.currentTarget.value);
        set({ epsilon: n !== void 0 && n > 0 ? n : void 0 });
      },
      onBlur: onRunQuery
    }
  )));
}

// src/datasource.ts
var import_runtime = require("@grafana/runtime");

// src/vote.ts
var schemaVersion = 1;
var voteDomain = "mcpwatch approval vote v1";
var maxReasonLen = 1024;
var idRE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
var nameRE = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$/;
var loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
var utf8 = new TextEncoder();
function rfc3339Nano(d) {
  const ms = d.getTime();
  if (!Number.isFinite(ms) || d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) {
    throw new Error(`vote time ${String(d)}: want a valid date in years 0000\u20139999`);
  }
  const frac = String(d.getUTCMilliseconds()).padStart(3, "0").replace(/0+$/, "");
  return d.toISOString().slice(0, 19) + (frac ? "." + frac : "") + "Z";
}
function appendUvarint(out, n) {
  while (n >= 128) {
    out.push(n & 127 | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
}
function signingBytes(v) {
  const out = [];
  for (const f of [voteDomain, v.request_id, v.request_hash, v.approver, v.decision, v.reason, v.time]) {
    const b = utf8.encode(f);
    appendUvarint(out, b.length);
    for (const x of b) out.push(x);
  }
  return Uint8Array.from(out);
}
function base64(b) {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}
function unbase64(s, what) {
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    throw new Error(`${what}: not base64`);
  }
}
function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error("this browser offers no WebCrypto here: open Grafana over HTTPS (or on localhost) to sign votes");
  }
  return s;
}
async function importApproverKey(pem) {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*)-----END \1-----/.exec(pem);
  if (!m) {
    throw new Error("approver key: no PEM block found; give the PRIVATE KEY file `mcpwatch response approver-key` wrote");
  }
  if (m[1] !== "PRIVATE KEY") {
    throw new Error(`approver key: a PEM "${m[1]}" block; want the unencrypted PKCS #8 "PRIVATE KEY" from \`mcpwatch response approver-key\``);
  }
  const der = unbase64(m[2].replace(/\s+/g, ""), "approver key");
  try {
    return await subtle().importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  } catch (e) {
    throw new Error(`approver key: not an Ed25519 PKCS #8 key, or this browser cannot sign Ed25519 (${e.message})`);
  }
}
async function checkView(view, id) {
  const record = unbase64(view?.record ?? "", `request ${id}: record`);
  const sum = new Uint8Array(await subtle().digest("SHA-256", record));
  const hex = Array.from(sum, (x) => x.toString(16).padStart(2, "0")).join("");
  if (hex !== view.request_hash) {
    throw new Error(`request ${id}: the hash given is not its record's: refusing to sign`);
  }
  let req;
  try {
    req = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(record));
  } catch {
    throw new Error(`request ${id}: the record is not JSON: refusing to sign`);
  }
  if (req?.id !== id) {
    throw new Error(`request ${id}: the record is another request's: refusing to sign`);
  }
  return req;
}
async function signVote(view, id, approver, key, decision, reason, time = /* @__PURE__ */ new Date()) {
  if (!idRE.test(id)) {
    throw new Error(`request id "${id}": use letters, digits, _ . - (at most 64)`);
  }
  if (!nameRE.test(approver)) {
    throw new Error(`approver "${approver}": use letters, digits, _ . @ : - (at most 64)`);
  }
  if (decision !== "approve" && decision !== "deny") {
    throw new Error(`decision "${decision}": want approve or deny`);
  }
  if (reason.trim() === "") {
    throw new Error("a reason is required");
  }
  if (loneSurrogate.test(reason)) {
    throw new Error("reason: not well-formed Unicode text");
  }
  if (utf8.encode(reason).length > maxReasonLen) {
    throw new Error(`reason: longer than ${maxReasonLen} bytes`);
  }
  const req = await checkView(view, id);
  if (Array.isArray(req.approvers) && !req.approvers.includes(approver)) {
    throw new Error(`approver ${approver} is not among this request's approvers [${req.approvers.join(", ")}]`);
  }
  const k = typeof key === "string" ? await importApproverKey(key) : key;
  const unsigned = { request_id: id, request_hash: view.request_hash, approver, decision, reason, time: rfc3339Nano(time) };
  const sig = new Uint8Array(await subtle().sign({ name: "Ed25519" }, k, signingBytes(unsigned)));
  return { schema: schemaVersion, ...unsigned, signature: base64(sig) };
}

// src/datasource.ts
var DataSource = class extends import_runtime.DataSourceWithBackend {
  constructor(instanceSettings) {
    super(instanceSettings);
  }
  getDefaultQuery() {
    return defaultQuery;
  }
  /** The controls in force (any signed-in user). */
  controls() {
    return this.getResource("controls");
  }
  /** Approval requests (state: pending by default, or approved, denied, expired, consumed, all). */
  approvals(state = "pending") {
    return this.getResource("approvals", { state });
  }
  /** One approval request with its record and the hash a vote signs (any signed-in user). */
  approval(id) {
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
  async vote(id, approver, pkcs8Pem, decision, reason) {
    const view = await this.approval(id);
    const v = await signVote(view, id, approver, pkcs8Pem, decision, reason);
    return this.postResource(`approvals/${encodeURIComponent(id)}/votes`, v);
  }
  /** Lifts one control (role at least the datasource's operatorRole); returns the actions written. */
  lift(key, reason, findingId) {
    return this.postResource("lift", { key, reason, findingId });
  }
};

// src/module.ts
var plugin = new import_data.DataSourcePlugin(DataSource).setConfigEditor(ConfigEditor).setQueryEditor(QueryEditor);
return module.exports;
});
