"""pySigma as an independent oracle for mcpwatch's Sigma engine (detectors/sigma/peer_test.go).

Reads one JSON request on stdin and prints one JSON answer on stdout:

  {"rules": ["a.yml", ...],       rule files (each may hold several YAML documents)
   "native": "/tmp/events.native" optional: the events table exported from the real ClickHouse
                                   (SELECT * ... FORMAT Native); when given, every converted
                                   query runs on chDB over those rows
   "validate": true}               run pySigma's validators (core + SigmaHQ) over the rules

answers

  {"pysigma": "2.0.1", "backend": "1.1.1", "chdb": "26.9...",
   "rules": [{"file", "id", "title", "sql", "error", "ids": [...], "run_error"}],
   "issues": [{"file", "id", "validator", "severity", "description", "detail"}]}

The conversion is pySigma's: its rule parser, modifiers (wildcards, escapes, base64offset,
windash, cidr, re flags, ...), condition tree and the ClickHouse backend
(pysigma-backend-clickhouse). What is mcpwatch's own is only the processing pipeline below, which
maps Sigma field names onto column expressions of the storage schema's `events` table, and a
backend subclass whose every override is listed in OVERRIDES with its reason. Keep the two in
step with docs/sigma.md ("Logsource and field mapping", "Cross-check with pySigma").

If pySigma, the backend or chdb is missing, prints {"missing": "..."} and exits 3 (the Go test
skips outside CI and fails under CI=true).
"""

import json
import os
import sys
import tempfile
from importlib import metadata

try:
    from sigma.backends.clickhouse import ClickhouseBackend
    from sigma.collection import SigmaCollection
    from sigma.conditions import ConditionFieldEqualsValueExpression
    from sigma.exceptions import SigmaError
    from sigma.plugins import InstalledSigmaPlugins
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import (
        FieldFunctionTransformation,
        RuleFailureTransformation,
        SetStateTransformation,
    )
    from sigma.correlations import SigmaCorrelationRule
    from sigma.rule import SigmaRule
    from sigma.types import (
        SigmaBool,
        SigmaCIDRExpression,
        SigmaCompareExpression,
        SigmaExists,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaString,
    )
    from sigma.validation import SigmaValidator
except ImportError as e:
    print(json.dumps({"missing": "pySigma: " + str(e)}))
    sys.exit(3)

# Kinds of a mapped field, as the events table stores it. The storage writer keeps an absent value
# as the column's default ('' for String, 0 for numbers, [] for Array), exactly the values the
# engine treats as absent (docs/sigma.md, "Absent values"); no column is Nullable.
S, N, L = "string", "number", "list"

# Sigma field (logsource mcpwatch/mcp_call, docs/sigma.md) -> (ClickHouse expression over the
# events table, kind). Column names from storage/migrations and storage/rows.go.
FIELDS = {
    "id": ("id", S),
    "source": ("source", S),
    "observer": ("observer", S),
    "tenant": ("tenant", S),
    "severity": ("severity", N),
    "principal.id": ("principal", S),
    "principal.sub": ("subject", S),
    "principal.client_id": ("client_id", S),
    "principal.iss": ("issuer", S),
    "principal.roles": ("roles", L),
    "principal.jti": ("token_id", S),
    "principal.amr": ("auth_methods", L),
    "principal.scope": ("scopes", L),
    "principal.acr": ("acr", S),
    "principal.department": ("department", S),
    "principal.peer_group": ("peer_group", S),
    "correlation.trace_id": ("trace_id", S),
    "correlation.span_id": ("span_id", S),
    "correlation.session_id": ("session_id", S),
    "correlation.request_id": ("request_id", S),
    "mcp.direction": ("direction", S),
    "mcp.method": ("method", S),
    "mcp.tool": ("tool", S),
    "mcp.resource_uri": ("resource_uri", S),
    "mcp.prompt": ("prompt", S),
    "mcp.protocol_version": ("protocol_version", S),
    "mcp.transport": ("transport", S),
    "mcp.arguments_masked": ("arguments_masked", S),
    "mcp.client_name": ("client_name", S),
    "mcp.client_version": ("client_version", S),
    "mcp.latency_ms": ("latency_ms", N),
    "mcp.tools_hash": ("tools_hash", S),
    "target.server": ("server", S),
    "target.route": ("route", S),
    "target.sandbox": ("sandbox", S),
    "network.src_ip": ("src_ip", S),
    "network.src_port": ("src_port", N),
    "network.dst_ip": ("dst_ip", S),
    "network.dst_port": ("dst_port", N),
    "network.user_agent": ("user_agent", S),
    "network.proxy": ("proxy", S),
    # result is an Enum8; its names are the event's values.
    "outcome.result": ("toString(result)", S),
    "outcome.policy_rule": ("policy_rule", S),
    "outcome.reason": ("reason", S),
    "outcome.error_code": ("error_code", N),
    "outcome.http_status": ("http_status", N),
    "size.request": ("request_bytes", N),
    "size.response": ("response_bytes", N),
    "data_classes": ("data_classes", L),
    "normalized.signature": ("signature", S),
    "normalized.name": ("name", S),
    # The column is Float32 (0.7 is stored as 0.699999988...); the event's value is a float64 with
    # a few decimals. Rounding to 6 decimals gives back the value the engine sees.
    "normalized.sensitivity": ("round(toFloat64(sensitivity), 6)", N),
    # The process of a kernel event (categories process_creation, file_access, network_connection).
    "process.pid": ("proc_pid", N),
    "process.ppid": ("proc_ppid", N),
    "process.uid": ("proc_uid", N),
    "process.comm": ("proc_comm", S),
    "process.exe": ("proc_exe", S),
    "process.args": ("proc_args", L),
    "process.command_line": ("arrayStringConcat(proc_args, ' ')", S),
    "process.syscall": ("proc_syscall", S),
    "process.path": ("proc_path", S),
    "process.cgroup_id": ("proc_cgroup_id", N),
}

ALIASES = {
    "mcp.server": "target.server",
    "arguments": "mcp.arguments_masked",
    "client.name": "mcp.client_name",
    "client.version": "mcp.client_version",
    "decision": "outcome.result",
    "principal.role": "principal.roles",
    "src_ip": "network.src_ip",
    "user_agent": "network.user_agent",
    "sensitivity": "normalized.sensitivity",
    # Sigma's taxonomy names of the kernel categories' fields.
    "Image": "process.exe",
    "CommandLine": "process.command_line",
    "ProcessId": "process.pid",
    "ParentProcessId": "process.ppid",
    "TargetFilename": "process.path",
    "DestinationIp": "network.dst_ip",
    "DestinationPort": "network.dst_port",
    "SourceIp": "network.src_ip",
}

# The text fields keyword lists search (docs/sigma.md, "Keywords").
KEYWORD_FIELDS = [
    "principal.id", "principal.sub", "principal.client_id", "mcp.method", "mcp.tool",
    "mcp.resource_uri", "mcp.prompt", "mcp.arguments_masked", "mcp.client_name",
    "target.server", "network.user_agent", "outcome.reason",
    "process.exe", "process.command_line", "process.path",
]

# The table a rule of each logsource category reads: a view over events holding what the
# category covers (docs/sigma.md; the test creates them on both servers from the answer's
# "views"). Events of other categories never match.
VIEWS = {
    "mcp_call": "SELECT * FROM events WHERE source = 'mcp'",
    "process_creation": "SELECT * FROM events WHERE source = 'kernel' AND proc_syscall IN ('execve', 'execveat')",
    "file_access": "SELECT * FROM events WHERE source = 'kernel' AND proc_syscall IN ('open', 'openat', 'openat2')",
    "network_connection": "SELECT * FROM events WHERE source = 'kernel' AND proc_syscall IN ('connect', 'sendmsg')",
}


def sql_quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


KINDS = {}  # expression -> kind, for every expression the pipeline produced


def map_field(name):
    """Maps a Sigma field name to its column expression (pySigma FieldFunctionTransformation)."""
    name = ALIASES.get(name, name)
    if name in FIELDS:
        expr, kind = FIELDS[name]
    elif name.startswith("attributes.") and len(name) > len("attributes."):
        expr, kind = "attr_values[indexOf(attr_keys, %s)]" % sql_quote(name[len("attributes."):]), S
    elif name.startswith("pii.") and len(name) > len("pii."):
        expr, kind = "pii_counts[indexOf(pii_kinds, %s)]" % sql_quote(name[len("pii."):]), N
    else:
        raise SigmaError("field %r is not mapped for logsource mcpwatch" % name)
    KINDS[expr] = kind
    return expr


def mcpwatch_pipeline():
    mapped = [LogsourceCondition(category=c) for c in VIEWS]
    tables = [
        ProcessingItem(
            identifier="mcpwatch_table_" + c,
            transformation=SetStateTransformation("table", c),
            rule_conditions=[LogsourceCondition(category=c)],
        ) for c in VIEWS
    ]
    return ProcessingPipeline(
        name="mcpwatch events table",
        priority=20,
        items=[
            ProcessingItem(
                identifier="mcpwatch_logsource",
                transformation=RuleFailureTransformation(
                    "only logsource categories %s are mapped (docs/sigma.md)" % ", ".join(VIEWS)),
                rule_conditions=mapped,
                rule_condition_linking=any,
                rule_condition_negation=True,
            ),
        ] + tables + [
            ProcessingItem(
                identifier="mcpwatch_fields",
                transformation=FieldFunctionTransformation(transform_func=map_field, mapping={}),
            ),
        ],
    )


# Where this subclass departs from pysigma-backend-clickhouse 1.1.1, and why. Each is either a
# storage fact (the column's type or how absence is stored) or the backend departing from the
# Sigma specification; the matching semantics stay pySigma's.
OVERRIDES = {
    "unquoted expressions":
        "the pipeline maps fields to column expressions, which must not be quoted as identifiers",
    "list fields":
        "Array(String) columns match when any element does: arrayExists(x -> <item on x>, col)",
    "exists and null":
        "columns are not Nullable; absence is stored as '' / 0 / [] (isNull would never hold)",
    "case-insensitive equality":
        "the backend compares plain values with = and IN, which are case-sensitive; Sigma values "
        "are case-insensitive unless |cased, so plain values use ILIKE like its wildcard values",
    "keywords":
        "the backend's hasToken(full_log, v) is case-sensitive and whole-token; mcpwatch has no "
        "full-log column and searches the keyword text fields for the value anywhere, ignoring case",
    "cidr on text that is no IP":
        "isIPAddressInRange throws on '' or a non-address; such a value is outside every network",
    "cased values anchored":
        "the backend turns |cased values into match(field, regex) without anchors, so a cased "
        "plain value matched anywhere in the field (cased equality behaved as cased contains)",
    "numbers against text":
        "lt/gt/... on a String column parse it as a number (a non-number compares false); a plain "
        "number on a String column is compared as text; a string pattern on a number column is "
        "matched against the number's decimal text",
}


class McpwatchClickhouseBackend(ClickhouseBackend):
    convert_or_as_in = False  # IN is case-sensitive (see OVERRIDES)
    # |cased values become regular expressions; the backend's match() searches, so anchor them.
    case_sensitive_match_expression = "match({field}, '(?s)^(?:{regex})$')"

    def escape_and_quote_field(self, field_name):
        if field_name in KINDS or field_name == "x":
            return field_name
        return super().escape_and_quote_field(field_name)

    def _plain_ilike(self, cond, state):
        converted = self.convert_value_str(cond.value, state, no_quote=True).replace("\\", "\\\\")
        return self.wildcard_match_expression.format(
            field=self.escape_and_quote_field(cond.field), value=converted)

    def convert_condition_field_eq_val_str(self, cond, state):
        if not cond.value.contains_special():
            return self._plain_ilike(cond, state)
        return super().convert_condition_field_eq_val_str(cond, state)

    def convert_condition_field_eq_val(self, cond, state):
        field, value = cond.field, cond.value
        kind = KINDS.get(field, S)
        if isinstance(value, SigmaExists):
            present = {S: "%s != ''", N: "%s != 0", L: "notEmpty(%s)"}[kind] % field
            absent = {S: "%s = ''", N: "%s = 0", L: "empty(%s)"}[kind] % field
            return present if value.exists else absent
        if isinstance(value, SigmaNull):
            return {S: "%s = ''", N: "%s = 0", L: "empty(%s)"}[kind] % field
        if kind == L:
            inner = ConditionFieldEqualsValueExpression("x", value)
            inner.parent = cond.parent
            KINDS["x"] = S
            return "arrayExists(x -> %s, %s)" % (self.convert_condition_field_eq_val(inner, state), field)
        if isinstance(value, SigmaCIDRExpression):
            valid = "(isIPv4String({f}) OR isIPv6String({f}))".format(f=field)
            return "({valid} AND isIPAddressInRange(if({valid}, {f}, '::'), {net}))".format(
                valid=valid, f=field, net=sql_quote(str(value.network)))
        if isinstance(value, SigmaCompareExpression) and kind == S:
            op = self.compare_operators[value.op]
            return "ifNull(toFloat64OrNull(%s) %s %s, 0)" % (field, op, value.number)
        if isinstance(value, (SigmaNumber, SigmaBool)) and kind == S:
            text = str(value.number) if isinstance(value, SigmaNumber) else str(value.boolean).lower()
            return self._plain_ilike(ConditionFieldEqualsValueExpression(field, SigmaString(text)), state)
        if isinstance(value, (SigmaString, SigmaRegularExpression)) and kind == N:
            return super().convert_condition_field_eq_val(
                ConditionFieldEqualsValueExpression(self._num_text(field), value), state)
        return super().convert_condition_field_eq_val(cond, state)

    @staticmethod
    def _num_text(field):
        expr = "toString(%s)" % field
        KINDS[expr] = S
        return expr

    def _keyword(self, inner_sql_of_t):
        cols = ", ".join(FIELDS[f][0] for f in KEYWORD_FIELDS)
        return "arrayExists(t -> %s, [%s])" % (inner_sql_of_t, cols)

    def convert_condition_val_str(self, cond, state):
        v = self.convert_value_str(cond.value, state, no_quote=True).replace("\\", "\\\\")
        return self._keyword("t ILIKE '%%%s%%'" % v)

    def convert_condition_val_num(self, cond, state):
        return self._keyword("t ILIKE '%%%s%%'" % cond.value)

    def convert_condition_val_re(self, cond, state):
        KINDS["t"] = S
        return self._keyword(self.convert_condition_field_eq_val_re(
            ConditionFieldEqualsValueExpression("t", cond.value), state))


# Correlation rules are read, resolved and validated by pySigma, but their SQL is not compared:
# the backend's correlation queries group the whole table (the timespan is not a window), where
# the engine counts in sliding event-time windows. The engine's correlations are tested by event
# sequences in Go (detectors/sigma correlation tests, rules/sigma/tests).
CORRELATION_NOT_COMPARED = ("a correlation rule: pysigma-backend-clickhouse groups the whole table, ignoring the "
                            "timespan, so its SQL is not comparable with the engine's sliding windows")


def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return ""


def load(files):
    """Parses each file into (file, rule, error) triples, error "" when pySigma reads the rule, and
    rule None for a file it cannot read. Files are parsed alone, then references (correlation
    rules naming rules of other files) are resolved across all of them, as the engine does."""
    out, colls = [], []
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            coll = SigmaCollection.from_yaml(text, collect_errors=True, resolve_references=False)
        except Exception as e:  # a file pySigma cannot read at all
            out.append((path, None, "%s: %s" % (type(e).__name__, e)))
            continue
        colls.append(coll)
        for rule in coll.rules:
            out.append((path, rule, "; ".join(str(e) for e in getattr(rule, "errors", []) or [])))
    try:
        SigmaCollection.merge(colls)  # resolves the references in place
    except Exception as e:
        out.append(("", None, "resolving references: %s: %s" % (type(e).__name__, e)))
    return out


def convert(rule):
    if rule.logsource.product not in (None, "mcpwatch"):
        raise SigmaError("only product mcpwatch (or none) is mapped (docs/sigma.md)")
    # A rule a correlation refers to (without generate) has its output disabled, and the backend
    # then makes no whole query of it (only the correlation's subquery); the engine's Match still
    # reports it, so it is compared as a rule of its own.
    output, backrefs = rule._output, rule._backreferences
    rule._output, rule._backreferences = True, []
    backend = McpwatchClickhouseBackend(processing_pipeline=mcpwatch_pipeline(), full_log_column=None)
    try:
        queries = backend.convert_rule(rule)
    finally:
        rule._output, rule._backreferences = output, backrefs
    if len(queries) != 1:
        raise SigmaError("%d queries for one rule" % len(queries))
    return queries[0]


def run_chdb(native, items):
    from chdb import session  # imported here: conversion and validation do not need it

    with tempfile.TemporaryDirectory() as path:
        s = session.Session(path)
        chv = str(s.query("SELECT version()", "TSV")).strip()
        s.query("CREATE DATABASE IF NOT EXISTS peer")
        s.query("USE peer")
        s.query("CREATE TABLE events ENGINE = MergeTree ORDER BY tuple() AS SELECT * FROM file(%s, 'Native')"
                % sql_quote(native))
        for name, sql in VIEWS.items():
            s.query("CREATE VIEW %s AS %s" % (name, sql))
        n = int(str(s.query("SELECT count() FROM events", "TSV")).strip())
        for it in items:
            if not it.get("sql"):
                continue
            try:
                out = str(s.query("SELECT DISTINCT id FROM (%s) ORDER BY id" % it["sql"], "TSVRaw"))
                it["ids"] = [line for line in out.splitlines()]
            except Exception as e:
                it["run_error"] = str(e)
        s.close()
    return chv, n


def sigmahq_data(loaded, tmp):
    """Points the SigmaHQ validators at data files written here instead of the SigmaHQ repository
    they fetch at run time (no network here, and SigmaHQ's taxonomy does not know mcpwatch): the
    taxonomy holds logsource mcpwatch/mcp_call with the mapped fields (FIELDS, ALIASES, and the
    attributes.<key> and pii.<kind> names the rules use: those families are open by design), the
    file name convention is SigmaHQ's <logsource>_ prefix (mcp_call_), and the Windows event id
    and provider tables are empty (no Windows logsource is mapped)."""
    from sigma.validators.sigmahq.data import (data_filename, data_taxonomy,
                                              data_windows_eventid, data_windows_provider)

    fields = set(FIELDS) | set(ALIASES)
    for _, rule, _ in loaded:
        if rule is None or not isinstance(rule, SigmaRule):
            continue
        for det in rule.detection.detections.values():
            stack = [det]
            while stack:
                d = stack.pop()
                for item in getattr(d, "detection_items", []):
                    if hasattr(item, "detection_items"):
                        stack.append(item)
                    elif item.field and item.field.startswith(("attributes.", "pii.")):
                        fields.add(item.field)
    prefixes = {"mcp_call": "mcp_call_", "process_creation": "proc_creation_", "file_access": "file_access_",
                "network_connection": "net_connection_"}  # SigmaHQ's names for the last three
    files = {
        "taxonomy": {"version": "mcpwatch", "taxonomy": {c: {"logsource": {"product": "mcpwatch", "category": c}, "field": {
            "native": sorted(fields), "custom": [], "redundant": []}} for c in VIEWS}},
        "filename": {"version": "mcpwatch", "pattern": {c: {"logsource": {"product": "mcpwatch", "category": c},
                                                           "prefix": prefixes[c]} for c in VIEWS}},
        "eventid": {"version": "mcpwatch", "category_no_eventid": []},
        "provider": {"version": "mcpwatch", "category_provider_name": {}},
    }
    for name, module in (("taxonomy", data_taxonomy), ("filename", data_filename),
                         ("eventid", data_windows_eventid), ("provider", data_windows_provider)):
        path = os.path.join(tmp, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(files[name], f)
        module.set_cache_dir(os.path.join(tmp, "cache"))
        module.set_url(path)


def validate(loaded):
    with tempfile.TemporaryDirectory() as tmp:
        sigmahq_data(loaded, tmp)
        return validate_with(loaded)


# Validators that cannot run here: they download MITRE ATT&CK or D3FEND data at run time, and
# this machine reaches package registries only. Reported in the answer as not run.
NOT_RUN = {
    "attacktag": "downloads MITRE ATT&CK data (enterprise-attack.json) at run time",
    "d3_fendtag": "downloads MITRE D3FEND data at run time",
    "sigmahq_tags_techniques_without_tactics": "downloads MITRE ATT&CK data at run time",
}


def validate_with(loaded):
    plugins = InstalledSigmaPlugins.autodiscover()
    validator = SigmaValidator(v for k, v in plugins.validators.items() if k not in NOT_RUN)
    issues = []
    for path, rule, _ in loaded:
        if rule is None:
            continue
        for issue in validator.validate_rule(rule):
            detail = {k: str(v) for k, v in vars(issue).items() if k != "rules"}
            issues.append({
                "file": path,
                "id": str(rule.id),
                "validator": type(issue).__name__,
                "severity": issue.severity.name,
                "description": issue.description,
                "detail": detail,
            })
    return issues


def main():
    req = json.load(sys.stdin)
    issues = None
    if req.get("validate"):  # before conversion, whose pipeline rewrites the rules' field names
        issues = validate(load(req["rules"]))
    loaded = load(req["rules"])
    items = []
    for path, rule, err in loaded:
        it = {"file": path, "id": str(rule.id) if rule is not None else "",
              "title": rule.title if rule is not None else "", "error": err}
        if rule is not None and not err:
            if isinstance(rule, SigmaCorrelationRule):
                it["skip"] = CORRELATION_NOT_COMPARED
            elif not isinstance(rule, SigmaRule):
                it["error"] = "not a detection rule (%s)" % type(rule).__name__
            else:
                try:
                    it["sql"] = convert(rule)
                except Exception as e:  # a rule pySigma or the backend cannot convert
                    it["error"] = "%s: %s" % (type(e).__name__, e)
        items.append(it)
    answer = {"pysigma": version("pySigma"), "backend": version("pysigma-backend-clickhouse"),
              "validators": version("pySigma-validators-sigmahq"), "overrides": OVERRIDES, "rules": items,
              "views": VIEWS}
    if req.get("native"):
        try:
            import chdb  # noqa: F401
        except ImportError as e:
            print(json.dumps({"missing": "chdb: " + str(e)}))
            sys.exit(3)
        answer["chdb"], answer["events"] = run_chdb(req["native"], items)
    if issues is not None:
        answer["issues"] = issues
        answer["validators_not_run"] = NOT_RUN
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
