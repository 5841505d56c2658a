#!/usr/bin/env bash
# Starts a local Cairn cluster of N nodes (default 3) on 127.0.0.1..N, each with its own data
# directory under ./cluster-data, the same ports on every address, and the same seed list.
#
#   ./scripts/cluster-local.sh [N]      # start (builds the release binary first)
#   ./scripts/cluster-local.sh stop     # stop the nodes started here
#
# S3 on http://127.0.0.K:9000, management on http://127.0.0.K:8080 (K = 1..N).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${CAIRN_CLUSTER_DATA:-./cluster-data}"

if [ "${1:-}" = "stop" ]; then
    for pid in "$DATA"/*.pid; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    exit 0
fi

N="${1:-3}"
case "$N" in ''|*[!0-9]*) echo "usage: $0 [node count] | stop" >&2; exit 2;; esac
cargo build --release -p cairn
mkdir -p "$DATA"
seeds=""
for i in $(seq 1 "$N"); do seeds="${seeds:+$seeds,}127.0.0.$i:7000"; done
: "${ACCESS_KEY:=cairn-admin}" "${SECRET_KEY:=cairn-secret-key}" "${CLUSTER_JOIN_TOKEN:=local-cluster-token}"
for i in $(seq 1 "$N"); do
    STORAGE_PATH="$DATA/n$i" NODE_ID="n$i" NODE_BIND_ADDR="127.0.0.$i" \
    CLUSTER_SEEDS="$seeds" CLUSTER_JOIN_TOKEN="$CLUSTER_JOIN_TOKEN" \
    ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" \
        nohup ./target/release/cairn server >"$DATA/n$i.log" 2>&1 &
    echo $! >"$DATA/n$i.pid"
done
for i in $(seq 1 "$N"); do
    for _ in $(seq 1 60); do
        curl -fs "http://127.0.0.$i:8080/health" >/dev/null 2>&1 && break
        sleep 0.5
    done
done
ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" \
    ./target/release/cairn cluster status --admin http://127.0.0.1:8080
echo
echo "S3 endpoints: $(for i in $(seq 1 "$N"); do printf 'http://127.0.0.%s:9000 ' "$i"; done)"
echo "credentials:  ACCESS_KEY=$ACCESS_KEY SECRET_KEY=$SECRET_KEY"
