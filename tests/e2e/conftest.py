"""Fixtures for Cairn end-to-end tests.

* ``server``: a fresh single-node Cairn server per test module (random free ports, temp
  STORAGE_PATH, fixed credentials), stopped at module end. ``server.restart()`` restarts it on the
  same data dir; ``server.kill()`` sends SIGKILL.
* ``server_factory``: start extra servers with custom environment (GC, multipart expiry, chunk
  size...) inside one module.
* ``s3`` / ``s3_vhost`` / ``s3_trailer``: boto3 clients (path-style, virtual-host-style, and
  path-style with the aws-chunked CRC32 trailer boto3 uses over HTTPS).
* ``bucket``: a new empty bucket per test.

On a failing test, the tail of every running server's log is attached to the report. A server
that died on its own (panic, abort) fails the module at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, free_ports, unique_name

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = float(os.environ.get("CAIRN_STARTUP_TIMEOUT", "60"))

# ---------------------------------------------------------------------------------------------
# `*.localhost` resolution for virtual-host-style requests. glibc here resolves `localhost` but
# not `bucket.localhost`, so map every `*.localhost` name to 127.0.0.1 inside this process.
# ---------------------------------------------------------------------------------------------
_orig_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _orig_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo


def cairn_bin() -> Path:
    p = Path(os.environ.get("CAIRN_BIN", "target/release/cairn"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


_RUNNING: list["CairnServer"] = []


class CairnServer:
    """One `cairn server` process on 127.0.0.1 with its own ports and data dir."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.workdir = workdir
        self.storage_path = workdir / "data"
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self.api_port, self.rpc_port, self.admin_port = free_ports(3)
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.starts = 0
        self.unexpected_exit: str | None = None

    # -- environment ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(
            {
                "STORAGE_PATH": str(self.storage_path),
                "NODE_ID": "e2e-node-1",
                "NODE_BIND_ADDR": "127.0.0.1",
                "NODE_API_PORT": str(self.api_port),
                "NODE_RPC_PORT": str(self.rpc_port),
                "NODE_ADMIN_PORT": str(self.admin_port),
                "ACCESS_KEY": ACCESS_KEY,
                "SECRET_KEY": SECRET_KEY,
                "S3_DOMAINS": "localhost",
                # anyhow start-up errors without a backtrace, so log tails stay readable
                # (panics still honour RUST_BACKTRACE).
                "RUST_LIB_BACKTRACE": "0",
            }
        )
        e.update(self.extra_env)
        return e

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def vhost_endpoint(self) -> str:
        return f"http://localhost:{self.api_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = STARTUP_TIMEOUT, **env_overrides: str) -> "CairnServer":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        binary = cairn_bin()
        if not binary.exists():
            pytest.fail(
                f"Cairn binary not found at {binary}; build it with `cargo build --release -p "
                "cairn` or set CAIRN_BIN"
            )
        self.extra_env.update({k: str(v) for k, v in env_overrides.items()})
        self._log = open(self.log_path, "ab")
        self._we_stopped = False
        self.starts += 1
        self._log.write(f"\n===== e2e: start #{self.starts} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [str(binary), "server"],
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if self not in _RUNNING:
            _RUNNING.append(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cairn exited with {self.proc.returncode} during startup\n{self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.admin_url}/health", timeout=2)
                ready = requests.get(f"{self.admin_url}/ready", timeout=2)
                if r.status_code == 200 and ready.status_code in (200, 404) \
                        and self._api_accepts():
                    return
                last = f"/health -> {r.status_code}, /ready -> {ready.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"cairn not healthy within {timeout}s (last: {last})\n{self.log_tail()}"
        )

    def _api_accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.api_port), timeout=2):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_not_crashed(self) -> None:
        """Records an exit we did not cause (panic, abort, OOM)."""
        if self.proc is not None and self.proc.poll() is not None and self.unexpected_exit is None:
            if not getattr(self, "_we_stopped", False):
                self.unexpected_exit = (
                    f"cairn ({self.name}) exited on its own with code {self.proc.returncode}"
                )

    def kill(self) -> None:
        """SIGKILL, no chance to flush anything."""
        if self.proc is None:
            return
        self.check_not_crashed()
        self._we_stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        self.check_not_crashed()
        self._we_stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._close_log()

    def restart(self, kill: bool = False, **env_overrides: str) -> "CairnServer":
        """Restart on the same data dir and ports (optionally with changed environment)."""
        self.kill() if kill else self.stop()
        return self.start(**env_overrides)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no server log)"
        tail = data.decode("utf-8", "replace").splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    # -- clients -------------------------------------------------------------------------------
    def client(self, addressing: str = "path", **kwargs):
        return make_client(
            self.vhost_endpoint if addressing == "virtual" else self.endpoint,
            addressing=addressing,
            **kwargs,
        )


def make_client(
    endpoint: str,
    addressing: str = "path",
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    max_attempts: int = 2,
    read_timeout: float = 120,
    trailer_checksums: bool = False,
    **config_kwargs,
):
    cfg = Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": addressing},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=read_timeout,
        max_pool_connections=32,
        **config_kwargs,
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=cfg,
    )
    if trailer_checksums:
        client.meta.events.register("before-call.s3", _force_trailer_checksum)
    return client


def _force_trailer_checksum(context, **_):
    """boto3 sends flexible checksums as an aws-chunked trailer only over HTTPS; force the same
    wire format over plain HTTP so the server's trailer handling is exercised."""
    checksum = context.get("checksum") or {}
    algo = checksum.get("request_algorithm")
    if isinstance(algo, dict) and algo.get("in") == "header":
        algo["in"] = "trailer"


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

def _module_workdir(tmp_path_factory, request, suffix: str = "") -> Path:
    name = request.module.__name__.rsplit(".", 1)[-1] + suffix
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="module")
def server_factory(tmp_path_factory, request):
    """Call ``server_factory(name, start=True, **env)`` to get a CairnServer."""
    servers: list[CairnServer] = []

    def make(name: str = "extra", start: bool = True, **env) -> CairnServer:
        wd = _module_workdir(tmp_path_factory, request, f"-{name}")
        srv = CairnServer(f"{request.module.__name__}:{name}", wd, {k: str(v) for k, v in env.items()})
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield make
    crashed = _teardown_servers(servers)
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


def _teardown_servers(servers: list[CairnServer]) -> list[str]:
    crashed = []
    for srv in servers:
        srv.check_not_crashed()
        if srv.unexpected_exit:
            crashed.append(f"{srv.unexpected_exit}\n{srv.log_tail(80)}")
        srv.stop()
        if srv in _RUNNING:
            _RUNNING.remove(srv)
        if not os.environ.get("CAIRN_E2E_KEEP_DATA"):
            shutil.rmtree(srv.storage_path, ignore_errors=True)
    return crashed


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("main")


@pytest.fixture(scope="module")
def s3(server):
    return server.client()


@pytest.fixture(scope="module")
def s3_vhost(server):
    return server.client(addressing="virtual")


@pytest.fixture(scope="module")
def s3_trailer(server):
    return server.client(trailer_checksums=True)


@pytest.fixture
def bucket(s3):
    name = unique_name("t")
    s3.create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------------------------------------
# Reporting: attach server log tails to failures; flag servers that died on their own.
# ---------------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(_RUNNING):
            srv.check_not_crashed()
            status = "running" if srv.alive() else f"exited ({srv.unexpected_exit or 'stopped'})"
            rep.sections.append((f"cairn server {srv.name} [{status}]", srv.log_tail(60)))
