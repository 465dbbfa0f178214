// Checks Microsoft Teams messages carrying an Adaptive Card with Microsoft's own Adaptive Cards
// library (npm "adaptivecards"), for response/notify/peers_test.go: the card is parsed as a host
// would and every parse warning (unknown element, invalid property value, unsupported version)
// and every validation failure is reported.
//
// Usage: node adaptive_card_check.cjs < messages.jsonl
// Input: one Teams message per line. Output: one JSON line per message: {"ok": true} or
// {"errors": [...]}.
const readline = require("node:readline");
const path = require("node:path");
const AC = require(path.join(__dirname, "node_modules", "adaptivecards", "dist", "adaptivecards.js"));

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  const errors = [];
  const att = (msg.attachments || [])[0] || {};
  if (att.contentType !== "application/vnd.microsoft.card.adaptive") errors.push("contentType " + att.contentType);
  const card = new AC.AdaptiveCard();
  const ctx = new AC.SerializationContext();
  card.parse(att.content, ctx);
  for (let i = 0; i < ctx.eventCount; i++) {
    const e = ctx.getEventAt(i);
    errors.push("parse: " + e.message);
  }
  const v = card.validateProperties();
  for (const e of v.validationEvents) errors.push("validate: " + e.message);
  if (!card.version || card.version.toString() !== att.content.version) errors.push("version " + (card.version && card.version.toString()));
  process.stdout.write(JSON.stringify(errors.length ? { errors } : { ok: true }) + "\n");
});
