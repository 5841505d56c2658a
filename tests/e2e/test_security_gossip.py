"""Spoofed gossip against a real 3-node cluster (issue 10 items 2 and 8).

Gossip datagrams are sealed with XChaCha20-Poly1305 under
``blake3.derive_key("cairn 2026 gossip v1", CLUSTER_JOIN_TOKEN)`` (format byte 0xC1, 24-byte
nonce, then the AEAD of the sent-at time in unix ms and chitchat's datagram). An attacker on the
network sends, to a node's gossip port (UDP on the RPC port number), chitchat-shaped datagrams
claiming node X with a huge generation — in clear, sealed under a wrong token, replayed with an
old timestamp, tampered — and random bytes. X must stay ``up`` everywhere well past
``NODE_TIMEOUT_SECS`` and the node's ``cairn_gossip_packets_dropped_total`` must count them.

A positive control seals a well-formed Syn with the real token: the node answers it, which
shows the attacker's packets were refused for their seal, not for their shape.

Ports: the nodes use 127.0.0.11-13 like the other cluster tests, but on ports 23710-23712 so a
run of this file cannot collide with ``test_cluster*.py`` (tests run one at a time anyway).
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import time

import blake3
import pytest
import requests
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import cluster_util
from cluster_util import JOIN_TOKEN, Cluster

# Ports of this module's clusters: PORT_BASE + 2710 .. + 2712 (23710.. by default).
PORT_SHIFT = 2710
FORMAT_V1 = 0xC1
CHITCHAT_MAGIC = 45_139
NODE_TIMEOUT = float(cluster_util.DEFAULT_ENV["NODE_TIMEOUT_SECS"])


# ---------------------------------------------------------------------------------------------
# XChaCha20-Poly1305 (HChaCha20 subkey + the IETF ChaCha20-Poly1305 of `cryptography`)
# ---------------------------------------------------------------------------------------------

_M = 0xFFFFFFFF


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _M) | (v >> (32 - c))


def _hchacha20(key: bytes, nonce16: bytes) -> bytes:
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & _M
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & _M
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & _M
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & _M
        s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def gossip_key(token: str) -> bytes:
    return blake3.blake3(token.encode(), derive_key_context="cairn 2026 gossip v1").digest()


def seal(key: bytes, plain: bytes, sent_ms: int | None = None) -> bytes:
    if sent_ms is None:
        sent_ms = int(time.time() * 1000)
    nonce = os.urandom(24)
    aead = ChaCha20Poly1305(_hchacha20(key, nonce[:16]))
    body = aead.encrypt(b"\0" * 4 + nonce[16:], struct.pack(">Q", sent_ms) + plain,
                        bytes([FORMAT_V1]))
    return bytes([FORMAT_V1]) + nonce + body


def open_sealed(key: bytes, packet: bytes) -> bytes:
    assert packet[0] == FORMAT_V1, packet[:8]
    nonce = packet[1:25]
    aead = ChaCha20Poly1305(_hchacha20(key, nonce[:16]))
    return aead.decrypt(b"\0" * 4 + nonce[16:], packet[25:], bytes([FORMAT_V1]))[8:]


# ---------------------------------------------------------------------------------------------
# chitchat 0.13 wire format (protocol V0), enough for a Syn
# ---------------------------------------------------------------------------------------------

def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<H", len(b)) + b


def chitchat_syn(cluster: str, node_id: str, generation: int, addr: tuple[str, int],
                 heartbeat: int) -> bytes:
    """A Syn whose digest claims `node_id` at `generation` with a huge heartbeat."""
    ip = socket.inet_aton(addr[0])
    chitchat_id = _string(node_id) + struct.pack("<Q", generation) + b"\x04" + ip + \
        struct.pack("<H", addr[1])
    digest = struct.pack("<H", 1) + chitchat_id + struct.pack("<QQQ", heartbeat, 0, 1 << 40)
    return struct.pack("<HBB", CHITCHAT_MAGIC, 0, 0) + digest + _string(cluster)


# ---------------------------------------------------------------------------------------------
# Fixture and helpers
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path_factory, request):
    wd = tmp_path_factory.mktemp("gossip-" + request.node.name[:40])
    with cluster_util.started_cluster(wd, PORT_SHIFT) as c:
        yield c


def dropped(node) -> dict[str, float]:
    """`cairn_gossip_packets_dropped_total` by reason, from the node's /metrics."""
    text = requests.get(f"{node.admin_url}/metrics", timeout=5).text
    out = {}
    for m in re.finditer(r'^cairn_gossip_packets_dropped_total\{reason="(\w+)"\} (\S+)$', text,
                         re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def health_everywhere(c: Cluster, node_id: str) -> dict[str, str]:
    out = {}
    for nid, st in c.statuses().items():
        assert st is not None, f"{nid}: no status"
        out[nid] = next(x["health"] for x in st["nodes"] if x["node_id"] == node_id)
    return out


# ---------------------------------------------------------------------------------------------
# Test
# ---------------------------------------------------------------------------------------------

def test_spoofed_gossip_is_dropped_counted_and_changes_nothing(cluster):
    c = cluster
    target = c.node("n1")
    victim = "n2"
    gossip_addr = (target.ip, cluster_util.RPC_PORT)
    key = gossip_key(JOIN_TOKEN)
    wrong_key = gossip_key("guessed-" + JOIN_TOKEN)
    claim = chitchat_syn("cairn", victim, 2**62, (c.node(victim).ip, cluster_util.RPC_PORT),
                         2**40)

    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.20", 0))
    attacker.settimeout(0.5)

    # Positive control: a Syn sealed with the real key is answered (sealed), so the packets
    # below are refused for their seal, not their shape. Its digest is empty: a keyholder's
    # claims are believed, and this one must not disturb the cluster.
    attacker.sendto(seal(key, struct.pack("<HBBH", CHITCHAT_MAGIC, 0, 0, 0) + _string("cairn")),
                    gossip_addr)
    reply, _ = attacker.recvfrom(70_000)
    assert reply[0] == FORMAT_V1
    plain = open_sealed(key, reply)
    assert struct.unpack("<H", plain[:2])[0] == CHITCHAT_MAGIC
    # From here on nothing the attacker sends may open; drain the control's traffic.
    time.sleep(0.5)
    while True:
        try:
            attacker.recvfrom(70_000)
        except TimeoutError:
            break

    before = dropped(target)
    assert set(before) >= {"malformed", "unauthenticated", "stale"}, before
    rounds = 0
    sent = {"malformed": 0, "unauthenticated": 0, "stale": 0}
    t0 = time.monotonic()
    # Keep it up for well past NODE_TIMEOUT_SECS: long enough to vote the victim out if the
    # forged claims were believed.
    while time.monotonic() - t0 < NODE_TIMEOUT * 1.5 + 2:
        good = seal(key, claim)
        tampered = bytearray(good)
        tampered[random.randrange(1, len(tampered))] ^= 1 << random.randrange(8)
        packets = [
            (claim, "malformed"),                                   # plain chitchat
            (os.urandom(random.randrange(0, 1400)), None),          # junk of any size
            (bytes([FORMAT_V1]) + os.urandom(200), "unauthenticated"),
            (seal(wrong_key, claim), "unauthenticated"),            # another cluster's key
            (bytes(tampered), "unauthenticated"),                   # one flipped bit
            (seal(key, claim, int(time.time() * 1000) - 600_000), "stale"),  # replay, 10 min
        ]
        for p, reason in packets:
            attacker.sendto(p, gossip_addr)
            if reason:
                sent[reason] += 1
        rounds += 1
        health = health_everywhere(c, victim)
        assert all(h == "up" for h in health.values()), f"round {rounds}: {health}"
        time.sleep(0.1)

    # No reply to anything the attacker sent.
    with pytest.raises(TimeoutError):
        attacker.recvfrom(70_000)

    time.sleep(0.5)
    after = dropped(target)
    for reason, n in sent.items():
        assert after[reason] - before[reason] >= n, (reason, n, before, after)
    assert sum(after.values()) - sum(before.values()) >= rounds * 6, (rounds, before, after)
    # The cluster still works and still sees every node up.
    c.wait_converged(3, timeout=10)
    print(f"[gossip] {rounds} rounds of forged packets; dropped {before} -> {after}")
