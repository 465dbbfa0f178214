"""Runs SQL on chdb, the embedded current ClickHouse engine, for storage's newer-server tests.

Reads a JSON object {"statements": [...], "queries": [...]} on stdin: executes every statement in
order in one chdb session (DDL, INSERT ... SELECT), then every query, and prints one JSON object:
{"version": "...", "results": [[row, ...], ...]} with each row a list of values as text (TSV
fields). A failing statement prints {"error": "...", "statement": "..."} and exits 1.
"""
import json
import sys
import tempfile

try:
    from chdb import session
except ImportError as e:  # the Go test turns this into a skip outside CI, a failure in CI
    print(json.dumps({"missing": str(e)}))
    sys.exit(3)


def main():
    req = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        version = str(s.query("SELECT version()", "TSV")).strip()
        for stmt in req.get("statements", []):
            try:
                s.query(stmt)
            except Exception as e:  # chdb raises its own error type with the server's message
                print(json.dumps({"error": str(e), "statement": stmt}))
                sys.exit(1)
        results = []
        for q in req.get("queries", []):
            try:
                out = str(s.query(q, "TSVRaw"))
            except Exception as e:
                print(json.dumps({"error": str(e), "statement": q}))
                sys.exit(1)
            results.append([line.split("\t") for line in out.splitlines()])
        s.close()
    print(json.dumps({"version": version, "results": results}))


if __name__ == "__main__":
    main()
