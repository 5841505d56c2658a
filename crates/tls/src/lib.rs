//! TLS for the client-facing listeners (S3 and management ports) and for the CLI's HTTP client.
//!
//! - [`ServerTls`]: a rustls server configuration (ring provider) whose certificate comes from
//!   `TLS_CERT` / `TLS_KEY` PEM files and is re-read when either file's modification time
//!   changes, so an operator (or certbot) replaces the files and new connections get the new
//!   certificate without a restart. A replacement that does not parse is logged and the last
//!   good certificate stays in use.
//! - [`client_config`]: a rustls client configuration that trusts the Mozilla roots
//!   (`webpki-roots`, so no system files are needed) plus, optionally, a CA file; and
//!   [`https_connector`], the hyper client connector the CLI and `cairn bench` use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;

/// How often, at most, a handshake looks at the files' modification times.
const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_err(path: &Path, msg: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a certificate chain and its private key from PEM files and checks that they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE block found"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| file_err(key, format!("does not fit the certificate: {e}")))
}

struct Loaded {
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
    key: Arc<CertifiedKey>,
}

/// A certificate resolver that re-reads the PEM files when they change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the files now: a node with a bad certificate fails at start, not at first use.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamps = (mtime(cert), mtime(key));
        let loaded = load_certified_key(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(Loaded {
                stamps,
                checked: Instant::now(),
                key: Arc::new(loaded),
            }),
        })
    }

    /// The current certificate, re-read first if a file changed since the last look.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().ok()?;
        if state.checked.elapsed() >= RELOAD_CHECK_EVERY {
            state.checked = Instant::now();
            let stamps = (mtime(&self.cert), mtime(&self.key));
            if stamps != state.stamps {
                match load_certified_key(&self.cert, &self.key) {
                    Ok(k) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        state.key = Arc::new(k);
                        state.stamps = stamps;
                    }
                    // Files are often replaced one after the other: keep the last good pair
                    // and retry at the next check (the stamps stay old so it is retried).
                    Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded"),
                }
            }
        }
        Some(state.key.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Server-side TLS of one listener.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// TLS 1.2 and 1.3 with the ring provider, HTTP/1.1 by ALPN, certificate from the files
    /// (reloaded when they change).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let resolver = Arc::new(ReloadingCert::new(cert, key)?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// A client configuration trusting the Mozilla root set and, when given, the certificates in
/// `ca_file` (a private CA or a self-signed server certificate).
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
            let cert = cert.map_err(|e| file_err(path, e))?;
            roots
                .add(cert)
                .map_err(|e| file_err(path, format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(file_err(path, "no CERTIFICATE block found"));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client connector that speaks `https://` (verified with [`client_config`]) and
/// plain `http://`, for hyper's legacy client.
pub fn https_connector(
    ca_file: Option<&Path>,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    TlsError,
> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(ca_file)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn loads_and_reloads_when_files_change() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "one.test");
        let r = ReloadingCert::new(&cert, &key).unwrap();
        let first = r.current().unwrap().cert[0].clone();

        // A broken replacement keeps the old certificate.
        std::thread::sleep(RELOAD_CHECK_EVERY);
        std::fs::write(&cert, "garbage").unwrap();
        assert_eq!(r.current().unwrap().cert[0], first);

        std::thread::sleep(RELOAD_CHECK_EVERY);
        write_pair(dir.path(), "two.test");
        let second = r.current().unwrap().cert[0].clone();
        assert_ne!(second, first);
    }

    #[test]
    fn mismatched_or_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_pair(dir.path(), "a.test");
        let other = tempfile::tempdir().unwrap();
        let (_, key2) = write_pair(other.path(), "b.test");
        let e = ReloadingCert::new(&cert, &key2).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        let e = ReloadingCert::new(&dir.path().join("nope.pem"), &key2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn client_config_takes_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_pair(dir.path(), "a.test");
        assert!(client_config(Some(&cert)).is_ok());
        assert!(client_config(None).is_ok());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(client_config(Some(&empty)).is_err());
    }
}
