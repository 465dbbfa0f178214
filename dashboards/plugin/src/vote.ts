// Approval votes signed in the browser with the approver's own Ed25519 key (WebCrypto), so that
// neither Grafana nor the plugin's backend ever holds an approver's private key. The encoding is
// internal/approval's Vote and Vote.SigningBytes, byte for byte; test/vote.mjs signs with the built
// module.js and a Go test verifies with approval.Keyring.Verify.

/** An approver's decision (approval.Decision). */
export type Decision = 'approve' | 'deny';

/** A request as GET approvals/{id} returns it (approval.RequestView): status, record and hash. */
export interface RequestView {
  request: { id: string; approvers?: string[]; [k: string]: unknown };
  request_hash: string;
  state: string;
  reason?: string;
  approvals?: unknown[] | null;
  denials?: unknown[] | null;
  /** The request's record value, base64: its SHA-256 is request_hash. */
  record: string;
  [k: string]: unknown;
}

/** A signed vote as the approvals API takes it (approval.Vote's JSON). */
export interface Vote {
  schema: number;
  request_id: string;
  request_hash: string;
  approver: string;
  decision: Decision;
  reason: string;
  /** UTC, RFC 3339 with the fraction as Go's time.RFC3339Nano writes it. */
  time: string;
  /** Ed25519 signature over the signing bytes, base64. */
  signature: string;
}

const schemaVersion = 1; // approval.SchemaVersion
const voteDomain = 'mcpwatch approval vote v1'; // approval's voteDomain
const maxReasonLen = 1024; // approval.MaxReasonLen, in UTF-8 bytes
const idRE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/; // approval.ValidID
const nameRE = /^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$/; // approval.ValidName
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const utf8 = new TextEncoder();

/**
 * The instant d as Go's time.RFC3339Nano formats it in UTC: seconds, then the fraction with its
 * trailing zeros trimmed (no dot at all for a whole second), then Z.
 */
export function rfc3339Nano(d: Date): string {
  const ms = d.getTime();
  if (!Number.isFinite(ms) || d.getUTCFullYear() < 0 || d.getUTCFullYear() > 9999) {
    throw new Error(`vote time ${String(d)}: want a valid date in years 0000–9999`);
  }
  const frac = String(d.getUTCMilliseconds()).padStart(3, '0').replace(/0+$/, '');
  return d.toISOString().slice(0, 19) + (frac ? '.' + frac : '') + 'Z';
}

function appendUvarint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

/**
 * What a vote's signature covers (approval's Vote.SigningBytes): the domain string, request id,
 * request hash, approver, decision, reason and time, each as UTF-8 preceded by its byte length
 * as an unsigned varint.
 */
export function signingBytes(v: Omit<Vote, 'signature' | 'schema'>): Uint8Array {
  const out: number[] = [];
  for (const f of [voteDomain, v.request_id, v.request_hash, v.approver, v.decision, v.reason, v.time]) {
    const b = utf8.encode(f);
    appendUvarint(out, b.length);
    for (const x of b) out.push(x);
  }
  return Uint8Array.from(out);
}

function base64(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

function unbase64(s: string, what: string): Uint8Array {
  try {
    return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  } catch {
    throw new Error(`${what}: not base64`);
  }
}

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new Error('this browser offers no WebCrypto here: open Grafana over HTTPS (or on localhost) to sign votes');
  }
  return s;
}

/**
 * Imports an approver key from the PKCS #8 PEM ("PRIVATE KEY") that `mcpwatch response
 * approver-key` writes, for signing only and not extractable.
 */
export async function importApproverKey(pem: string): Promise<CryptoKey> {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\s]*)-----END \1-----/.exec(pem);
  if (!m) {
    throw new Error('approver key: no PEM block found; give the PRIVATE KEY file `mcpwatch response approver-key` wrote');
  }
  if (m[1] !== 'PRIVATE KEY') {
    throw new Error(`approver key: a PEM "${m[1]}" block; want the unencrypted PKCS #8 "PRIVATE KEY" from \`mcpwatch response approver-key\``);
  }
  const der = unbase64(m[2].replace(/\s+/g, ''), 'approver key');
  try {
    return await subtle().importKey('pkcs8', der, { name: 'Ed25519' }, false, ['sign']);
  } catch (e) {
    throw new Error(`approver key: not an Ed25519 PKCS #8 key, or this browser cannot sign Ed25519 (${(e as Error).message})`);
  }
}

/**
 * Checks that view is request id and that its hash is the SHA-256 of the record it carries (as
 * approval.Client.Get does), so the vote signs what the approver was shown; returns the request
 * decoded from the record.
 */
export async function checkView(view: RequestView, id: string): Promise<RequestView['request']> {
  const record = unbase64(view?.record ?? '', `request ${id}: record`);
  const sum = new Uint8Array(await subtle().digest('SHA-256', record));
  const hex = Array.from(sum, (x) => x.toString(16).padStart(2, '0')).join('');
  if (hex !== view.request_hash) {
    throw new Error(`request ${id}: the hash given is not its record's: refusing to sign`);
  }
  let req: RequestView['request'];
  try {
    req = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(record));
  } catch {
    throw new Error(`request ${id}: the record is not JSON: refusing to sign`);
  }
  if (req?.id !== id) {
    throw new Error(`request ${id}: the record is another request's: refusing to sign`);
  }
  return req;
}

/**
 * Signs approver's decision on the request shown in view with key (a PKCS #8 PEM or a key from
 * importApproverKey), at time (default now). It refuses a view whose hash is not its record's,
 * an approver the request does not name, and a reason that is blank, over 1024 bytes or not
 * well-formed Unicode.
 */
export async function signVote(
  view: RequestView,
  id: string,
  approver: string,
  key: string | CryptoKey,
  decision: Decision,
  reason: string,
  time: Date = new Date()
): Promise<Vote> {
  if (!idRE.test(id)) {
    throw new Error(`request id "${id}": use letters, digits, _ . - (at most 64)`);
  }
  if (!nameRE.test(approver)) {
    throw new Error(`approver "${approver}": use letters, digits, _ . @ : - (at most 64)`);
  }
  if (decision !== 'approve' && decision !== 'deny') {
    throw new Error(`decision "${decision}": want approve or deny`);
  }
  if (reason.trim() === '') {
    throw new Error('a reason is required');
  }
  if (loneSurrogate.test(reason)) {
    throw new Error('reason: not well-formed Unicode text');
  }
  if (utf8.encode(reason).length > maxReasonLen) {
    throw new Error(`reason: longer than ${maxReasonLen} bytes`);
  }
  const req = await checkView(view, id);
  if (Array.isArray(req.approvers) && !req.approvers.includes(approver)) {
    throw new Error(`approver ${approver} is not among this request's approvers [${req.approvers.join(', ')}]`);
  }
  const k = typeof key === 'string' ? await importApproverKey(key) : key;
  const unsigned = { request_id: id, request_hash: view.request_hash, approver, decision, reason, time: rfc3339Nano(time) };
  const sig = new Uint8Array(await subtle().sign({ name: 'Ed25519' }, k, signingBytes(unsigned)));
  return { schema: schemaVersion, ...unsigned, signature: base64(sig) };
}
