//! The RPC listener's limits on real sockets: connections over the cap are closed at once, a
//! client that never finishes its TLS handshake is dropped after the timeout (freeing its
//! slot), and a completed handshake carries the verified node identity.

use std::time::Duration;

use cairn_trust::{ListenerLimits, Trust};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// True when the server closed the connection (EOF or reset) within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn connection_cap_and_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let trust = Trust::open(dir.path(), "n1", None).unwrap();
    trust.create_ca("test").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ListenerLimits {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(500),
    };
    let mut incoming = cairn_trust::net::incoming(listener, &trust, limits).unwrap();

    // Two silent clients take both slots; a third is closed at once.
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed(&mut c, Duration::from_millis(300)).await,
        "over the cap"
    );
    // The silent ones are dropped when their handshake time is up...
    assert!(closed(&mut a, Duration::from_secs(2)).await);
    assert!(closed(&mut b, Duration::from_secs(2)).await);

    // ...which frees the slots: a member completes a handshake and is identified.
    let member_dir = tempfile::tempdir().unwrap();
    let member = Trust::open(member_dir.path(), "n2", None).unwrap();
    let cert = trust.sign("n2", &member.csr().unwrap()).unwrap();
    member.install(&trust.ca().unwrap(), None, &cert).unwrap();
    let connector = tokio_rustls::TlsConnector::from(member.client_config().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("cairn-node").unwrap();
    let _tls = connector.connect(name, tcp).await.unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(2), incoming.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    use tonic::transport::server::Connected;
    assert_eq!(conn.connect_info().node.as_deref(), Some("n2"));
}

/// Writes an operator CA and a node certificate for `node` into `dir`.
fn operator_files(dir: &std::path::Path, node: &str) -> cairn_trust::OperatorFiles {
    use cairn_trust::pki;
    let (ca, ca_key) = pki::new_ca("operator").unwrap();
    let key = pki::new_node_key().unwrap();
    let cert = pki::sign_node(&ca, &ca_key, node, &pki::csr(node, &key).unwrap()).unwrap();
    let f = cairn_trust::OperatorFiles {
        ca_cert: dir.join("op-ca.pem"),
        node_cert: dir.join("op-node.pem"),
        node_key: dir.join("op-node.key"),
    };
    std::fs::write(&f.ca_cert, pki::cert_pem(&ca)).unwrap();
    std::fs::write(&f.node_cert, pki::cert_pem(&cert)).unwrap();
    std::fs::write(&f.node_key, key).unwrap();
    f
}

#[tokio::test]
async fn operator_certificates_load_and_reload_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let files = operator_files(dir.path(), "n1");
    // A certificate for another node id is refused.
    assert!(Trust::open(dir.path(), "n2", Some(files.clone())).is_err());
    let trust = Trust::open(dir.path(), "n1", Some(files.clone())).unwrap();
    assert!(trust.is_member() && !trust.can_admit());
    let first = trust.ca().unwrap();
    trust.spawn_reload(Duration::from_millis(50));
    // Replaced files (a new CA) are picked up without a restart.
    tokio::time::sleep(Duration::from_millis(1100)).await; // coarse mtimes
    let other = tempfile::tempdir().unwrap();
    let next = operator_files(other.path(), "n1");
    for (from, to) in [
        (&next.ca_cert, &files.ca_cert),
        (&next.node_cert, &files.node_cert),
        (&next.node_key, &files.node_key),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while trust.ca().unwrap() == first {
        assert!(tokio::time::Instant::now() < deadline, "not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
