#!/usr/bin/env bash
# Runs Cairn's whole test suite: release build, Rust unit/integration tests, then the
# end-to-end suite in tests/e2e (boto3, AWS CLI, rclone, s3cmd, crash and GC tests, the
# Grafana dashboard check scripts/check-dashboard.py, the OpenAPI fuzz) against the real
# binary. Installs missing test tools first. Any failure stops the run non-zero.
#
#   ./scripts/test-all.sh
#
# Extra pytest options can be passed through PYTEST_ADDOPTS (e.g. PYTEST_ADDOPTS="-k listing").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO="sudo"
fi

# --- test tools ---------------------------------------------------------------------------
missing_apt=()
for tool in rclone s3cmd; do
    command -v "$tool" >/dev/null 2>&1 || missing_apt+=("$tool")
done
# The partition tests put nodes in network namespaces (`ip netns`, as root) and cut links
# with nftables rules inside them.
command -v ip >/dev/null 2>&1 || missing_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || missing_apt+=(nftables)
# The chaos run skews one node's clock with libfaketime (LD_PRELOAD).
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] \
    || missing_apt+=(faketime)
if [ "${#missing_apt[@]}" -gt 0 ]; then
    log "installing ${missing_apt[*]} (apt)"
    $SUDO apt-get update -q || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing_apt[@]}" \
        || die "apt-get install ${missing_apt[*]}"
fi

# cryptography: the security tests make certificates and seal gossip packets.
# schemathesis: test_openapi_fuzz.py fuzzes the management API from its OpenAPI document.
# awscrt: botocore computes CRC32C and CRC64NVME checksums with it (test_checksums_post.py).
# grpcio: the node-identity attacker tests make raw gRPC calls over mutual TLS.
py_ok() { "$PY" -c 'import boto3, botocore, pytest, blake3, requests, cryptography, schemathesis, awscrt, grpc' >/dev/null 2>&1; }
if ! py_ok || ! command -v aws >/dev/null 2>&1 || ! command -v schemathesis >/dev/null 2>&1; then
    log "installing Python test dependencies (pip)"
    pkgs=(boto3 awscli pytest blake3 requests cryptography schemathesis awscrt grpcio)
    "$PY" -m pip install -q "${pkgs[@]}" \
        || "$PY" -m pip install -q --user "${pkgs[@]}" \
        || "$PY" -m pip install -q --user --break-system-packages "${pkgs[@]}" \
        || die "pip install ${pkgs[*]}"
    # Scripts installed with --user (aws) land here.
    USER_BIN="$("$PY" -m site --user-base)/bin"
    export PATH="$PATH:$USER_BIN"
    hash -r
    py_ok || die "Python test dependencies still not importable"
    command -v aws >/dev/null 2>&1 || die "aws CLI not on PATH after install"
    command -v schemathesis >/dev/null 2>&1 || die "schemathesis not on PATH after install"
fi

# --- build and Rust tests -----------------------------------------------------------------
log "cargo build --release --workspace --all-targets"
cargo build --release --workspace --all-targets || die "cargo build"

if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run --release --workspace"
    nextest_args=(--release --workspace)
    # A workspace whose crates have no tests yet must not fail the run.
    nextest_help="$(cargo nextest run --help 2>/dev/null || true)"
    if [[ "$nextest_help" == *--no-tests* ]]; then
        nextest_args+=(--no-tests=warn)
    fi
    cargo nextest run "${nextest_args[@]}" || die "cargo nextest"
else
    log "cargo test --release --workspace (cargo-nextest not installed)"
    cargo test --release --workspace || die "cargo test"
fi

# --- end-to-end ---------------------------------------------------------------------------
[ -x "$ROOT/target/release/cairn" ] || die "target/release/cairn was not built"
log "end-to-end tests (tests/e2e)"
start=$(date +%s)
CAIRN_BIN="$ROOT/target/release/cairn" "$PY" -m pytest -x -q -p no:cacheprovider --durations=25 tests/e2e \
    || die "end-to-end tests"
log "end-to-end tests passed in $(( $(date +%s) - start ))s"
log "all tests passed"
