"""Checks Slack incoming-webhook messages with the official Slack SDK for Python (slack_sdk's
Block Kit models), for response/notify/peers_test.go: an independent reading of the block types
and limits the notifier must respect.

Usage: slack_blocks_check.py < messages.jsonl
Input: one message ({"text": ..., "blocks": [...]}) per line. Output: one JSON line per message:
{"ok": true} or {"errors": ["blocks[i]: message", ...]}.
"""
import json
import sys

from slack_sdk.models.blocks import Block


def main():
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        msg = json.loads(raw)
        errs = []
        if not isinstance(msg.get("text"), str) or not msg["text"]:
            errs.append("text: missing fallback text")
        blocks = msg.get("blocks") or []
        if len(blocks) > 50:
            errs.append("blocks: %d, at most 50" % len(blocks))
        for i, b in enumerate(blocks):
            parsed = Block.parse(b)
            if parsed is None:
                errs.append("blocks[%d]: slack_sdk does not know block type %r" % (i, b.get("type")))
                continue
            try:
                parsed.validate_json()
            except Exception as e:  # SlackObjectFormationError and friends
                errs.append("blocks[%d]: %s" % (i, e))
                continue
            # A round trip through the model must keep the block: a field the model drops is
            # one Slack would not understand either.
            back = parsed.to_dict()
            for key in b:
                if key not in back:
                    errs.append("blocks[%d]: key %r not in slack_sdk's model" % (i, key))
        sys.stdout.write(json.dumps({"errors": errs} if errs else {"ok": True}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
