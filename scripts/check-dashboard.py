#!/usr/bin/env python3
"""Checks the Grafana dashboard against what running Cairn nodes export.

Loads the dashboard JSON (deploy/grafana/cairn.json by default), checks its shape (panel ids
unique, every query panel has a data source and targets with a refId and an expression), pulls
every metric name out of every PromQL query (panels and template variables), scrapes /metrics of
one or more nodes, and fails when a query names a metric no node exports, or filters or groups
a metric by a label its samples do not carry.

Metrics that other parts of the code are expected to add later may be listed, one per line, in a
pending file (deploy/grafana/pending-metrics.txt by default; `#` starts a comment): a missing
pending metric is a warning, not an error, and a pending metric that *is* exported is an error
(remove it from the list, so the check is strict again).

    scripts/check-dashboard.py --url http://127.0.0.1:8080 [--url ...] [--token T]
    scripts/check-dashboard.py --metrics-file scrape.txt     # a saved scrape

Exit status: 0 when every query is satisfied, 1 otherwise, 2 on bad usage or unreadable input.
Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DASHBOARD = ROOT / "deploy" / "grafana" / "cairn.json"
DEFAULT_PENDING = ROOT / "deploy" / "grafana" / "pending-metrics.txt"

# Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = {"instance", "job"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "start", "end",
}

IDENT = r"[a-zA-Z_:][a-zA-Z0-9_:]*"

# Series suffixes a metric family of each OpenMetrics type exports.
SUFFIXES = {
    "counter": ["_total", "_created"],
    "histogram": ["_bucket", "_sum", "_count", "_created"],
    "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
    "summary": ["", "_sum", "_count", "_created"],
    "info": ["_info"],
    "stateset": [""],
    "gauge": [""],
    "unknown": [""],
}


# ------------------------------------------------------------------------------ PromQL parsing

@dataclass
class Selector:
    """One metric named in a query, with the label names it filters or groups by."""
    metric: str
    labels: set[str] = field(default_factory=set)


def substitute_variables(expr: str) -> str:
    """Replaces Grafana variables ($__rate_interval, ${instance}, $instance) with plain values
    so the expression parses as PromQL."""
    return re.sub(r"\$\{[^}]*\}|\$\w+", "1m", expr)


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def _matching(expr: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at `i`."""
    depth = 0
    for j in range(i, len(expr)):
        if expr[j] == open_:
            depth += 1
        elif expr[j] == close:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {open_!r} in {expr!r}")


def selectors(expr: str) -> list[Selector]:
    """The metrics a PromQL expression reads, each with the label names used on it: in its
    matchers, and in the `by (...)`/`without (...)` clause of the aggregation directly around
    it (grouping labels of outer aggregations are checked against the inner ones' output,
    which this simple parser does not model, so only the innermost clause is attributed)."""
    expr = _strip_strings(substitute_variables(expr))
    if expr.count("(") != expr.count(")"):
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    out: list[Selector] = []
    # Matchers: `name{a="x", b=~"y"}` or a bare `{__name__="x"}`.
    spans = []
    for m in re.finditer(r"\{", expr):
        start = m.start()
        end = _matching(expr, start, "{", "}")
        name_m = re.search(rf"({IDENT})\s*$", expr[:start])
        labels = set(re.findall(rf"({IDENT})\s*(?:=~|!~|!=|=)", expr[start + 1:end]))
        name = name_m.group(1) if name_m else None
        if name is None:
            explicit = re.search(r'__name__\s*=\s*""', expr[start + 1:end])
            if explicit:
                raise ValueError(f"__name__ matchers are not supported: {expr!r}")
        spans.append((start, end, name, labels))
    # Remove matchers and range/subquery brackets, then grouping clauses.
    stripped = list(expr)
    for start, end, _, _ in spans:
        for k in range(start, end + 1):
            stripped[k] = " "
    text = "".join(stripped)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    groupings = []
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        groupings.append((m.start(), m.group(1), [x.strip() for x in m.group(2).split(",") if x.strip()]))
    text_no_groups = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
                            lambda m: " " * len(m.group(0)), text)
    matcher_labels = {name: labels for _, _, name, labels in spans if name}
    for m in re.finditer(rf"(?<![\w.:]){IDENT}", text_no_groups):
        word = m.group(0)
        after = text_no_groups[m.end():].lstrip()
        if after.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in KEYWORDS:
            continue
        sel = Selector(word, set(matcher_labels.get(word, set())))
        # The innermost `by`/`without` clause of an aggregation written before this metric.
        for pos, kind, labels in reversed(groupings):
            if pos < m.start() and kind in ("by", "without"):
                between = text_no_groups[pos:m.start()]
                if between.count("(") - between.count(")") >= 1:
                    sel.labels |= set(labels)
                    break
        out.append(sel)
    return out


def label_values_query(query: str) -> list[Selector] | None:
    """The metric and label of a Grafana `label_values(metric, label)` variable query; `None`
    for other queries."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(" + IDENT + r")\s*\)\s*", query)
    if not m:
        return None
    sels = selectors(m.group(1))
    for s in sels:
        s.labels.add(m.group(2))
    return sels


# --------------------------------------------------------------------------- dashboard shape

@dataclass
class Query:
    where: str
    expr: str


def dashboard_queries(dash: dict) -> tuple[list[Query], list[str]]:
    """(queries, problems) of a dashboard: every target expression and template query, and
    what is wrong with its shape."""
    problems: list[str] = []
    queries: list[Query] = []
    if not isinstance(dash.get("panels"), list) or not dash["panels"]:
        problems.append("the dashboard has no panels")
        return queries, problems
    for key in ("title", "uid", "schemaVersion"):
        if key not in dash:
            problems.append(f"the dashboard has no {key!r}")
    ids: set[int] = set()

    def walk(panels: list[dict]) -> None:
        for p in panels:
            title = p.get("title", "?")
            pid = p.get("id")
            if pid in ids:
                problems.append(f"panel id {pid} is used twice (second: {title!r})")
            ids.add(pid)
            if "gridPos" not in p:
                problems.append(f"panel {title!r} has no gridPos")
            if p.get("type") == "row":
                walk(p.get("panels", []))
                continue
            targets = p.get("targets")
            if not targets:
                problems.append(f"panel {title!r} has no queries")
                continue
            if not p.get("datasource"):
                problems.append(f"panel {title!r} has no data source")
            refs = set()
            for t in targets:
                ref = t.get("refId")
                if not ref or ref in refs:
                    problems.append(f"panel {title!r}: missing or repeated refId {ref!r}")
                refs.add(ref)
                expr = t.get("expr", "")
                if not expr.strip():
                    problems.append(f"panel {title!r} query {ref}: empty expression")
                    continue
                queries.append(Query(f"panel {title!r} query {ref}", expr))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if not q:
            problems.append(f"variable {var.get('name')!r} has no query")
            continue
        queries.append(Query(f"variable {var.get('name')!r}", q))
    return queries, problems


# ---------------------------------------------------------------------------- exported names

@dataclass
class Exported:
    """Series names a scrape exports, with the label names seen on each."""
    labels: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, labels: set[str] | None = None) -> None:
        self.labels.setdefault(name, set()).update(labels or set())

    def __contains__(self, name: str) -> bool:
        return name in self.labels


def parse_exposition(text: str, into: Exported | None = None) -> Exported:
    """Series names of a Prometheus/OpenMetrics text scrape. A family declared by `# TYPE`
    counts with every series name its type produces, even before it has samples."""
    out = into or Exported()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(rf"#\s*TYPE\s+({IDENT})\s+(\w+)", line)
            if m:
                name, kind = m.group(1), m.group(2).lower()
                for suffix in SUFFIXES.get(kind, [""]):
                    # Prometheus' text format names counters with their _total already.
                    base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
                    out.add(base + suffix)
            continue
        m = re.match(rf"({IDENT})(\{{(.*?)\}})?\s", line)
        if m:
            labels = set(re.findall(rf"({IDENT})=\"", m.group(3) or ""))
            out.add(m.group(1), labels)
    return out


def scrape(url: str, token: str | None, timeout: float) -> str:
    if not url.rstrip("/").endswith("/metrics"):
        url = url.rstrip("/") + "/metrics"
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def read_pending(path: Path) -> set[str]:
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


# ------------------------------------------------------------------------------------- check

def check(dash: dict, exported: Exported, pending: set[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of `dash` against `exported`."""
    queries, errors = dashboard_queries(dash)
    warnings: list[str] = []
    seen_pending: set[str] = set()
    for q in queries:
        try:
            sels = label_values_query(q.expr)
            if sels is None:
                sels = selectors(q.expr)
        except ValueError as e:
            errors.append(f"{q.where}: {e}")
            continue
        if not sels:
            errors.append(f"{q.where}: names no metric: {q.expr}")
        for s in sels:
            if s.metric in pending:
                seen_pending.add(s.metric)
                if s.metric not in exported:
                    warnings.append(f"{q.where}: {s.metric} is not exported yet (pending)")
                    continue
            if s.metric not in exported:
                errors.append(f"{q.where}: no node exports {s.metric}")
                continue
            have = exported.labels.get(s.metric, set())
            if not have:
                continue  # a family without samples yet: its labels are unknown
            unknown = s.labels - have - TARGET_LABELS - {"le"}
            if unknown:
                errors.append(
                    f"{q.where}: {s.metric} has no label {', '.join(sorted(unknown))} "
                    f"(it has: {', '.join(sorted(have)) or 'none'})"
                )
    for name in sorted(pending):
        if name in exported:
            errors.append(f"{name} is exported now: remove it from the pending list")
        elif name not in seen_pending:
            warnings.append(f"pending metric {name} is not used by the dashboard")
    return errors, warnings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    ap.add_argument("--url", action="append", default=[],
                    help="a node's management URL or its /metrics URL (repeatable: the "
                         "dashboard must be satisfied by the union of the nodes)")
    ap.add_argument("--metrics-file", type=Path, action="append", default=[],
                    help="a saved scrape (repeatable)")
    ap.add_argument("--token", help="operator token, for nodes with METRICS_REQUIRE_TOKEN=true")
    ap.add_argument("--pending", type=Path, default=DEFAULT_PENDING,
                    help="metrics expected from code not merged yet (missing = warning)")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    if not args.url and not args.metrics_file:
        ap.error("give at least one --url or --metrics-file")
    try:
        dash = json.loads(args.dashboard.read_text())
    except (OSError, ValueError) as e:
        print(f"cannot load {args.dashboard}: {e}", file=sys.stderr)
        return 2
    exported = Exported()
    try:
        for url in args.url:
            parse_exposition(scrape(url, args.token, args.timeout), exported)
        for f in args.metrics_file:
            parse_exposition(f.read_text(), exported)
    except (OSError, ValueError) as e:
        print(f"cannot read metrics: {e}", file=sys.stderr)
        return 2
    errors, warnings = check(dash, exported, read_pending(args.pending))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    queries, _ = dashboard_queries(dash)
    if errors:
        print(f"{args.dashboard}: {len(errors)} problem(s) in {len(queries)} queries", file=sys.stderr)
        return 1
    print(f"{args.dashboard}: {len(queries)} queries, every metric they name is exported "
          f"({len(warnings)} warning(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
