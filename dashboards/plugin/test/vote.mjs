// Signs approval votes with the built module.js, as a browser would (WebCrypto Ed25519), for
// vote_frontend_test.go to verify with the Go verifier (approval.Keyring.Verify). Usage:
//
//   node test/vote.mjs dist/module.js DIR
//
// DIR holds key.pem (an approver key written by Go), view.json (a request as GET approvals/{id}
// returns it) and input.json ({id, approver, reason, times: [epoch ms]}). The script writes
// DIR/votes.json: the vote DataSource.vote posted through a stand-in backend, then one vote per
// time signed by signVote, each with the signing bytes in hex. It also checks, and exits non-zero
// with the reason if not, that a view whose hash is not its record's, a record of another
// request, a key that is not a PRIVATE KEY and a blank reason are all refused before anything is
// posted.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [modulePath = 'dist/module.js', dir] = process.argv.slice(2);
assert.ok(dir, 'usage: node test/vote.mjs dist/module.js DIR');
const pem = readFileSync(join(dir, 'key.pem'), 'utf8');
const view = JSON.parse(readFileSync(join(dir, 'view.json'), 'utf8'));
const input = JSON.parse(readFileSync(join(dir, 'input.json'), 'utf8'));

// A stand-in for Grafana's DataSourceWithBackend: answers GET approvals/{id} with the view and
// keeps what is posted.
const calls = [];
let served = view;
class DataSourceWithBackend {
  getResource(path, params) {
    calls.push(['GET', path, params]);
    return Promise.resolve(served);
  }
  postResource(path, body) {
    calls.push(['POST', path, body]);
    return Promise.resolve({ state: 'pending' });
  }
}
class DataSourcePlugin {
  constructor(ds) {
    this.DataSourceClass = ds;
  }
  setConfigEditor() {
    return this;
  }
  setQueryEditor() {
    return this;
  }
}
let mod;
globalThis.define = (deps, factory) => {
  const given = { react: {}, '@grafana/data': { DataSourcePlugin }, '@grafana/runtime': { DataSourceWithBackend }, '@grafana/ui': {} };
  mod = factory(...deps.map((d) => given[d]));
};
new Function(readFileSync(modulePath, 'utf8'))();
assert.ok(mod?.plugin && mod.signVote && mod.signingBytes, 'module.js exports no plugin or signing helpers');

const hex = (b) => Buffer.from(b).toString('hex');
const out = [];
const { id, approver, reason } = input;

// The datasource path: fetch, check, sign, post.
const ds = new mod.plugin.DataSourceClass({ uid: 'x', jsonData: {} });
await ds.vote(id, approver, pem, 'approve', reason);
assert.equal(calls.length, 2, `want one GET and one POST, got ${JSON.stringify(calls)}`);
assert.deepEqual(calls[0], ['GET', `approvals/${id}`, undefined]);
assert.equal(calls[1][0], 'POST');
assert.equal(calls[1][1], `approvals/${id}/votes`);
const posted = calls[1][2];
out.push({ vote: posted, signing_bytes: hex(mod.signingBytes(posted)) });

// Fixed times: the fraction as Go writes it (trimmed zeros, none for a whole second).
for (const ms of input.times) {
  const v = await mod.signVote(view, id, approver, pem, 'deny', reason, new Date(ms));
  out.push({ vote: v, signing_bytes: hex(mod.signingBytes(v)) });
}

// Refusals, none of which may post.
calls.length = 0;
const refuses = async (what, f, re) => {
  await assert.rejects(f, re, what);
};
const record = Buffer.from(view.record, 'base64');
served = { ...view, request_hash: view.request_hash.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
await refuses('a hash that is not the record\'s', () => ds.vote(id, approver, pem, 'approve', reason), /hash given is not its record's/);
const other = JSON.stringify({ ...JSON.parse(record), id: 'other-request' });
const otherHash = Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(other))).toString('hex');
served = { ...view, record: Buffer.from(other).toString('base64'), request_hash: otherHash };
await refuses('a record of another request', () => ds.vote(id, approver, pem, 'approve', reason), /another request's/);
served = view;
const pub = '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n';
await refuses('a public key', () => ds.vote(id, approver, pub, 'approve', reason), /PUBLIC KEY.*want the unencrypted PKCS #8/);
await refuses('a blank reason', () => ds.vote(id, approver, pem, 'approve', '  '), /reason is required/);
await refuses('a lone surrogate', () => ds.vote(id, approver, pem, 'approve', 'x\uD800'), /well-formed/);
await refuses('an approver the request does not name', () => ds.vote(id, 'zed', pem, 'approve', reason), /not among/);
assert.ok(!calls.some((c) => c[0] === 'POST'), `a refused vote was posted: ${JSON.stringify(calls)}`);

writeFileSync(join(dir, 'votes.json'), JSON.stringify(out));
console.log(`vote.mjs: ${out.length} votes signed, 6 refusals`);
