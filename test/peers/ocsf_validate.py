"""Validates OCSF objects against the official OCSF schema export of one version, compiled to
JSON Schema 2020-12 by ocsf-json-schema and checked with jsonschema, for
processors/ocsf_schema_test.go.

Usage: ocsf_validate.py VERSION < objects.jsonl
Input: one OCSF object per line. Output: one JSON line per object: {"ok": true} or
{"errors": ["path: message", ...]}. The profiles an object declares in metadata.profiles are
applied; an attribute of any other profile is reported as not allowed.
"""
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main():
    version = sys.argv[1]
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
    validators = {}
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        obj = json.loads(raw)
        uid = obj.get("class_uid")
        profiles = sorted(obj.get("metadata", {}).get("profiles", []))
        key = (uid, tuple(profiles))
        if key not in validators:
            name = schema.lookup_class_name_from_uid(class_uid=uid)
            validators[key] = Draft202012Validator(
                schema.get_class_schema(class_name=name, profiles=profiles)
            )
        errs = sorted(
            "/".join(str(p) for p in e.absolute_path) + ": " + e.message
            for e in validators[key].iter_errors(obj)
        )
        sys.stdout.write(json.dumps({"errors": errs} if errs else {"ok": True}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
