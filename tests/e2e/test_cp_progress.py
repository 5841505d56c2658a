"""`cairn cp` of a large file shows a progress bar on stderr when stderr is a terminal (a pty
here), and nothing at all when it is not (scripts, pipes, files); small files never get one."""

from __future__ import annotations

import os
import pty
import subprocess

from conftest import cairn_bin
from e2e_util import ACCESS_KEY, SECRET_KEY, rand_bytes, unique_name
from test_files import cli


def env_for(server) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if k not in ("ACCESS_KEY", "SECRET_KEY", "STORAGE_PATH", "CAIRN_ENDPOINT",
                      "CAIRN_CA_FILE", "NO_COLOR")}
    e.update({
        "CAIRN_ENDPOINT": f"127.0.0.1:{server.rpc_port}",
        "ACCESS_KEY": ACCESS_KEY,
        "SECRET_KEY": SECRET_KEY,
        "CAIRN_CA_FILE": str(server.storage_path / "tls" / "ca.pem"),
        "TERM": "xterm",
    })
    return e


def run_on_a_terminal(server, *args: str) -> tuple[int, bytes, bytes]:
    """Runs `cairn <args>` with stderr on a pty; returns (exit code, stdout, what the pty got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(cairn_bin()), *args], env=env_for(server), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out = p.stdout.read() if p.stdout else b""
    return p.wait(timeout=120), out, seen


def test_large_copies_show_progress_only_on_a_terminal(server, tmp_path):
    bucket = unique_name("progress")
    cli(server, "mb", bucket)
    big = tmp_path / "big.bin"
    big.write_bytes(rand_bytes(24 << 20, 7))
    small = tmp_path / "small.bin"
    small.write_bytes(b"tiny")

    code, out, tty = run_on_a_terminal(server, "cp", str(big), f"cairn://{bucket}/big.bin")
    assert code == 0, tty
    assert b"upload:" in out
    assert b"upload [" in tty and b"MiB" in tty, tty[-400:]

    dst = tmp_path / "back.bin"
    code, out, tty = run_on_a_terminal(server, "cp", f"cairn://{bucket}/big.bin", str(dst))
    assert code == 0, tty
    assert dst.read_bytes() == big.read_bytes()
    assert b"download [" in tty, tty[-400:]

    # Not a terminal: stderr stays empty.
    r = cli(server, "cp", str(big), f"cairn://{bucket}/big2.bin")
    assert r.stderr == b"", r.stderr
    r = cli(server, "cp", f"cairn://{bucket}/big2.bin", str(tmp_path / "b2.bin"))
    assert r.stderr == b"", r.stderr
    # Small files: no bar even on a terminal.
    code, _, tty = run_on_a_terminal(server, "cp", str(small), f"cairn://{bucket}/small.bin")
    assert code == 0 and b"[" not in tty, tty
