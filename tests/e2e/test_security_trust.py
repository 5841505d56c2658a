"""Attacks on node-to-node trust against a real 3-node cluster (issue 10 item 1).

Someone on the network who can reach every RPC port but does not have the join token cannot
join, and cannot call Raft, chunk or control methods: not in plain text, not over TLS without a
certificate, not with a self-signed certificate. The catalog is unchanged afterwards and the
cluster keeps serving S3. Raw gRPC calls (bytes in, bytes out) are made with grpcio, so no
generated stubs are needed; a call with a real node certificate is the control that the method
works.
"""

import datetime
import shutil
import subprocess
import time

import grpc
import pytest

import cluster_util
from e2e_util import unique_name

# gRPC paths that only cluster nodes may call.
NODE_ONLY = [
    "/cairn.v1.RaftService/Batch",
    "/cairn.v1.ChunkService/HasChunks",
    "/cairn.v1.ControlService/Query",
    "/cairn.v1.ControlService/Propose",
    "/cairn.v1.ControlService/Heartbeat",
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cluster_util.cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cluster_util.cairn_bin()}; set CAIRN_BIN",
                    pytrace=False)
    mp = pytest.MonkeyPatch()
    base = cluster_util.PORT_BASE + 60
    mp.setattr(cluster_util, "API_PORT", base)
    mp.setattr(cluster_util, "RPC_PORT", base + 1)
    mp.setattr(cluster_util, "ADMIN_PORT", base + 2)
    c = cluster_util.Cluster(tmp_path_factory.mktemp("trust-cluster"))
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


def grpc_call(node, path, *, tls=True, ca=None, cert=None, key=None, body=b""):
    """One unary gRPC call (grpcio, raw bytes in and out); returns (grpc.StatusCode, details).

    A refused TLS handshake or a plain-text call to the TLS port never reaches a handler: grpcio
    reports it as UNAVAILABLE, made up on the client side, with the connection error in the
    details. (curl was used here before; curl 7.x reports the server's RST_STREAM(NO_ERROR),
    sent after an early answer while the request body is still in flight, as a framing error.)
    """
    target = f"{node.ip}:{cluster_util.RPC_PORT}"
    if tls:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None)
        # Node certificates name `cairn-node`; peers are dialled by address.
        channel = grpc.secure_channel(
            target, creds, options=[("grpc.ssl_target_name_override", "cairn-node")])
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        call = channel.unary_unary(path)
        try:
            call(body, timeout=10)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details() or ""


def self_signed(tmp_path, cn="n1"):
    """A self-signed certificate naming an existing node."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "evil.pem", tmp_path / "evil.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def catalog(cluster):
    n1 = cluster.nodes["n1"]
    st = n1.status()
    nodes = sorted(n["node_id"] for n in st.get("nodes", []))
    buckets = sorted(b["Name"] for b in n1.client().list_buckets()["Buckets"])
    return nodes, buckets


def test_tls_material_is_private(cluster):
    for n in cluster.nodes.values():
        tls = n.storage_path / "tls"
        assert (tls.stat().st_mode & 0o777) == 0o700
        for f in ("ca.pem", "ca.key", "node.pem", "node.key"):
            assert (tls / f).stat().st_mode & 0o077 == 0, f"{n.node_id}: {f} is readable by others"
    # One CA for the whole cluster.
    cas = {(n.storage_path / "tls" / "ca.pem").read_bytes() for n in cluster.nodes.values()}
    assert len(cas) == 1


def test_node_only_calls_are_refused_without_a_cluster_certificate(cluster, tmp_path):
    before = catalog(cluster)
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    ca = n1.storage_path / "tls" / "ca.pem"
    evil_cert, evil_key = self_signed(tmp_path)
    for path in NODE_ONLY:
        # The control: a node's own certificate gets through the gate (the call itself may
        # then fail on the empty message, but not as Unauthenticated).
        code, details = grpc_call(n2, path, ca=ca, cert=n1.storage_path / "tls" / "node.pem",
                                  key=n1.storage_path / "tls" / "node.key")
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE), \
            f"{path} with a node cert: {code} {details}"
        # Plain text (h2c): the port speaks only TLS, no handler answers.
        code, details = grpc_call(n2, path, tls=False)
        assert code == grpc.StatusCode.UNAVAILABLE, f"{path} in plain text: {code} {details}"
        # TLS without a client certificate: the gate answers Unauthenticated, before the body
        # is read.
        code, details = grpc_call(n2, path, ca=ca)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "node certificate" in details, \
            f"{path} without a client cert: {code} {details}"
        # A self-signed certificate claiming to be n1: the handshake is refused.
        code, details = grpc_call(n2, path, ca=ca, cert=evil_cert, key=evil_key)
        assert code == grpc.StatusCode.UNAVAILABLE, f"{path} with a self-signed cert: {code} {details}"
    assert catalog(cluster) == before


def test_a_stranger_without_the_token_cannot_join(cluster):
    before = catalog(cluster)
    # Wrong token: the seed refuses the greeting and the node stops, naming the setting.
    wrong = cluster.add_node(4, wait=False, expect_exit=True, CLUSTER_JOIN_TOKEN="not-the-token")
    code = wrong.wait_exit(60)
    assert code not in (None, 0), wrong.log_tail()
    assert "CLUSTER_JOIN_TOKEN" in wrong.log_text()
    assert not (wrong.storage_path / "tls" / "node.pem").exists()
    # No token at all: refused at start, naming the setting.
    shutil.rmtree(wrong.storage_path, ignore_errors=True)
    wrong.storage_path.mkdir(parents=True)
    cluster.nodes.pop("n4")
    none = cluster.add_node(4, wait=False, expect_exit=True, CLUSTER_JOIN_TOKEN="")
    code = none.wait_exit(30)
    assert code not in (None, 0), none.log_tail()
    assert "CLUSTER_JOIN_TOKEN" in none.log_text()
    cluster.nodes.pop("n4")
    time.sleep(1)
    assert catalog(cluster) == before


def test_the_cluster_still_serves_s3(cluster):
    bucket = unique_name("trust")
    n1, n3 = cluster.nodes["n1"], cluster.nodes["n3"]
    n1.client().create_bucket(Bucket=bucket)
    n1.client().put_object(Bucket=bucket, Key="k", Body=b"still here")
    assert n3.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"still here"


def test_cli_verifies_the_node_with_the_cluster_ca(cluster, tmp_path):
    """`cairn ls` trusts the node only through the cluster CA: a CA file, its fingerprint, or
    the data directory; another CA or a wrong fingerprint is refused with a clear message."""
    import hashlib
    import os

    from e2e_util import ACCESS_KEY, SECRET_KEY

    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    ca = n1.storage_path / "tls" / "ca.pem"
    der = subprocess.run(["openssl", "x509", "-in", str(ca), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    fingerprint = hashlib.sha256(der).hexdigest()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAIRN_") and k not in ("ACCESS_KEY", "SECRET_KEY", "STORAGE_PATH")}
    env.update({"ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY,
                "CAIRN_ENDPOINT": n2.rpc_addr})

    def ls(*extra, cwd=None):
        return subprocess.run([str(cluster_util.cairn_bin()), "ls", *extra], env=env,
                              capture_output=True, text=True, timeout=30, cwd=cwd)

    for args in (["--ca-file", str(ca)], ["--ca-fingerprint", fingerprint],
                 ["--data-dir", str(n1.storage_path)]):
        r = ls(*args)
        assert r.returncode == 0, (args, r.stderr)
    # Another CA (a self-signed certificate) and a wrong fingerprint: refused.
    evil_cert, _ = self_signed(tmp_path)
    r = ls("--ca-file", str(evil_cert))
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), r.stderr
    r = ls("--ca-fingerprint", "00" * 32)
    assert r.returncode != 0 and "fingerprint" in r.stderr.lower(), r.stderr
    # Nothing to verify with: the message names the options.
    r = ls(cwd=tmp_path)
    assert r.returncode != 0 and "--ca-file" in r.stderr, r.stderr
