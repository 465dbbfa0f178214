// An independent verifier of mcpwatch's signed audit trail (docs/response.md, "Signed audit
// trail"), written from the documented format only, with Node's built-in crypto: it recomputes
// every entry's SHA-256 over the canonical encoding, checks the Ed25519 signature with the given
// public keys and the links between entries. response/ledger/peer_test.go runs it.
//
//   node audit_verify.mjs audit.jsonl key.pub [old.pub ...]
//
// Prints one JSON object: {"entries": n, "verified": n, "breaks": [{"seq": n, "reason": "..."}]}.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [file, ...pubFiles] = process.argv.slice(2);
const keys = new Map();
for (const f of pubFiles) {
  const key = createPublicKey(readFileSync(f));
  const raw = key.export({ format: 'der', type: 'spki' }).subarray(-32); // Ed25519 SPKI ends with the 32 raw bytes
  keys.set(createHash('sha256').update(raw).digest('hex').slice(0, 16), key);
}

const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(n))); return b; };
const lp = (buf) => Buffer.concat([u32(buf.length), buf]);

// JSON numbers above 2^53 would lose precision in JSON.parse: read the integer fields as text.
function ints(line) {
  const get = (name) => { const m = line.match(new RegExp(`"${name}":(-?\\d+)`)); return m ? BigInt(m[1]) : 0n; };
  return { seq: get('seq'), time_ms: get('time_ms'), offset: get('offset') };
}

function canonical(e, big) {
  return Buffer.concat([
    lp(Buffer.from('mcpwatch-audit-v1')),
    u64(big.seq),
    u64(big.time_ms),
    Buffer.from(e.prev_hash, 'hex'),
    lp(Buffer.from(e.key_id, 'utf8')),
    u32(e.partition >>> 0),
    u64(big.offset),
    u32(e.next.length),
    ...e.next.map((o) => u64(o)),
    lp(Buffer.from(e.action_id, 'utf8')),
    lp(Buffer.from(e.action, 'base64')),
  ]);
}

const out = { entries: 0, verified: 0, breaks: [] };
let prev = null; // {seq, hash}
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (line === '') continue;
  out.entries++;
  let e;
  try { e = JSON.parse(line); } catch (err) { out.breaks.push({ seq: 0, reason: 'malformed entry' }); continue; }
  const big = ints(line);
  let reason = null;
  if (prev === null && big.seq !== 1n) reason = 'seq gap';
  else if (prev !== null && big.seq === prev.seq) reason = 'duplicate';
  else if (prev !== null && big.seq < prev.seq) reason = 'out of order';
  else if (prev !== null && big.seq > prev.seq + 1n) reason = 'seq gap';
  if (!reason) {
    const hash = createHash('sha256').update(canonical(e, big)).digest();
    if (hash.toString('hex') !== e.hash) reason = 'hash mismatch';
    else if (!keys.has(e.key_id)) reason = 'unknown key';
    else if (!verify(null, hash, keys.get(e.key_id), Buffer.from(e.sig, 'hex'))) reason = 'bad signature';
    else if (e.prev_hash !== (prev === null ? '0'.repeat(64) : prev.hash)) reason = 'prev mismatch';
  }
  if (reason) out.breaks.push({ seq: Number(big.seq), reason });
  else out.verified++;
  prev = { seq: big.seq, hash: e.hash };
}
process.stdout.write(JSON.stringify(out) + '\n');
