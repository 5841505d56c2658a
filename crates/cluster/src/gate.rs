//! The RPC port's access check, applied to every call before its body is read: Raft, chunk and
//! control calls need a client certificate of this cluster (verified in the TLS handshake,
//! `cairn_trust::PeerInfo`); `Hello` and `Join` are open (they carry their own token proof)
//! but their bodies are capped; FileService authenticates with S3 credentials itself. Unknown
//! paths count as node-only, so a new service is closed until someone opens it here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use cairn_trust::PeerInfo;
use tonic::body::Body;

/// Who may call a method.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// A node of this cluster (client certificate from the cluster CA).
    Node,
    /// Anyone; the body is capped at `MAX_UNAUTHENTICATED_BODY`.
    Join,
    /// Anyone; the service authenticates the call itself.
    Client,
}

/// The access rule of a gRPC path.
pub fn access(path: &str) -> Access {
    match path {
        "/cairn.v1.ControlService/Hello"
        | "/cairn.v1.ControlService/JoinChallenge"
        | "/cairn.v1.ControlService/Join" => Access::Join,
        p if p.starts_with("/cairn.v1.FileService/") => Access::Client,
        _ => Access::Node,
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GateLayer;

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Gate<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> tower_service::Service<http::Request<Body>> for Gate<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The ready service handles this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let peer = req.extensions().get::<PeerInfo>().cloned();
        let req = match access(req.uri().path()) {
            Access::Node => {
                if peer.as_ref().and_then(|p| p.node.as_ref()).is_none() {
                    tracing::warn!(
                        remote = ?peer.as_ref().and_then(|p| p.remote),
                        path = %req.uri().path(),
                        "refused a node-only call without a cluster certificate"
                    );
                    let status = tonic::Status::unauthenticated(
                        "this call needs a node certificate of this cluster (mutual TLS)",
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                req
            }
            Access::Join => req.map(|b| {
                Body::new(http_body_util::Limited::new(
                    b,
                    crate::MAX_UNAUTHENTICATED_BODY,
                ))
            }),
            Access::Client => req,
        };
        Box::pin(inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_join_calls_and_files_are_open() {
        assert_eq!(access("/cairn.v1.ControlService/Hello"), Access::Join);
        assert_eq!(access("/cairn.v1.ControlService/Join"), Access::Join);
        assert_eq!(access("/cairn.v1.ControlService/Propose"), Access::Node);
        assert_eq!(
            access("/cairn.v1.ControlService/RegisterNode"),
            Access::Node
        );
        assert_eq!(access("/cairn.v1.RaftService/Batch"), Access::Node);
        assert_eq!(access("/cairn.v1.ChunkService/GetChunk"), Access::Node);
        assert_eq!(access("/cairn.v1.FileService/Upload"), Access::Client);
        assert_eq!(access("/other.Service/X"), Access::Node);
        assert_eq!(access("/cairn.v1.ControlService/HelloX"), Access::Node);
    }
}
