//! Generated gRPC types and service stubs for `proto/cairn.proto` (package `cairn.v1`). Who may
//! call what is decided by the TLS identity of the caller (`cairn-trust`, `cairn-cluster`
//! `serve_rpc`), not by anything in these messages.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cairn.v1");
}

/// A channel to a peer (mutual TLS when the node pool has a trust configuration).
pub type PeerChannel = tonic::transport::Channel;

/// Runs a gRPC call with a deadline enforced here, on the client. `Request::set_timeout` alone
/// is not enough: tonic applies it only once a connection is ready, so a call queued while the
/// channel reconnects to a cut-off peer would wait for as long as the cut lasts.
pub async fn deadline<T>(
    d: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(d, call).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {} ms",
            d.as_millis()
        ))),
    }
}
