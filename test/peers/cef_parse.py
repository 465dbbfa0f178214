"""Parses CEF lines with Vector's VRL parse_cef (through the vrl-python bindings), an
implementation independent of mcpwatch, for processors/cef_peer_test.go.

Input: one JSON string (a CEF line) per line on stdin. Output: one JSON object per input line,
{"ok": {...fields...}} or {"error": "..."}; field names are VRL's (cefVersion, deviceVendor,
deviceProduct, deviceVersion, deviceEventClassId, name, severity, then the extension keys).
"""
import json
import sys

from vrl_python import VRLRuntime

PROGRAM = ". = parse_cef!(.line)"


def main():
    runtime = VRLRuntime()
    out = sys.stdout
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        line = json.loads(raw)
        try:
            result = runtime.execute(PROGRAM, {"line": line})
            out.write(json.dumps({"ok": result.processed_event}, ensure_ascii=False) + "\n")
        except Exception as err:  # a parse failure is a result the test reports, not a crash
            out.write(json.dumps({"error": str(err)}) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
