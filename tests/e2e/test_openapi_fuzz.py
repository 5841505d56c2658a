"""The management API's OpenAPI document (`GET /openapi.json`, public) against a running 3-node
cluster: the document matches the routes the server has, and schemathesis (property-based,
from PyPI; scripts/test-all.sh installs it) sends generated requests to every documented
operation, with an admin token and without one, and no answer may be a 5xx. A shorter run
then checks that every answer (status, content type, body) is one the document declares.

Operations that would take the cluster down (or stream forever) when called with valid
credentials (`DESTRUCTIVE`) are fuzzed only without credentials. Each schemathesis run has a
time budget (FUZZ_SECONDS, default 40 s; the conformance run half of it); the two fuzz runs
go at once, against different nodes.

Ports: nodes on 127.0.0.11-13 on PORT_BASE+150..+152 (21150-21152 by default).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

import cluster_util
from cluster_util import REPO_ROOT, Cluster, cairn_bin
from e2e_util import admin_headers, require_tool

FUZZ_SECONDS = int(os.environ.get("FUZZ_SECONDS", "40"))
# Operations never fuzzed with valid credentials: they stop nodes (`/shutdown`, `/cluster/exec`
# can shut every node down), turn on trace logging that slows the run (`/log-level`), or stream
# until the client hangs up (`/logs/stream`). Without credentials they are fuzzed too.
DESTRUCTIVE = r"^/(shutdown|cluster/exec|log-level|logs/stream)$"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    mp = pytest.MonkeyPatch()
    base = cluster_util.PORT_BASE + 150
    mp.setattr(cluster_util, "API_PORT", base)
    mp.setattr(cluster_util, "RPC_PORT", base + 1)
    mp.setattr(cluster_util, "ADMIN_PORT", base + 2)
    c = Cluster(tmp_path_factory.mktemp("openapi-cluster"))
    try:
        c.start(3)
        yield c
    finally:
        problems = c.teardown()
        for n in c.nodes.values():
            shutil.rmtree(n.storage_path, ignore_errors=True)
        mp.undo()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def doc(cluster) -> dict:
    r = requests.get(f"{cluster.nodes['n1'].admin_url}/openapi.json", timeout=5)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def admin_token(node, name: str = "fuzz-admin") -> str:
    body = json.dumps({"name": name, "scope": "admin"}).encode()
    r = requests.post(f"{node.admin_url}/tokens", data=body, timeout=10,
                      headers={**admin_headers("POST", "/tokens", body),
                               "content-type": "application/json"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    # Tokens are checked against the node's own replica of the system group: wait until it
    # has applied the new one.
    deadline = time.monotonic() + 10
    while requests.get(f"{node.admin_url}/tokens", timeout=5,
                       headers={"Authorization": f"Bearer {token}"}).status_code != 200:
        assert time.monotonic() < deadline, f"token {name} never worked on {node.node_id}"
        time.sleep(0.1)
    return token


def fuzz_key(node, token: str, name: str) -> str:
    """A (non-root) access key for the fuzzer to disable, rotate, grant and delete."""
    r = requests.post(f"{node.admin_url}/keys", json={"name": name}, timeout=10,
                      headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    return r.json()["access_key"]


def write_config(directory, access_key: str) -> None:
    """schemathesis.toml for a run in `directory`: half the generated `ak` path parameters
    name a key that exists (so disable/enable/rotate/grant reach their logic rather than 404),
    half are generated; buckets come from a few valid names and patterns the same way."""
    (directory / "schemathesis.toml").write_text(f"""
[dictionaries.keys]
values = ["{access_key}"]

[dictionaries.buckets]
values = ["fuzz-bucket", "logs-*", "*"]

[parameters]
"path.ak" = {{ dictionary = "keys", probability = 0.5 }}
"path.bucket" = {{ dictionary = "buckets", probability = 0.5 }}
""")


def operations(doc: dict) -> list[tuple[str, str]]:
    return [(m, p) for p, item in doc["paths"].items() for m in HTTP_METHODS if m in item]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_document_is_public_and_describes_the_api(doc):
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Cairn management API"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}
    ops = operations(doc)
    for op in [("get", "/health"), ("get", "/metrics"), ("get", "/cluster/status"),
               ("get", "/cluster/audit"), ("post", "/keys"), ("post", "/tokens"),
               ("get", "/openapi.json")]:
        assert op in ops, op


def test_every_documented_operation_is_routed(cluster, doc):
    """Unauthenticated calls to each documented operation reach a handler: never 404 for an
    unknown route nor 405 for an unrouted method."""
    base = cluster.nodes["n2"].admin_url
    for method, path in operations(doc):
        r = requests.request(method.upper(), base + concrete(path), timeout=10)
        assert r.status_code not in (404, 405) or r.headers.get("content-type", "").startswith(
            "application/json"), f"{method.upper()} {path} is not routed: {r.status_code}"
        assert r.status_code < 500, f"{method.upper()} {path}: {r.status_code} {r.text[:200]}"


def test_every_route_in_the_code_is_documented(doc):
    """Each `.route("/path", ...)` of the management plane's modules appears in the document
    (catches a handler added without `#[utoipa::path]` or without joining its module's Api)."""
    src = REPO_ROOT / "crates" / "cairn" / "src"
    routes = set()
    for f in src.glob("*.rs"):
        text = f.read_text()
        if "Router<" not in text and "Router::new" not in text:
            continue
        for m in re.finditer(r'\.route\(\s*"([^"]+)"', text):
            routes.add(m.group(1))
    assert "/keys" in routes and "/health" in routes, routes
    undocumented = sorted(r for r in routes if r not in doc["paths"])
    assert not undocumented, f"routes missing from /openapi.json: {undocumented}"


def _schemathesis(node, token: str | None, extra: list[str], report,
                  checks: str = "not_a_server_error", seconds: int = FUZZ_SECONDS,
                  ) -> subprocess.Popen:
    """Starts a schemathesis run against `node` (in the report's directory, where it keeps
    its example database)."""
    st = require_tool("schemathesis")
    args = [st, "run", f"{node.admin_url}/openapi.json",
            "--checks", checks,
            "--max-time", str(seconds),
            "--max-examples", "40",
            "--seed", "12",
            "--workers", "2",
            "--request-timeout", "20",
            "--phases", "examples,coverage,fuzzing",
            "--suppress-health-check", "all",
            "--report", "junit", "--report-junit-path", str(report),
            *extra]
    if token:
        args += ["--header", f"Authorization: Bearer {token}"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, cwd=report.parent)


def _finish(runs: dict[str, subprocess.Popen], budget: int) -> list[str]:
    """Waits for the runs; returns what went wrong with each."""
    failures = []
    outputs = {}
    for name, p in runs.items():
        try:
            out, _ = p.communicate(timeout=budget + 120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            failures.append(f"{name}: schemathesis did not finish\n{out[-4000:]}")
            continue
        outputs[name] = out
        if p.returncode != 0:
            failures.append(f"{name}: schemathesis exited {p.returncode}\n{out[-6000:]}")
    if os.environ.get("FUZZ_VERBOSE"):
        for name, out in outputs.items():
            print(f"--- {name} ---\n{out}")
    return failures


# A crash of the fuzzer itself, not a finding: CPython 3.11's `ast.parse`, called from
# hypothesis while it describes a strategy, sometimes fails like this under schemathesis's
# worker threads. Such a run is started again once.
TOOL_CRASH = "SystemError: AST constructor recursion depth mismatch"


def _fuzz(starts: dict, budget: int) -> list[str]:
    """Runs `starts` (name -> a function starting a schemathesis run) in parallel; a run that
    died of the fuzzer's own crash is run again once. Returns what went wrong."""
    failures = _finish({name: start() for name, start in starts.items()}, budget)
    crashed = [f.split(":", 1)[0] for f in failures if TOOL_CRASH in f]
    if crashed:
        failures = [f for f in failures if f.split(":", 1)[0] not in crashed]
        failures += _finish({name: starts[name]() for name in crashed}, budget)
    return failures


def test_fuzz_finds_no_server_error(cluster, doc, tmp_path):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    token = admin_token(n1)
    write_config(tmp_path, fuzz_key(n1, token, "fuzz-target"))
    starts = {
        "authenticated": lambda: _schemathesis(n1, token, [
            "--exclude-path-regex", DESTRUCTIVE,
            # Revoking its own token would leave the rest of the run unauthenticated.
            "--exclude-operation-id", "revoke_token",
        ], tmp_path / "auth.xml"),
        "unauthenticated": lambda: _schemathesis(n2, None, [], tmp_path / "anon.xml"),
    }
    failures = _fuzz(starts, FUZZ_SECONDS)
    assert not failures, "\n\n".join(failures)
    # The cluster is still whole and the token still works after the fuzzing.
    cluster.assert_no_crash()
    r = requests.get(f"{n1.admin_url}/cluster/status", timeout=5,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


def test_responses_match_the_document(cluster, doc, tmp_path):
    """With a token, every answer's status code, content type and body are the ones the
    document declares for the operation (a handler that answers something undocumented, or a
    schema that does not match what is sent, fails here rather than in a client)."""
    n3 = cluster.nodes["n3"]
    token = admin_token(n3, "fuzz-conformance")
    write_config(tmp_path, fuzz_key(n3, token, "conformance-target"))
    seconds = max(10, FUZZ_SECONDS // 2)
    def start():
        return _schemathesis(
            n3, token,
            ["--exclude-path-regex", DESTRUCTIVE, "--exclude-operation-id", "revoke_token"],
            tmp_path / "conformance.xml",
            checks="status_code_conformance,content_type_conformance,"
                   "response_schema_conformance",
            seconds=seconds,
        )
    failures = _fuzz({"conformance": start}, seconds)
    assert not failures, "\n\n".join(failures)
