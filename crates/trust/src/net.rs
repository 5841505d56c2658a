//! TLS over TCP for the RPC port. Server side: accepted connections are capped (a semaphore
//! permit lives as long as the connection), the handshake runs in its own task under a timeout
//! so a slow client holds nothing but its own permit, and the verified peer identity travels
//! with the connection into every request (`PeerInfo`). Client side: a tonic connector that
//! dials the address and runs the TLS handshake with the given configuration.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::{Trust, SERVER_NAME};

/// Who is on the other end of an RPC connection (a request extension).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The node named by a client certificate verified against the cluster CA; `None` for
    /// clients without one (CLI, joiners).
    pub node: Option<String>,
}

/// Limits applied to the RPC listener before any request is read.
#[derive(Clone, Debug)]
pub struct ListenerLimits {
    /// Open connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A server-side TLS connection with its identity and its connection permit.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TLS connections on `listener` until the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    trust: &Trust,
    limits: ListenerLimits,
) -> Result<Incoming, crate::TrustError> {
    let acceptor = TlsAcceptor::from(trust.server_config()?);
    let (tx, rx) = mpsc::channel::<std::io::Result<TlsConn>>(64);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an RPC connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(%remote, max = limits.max_connections, "RPC connection limit reached: closing a new connection");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let timeout = limits.handshake_timeout;
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let node = Trust::peer_node(tls.get_ref().1.peer_certificates());
                        let conn = TlsConn {
                            inner: tls,
                            info: PeerInfo {
                                remote: Some(remote),
                                node,
                            },
                            _permit: permit,
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "RPC TLS handshake refused");
                    }
                    Err(_) => tracing::debug!(%remote, "RPC TLS handshake timed out"),
                }
            });
        }
    });
    Ok(Incoming(rx))
}

/// The accepted, handshaken connections (what `serve_with_incoming` takes).
pub struct Incoming(mpsc::Receiver<std::io::Result<TlsConn>>);

impl futures::Stream for Incoming {
    type Item = std::io::Result<TlsConn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Dials peers over TLS for tonic (`Endpoint::connect_with_connector_lazy`).
#[derive(Clone)]
pub struct Connector {
    config: Arc<rustls::ClientConfig>,
}

impl Connector {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = TlsConnector::from(self.config.clone());
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| std::io::Error::other(format!("no address in {uri}")))?
                .as_str()
                .to_string();
            let tcp = TcpStream::connect(&authority).await?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(SERVER_NAME)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
