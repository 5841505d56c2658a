//! The node's TLS material and the rustls configurations built from it. One `Trust` per node
//! holds the cluster CA (roots), the node's certificate (CA-signed once it has joined, a
//! provisional self-signed one before) and, when this node can admit joiners, the CA key. The
//! server and client configurations read the current state on every handshake, so joining,
//! creating the CA or an operator replacing certificate files takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::pki::{self, CA_CERT, CA_KEY, NODE_CERT, NODE_KEY};
use crate::TrustError;

/// The server name clients put in their hello (peers are dialled by address; verifiers check
/// the chain and the node identity, not this name).
pub const SERVER_NAME: &str = pki::NODE_SAN;

/// The crypto provider every configuration uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificate files an operator brings instead of the cluster CA (`TLS_CA_CERT`,
/// `TLS_NODE_CERT`, `TLS_NODE_KEY`); re-read when they change.
#[derive(Clone, Debug)]
pub struct OperatorFiles {
    pub ca_cert: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
}

struct State {
    ca: Option<CertificateDer<'static>>,
    ca_key_pem: Option<String>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// What this node presents (server and, when `member`, client side).
    key: Arc<CertifiedKey>,
    /// The certificate is signed by the cluster CA.
    member: bool,
    /// Modification times of the operator files this state was loaded from.
    loaded: Vec<Option<SystemTime>>,
}

struct Inner {
    node_id: String,
    dir: PathBuf,
    node_key_pem: String,
    operator: Option<OperatorFiles>,
    provider: Arc<CryptoProvider>,
    state: RwLock<Arc<State>>,
}

/// This node's TLS identity (cheap to clone).
#[derive(Clone)]
pub struct Trust {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("node_id", &self.inner.node_id)
            .field("member", &self.is_member())
            .finish()
    }
}

fn certified(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TrustError> {
    let key = pki::key_from_pem(key_pem)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TrustError::Pki(format!("node key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Trust {
    /// Loads (or starts) the identity of `node_id` from `<data>/tls`, or from the operator's
    /// files when given. A node without a CA-signed certificate serves a provisional one.
    pub fn open(
        data: &Path,
        node_id: &str,
        operator: Option<OperatorFiles>,
    ) -> Result<Self, TrustError> {
        let dir = pki::tls_dir(data)?;
        let key_path = dir.join(NODE_KEY);
        let node_key_pem = match pki::read_optional(&key_path)? {
            Some(b) => String::from_utf8(b)
                .map_err(|_| TrustError::Pki(format!("{} is not PEM", key_path.display())))?,
            None => {
                let k = pki::new_node_key()?;
                pki::write_private(&key_path, k.as_bytes())?;
                k
            }
        };
        let provider = provider();
        let provisional = certified(
            &provider,
            vec![pki::provisional(node_id, &node_key_pem)?],
            node_key_pem.as_bytes(),
        )?;
        let trust = Trust {
            inner: Arc::new(Inner {
                node_id: node_id.to_string(),
                dir,
                node_key_pem,
                operator,
                provider,
                state: RwLock::new(Arc::new(State {
                    ca: None,
                    ca_key_pem: None,
                    client_verifier: None,
                    key: provisional,
                    member: false,
                    loaded: Vec::new(),
                })),
            }),
        };
        trust.reload()?;
        Ok(trust)
    }

    fn state(&self) -> Arc<State> {
        self.inner.state.read().clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The node holds a certificate signed by the cluster CA.
    pub fn is_member(&self) -> bool {
        self.state().member
    }

    /// The node holds the CA key and can sign joiners' certificates.
    pub fn can_admit(&self) -> bool {
        self.state().ca_key_pem.is_some()
    }

    /// The cluster CA certificate, once known.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.state().ca.clone()
    }

    /// The CA key (PEM), when this node has it.
    pub fn ca_key_pem(&self) -> Option<String> {
        self.state().ca_key_pem.clone()
    }

    /// Operator-provided certificates are in use.
    pub fn operator_managed(&self) -> bool {
        self.inner.operator.is_some()
    }

    /// Re-reads the identity from disk (the operator's files or `<data>/tls`).
    pub fn reload(&self) -> Result<(), TrustError> {
        let (ca_bytes, cert_bytes, key_pem, ca_key, loaded) = match &self.inner.operator {
            Some(f) => {
                let read = |p: &Path| std::fs::read(p).map_err(|e| TrustError::io(p, e));
                (
                    Some(read(&f.ca_cert)?),
                    Some(read(&f.node_cert)?),
                    read(&f.node_key)?,
                    None,
                    vec![mtime(&f.ca_cert), mtime(&f.node_cert), mtime(&f.node_key)],
                )
            }
            None => {
                let d = &self.inner.dir;
                (
                    pki::read_optional(&d.join(CA_CERT))?,
                    pki::read_optional(&d.join(NODE_CERT))?,
                    self.inner.node_key_pem.clone().into_bytes(),
                    pki::read_optional(&d.join(CA_KEY))?
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Vec::new(),
                )
            }
        };
        let (Some(ca_bytes), Some(cert_bytes)) = (ca_bytes, cert_bytes) else {
            return Ok(()); // not joined yet: keep the provisional certificate
        };
        let ca = pki::cert_from_pem_or_der(&ca_bytes)?
            .into_iter()
            .next()
            .ok_or_else(|| TrustError::Pki("empty CA file".into()))?;
        let mut chain = pki::cert_from_pem_or_der(&cert_bytes)?;
        let Some(leaf) = chain.first() else {
            return Err(TrustError::Pki("empty node certificate file".into()));
        };
        match pki::node_id_of(leaf) {
            Some(id) if id == self.inner.node_id => {}
            other => {
                return Err(TrustError::Pki(format!(
                    "the node certificate names {:?}, but this node is `{}` (its subject common name must be the node id)",
                    other, self.inner.node_id
                )))
            }
        }
        if !chain.contains(&ca) {
            chain.push(ca.clone());
        }
        let key = certified(&self.inner.provider, chain, &key_pem)?;
        self.install_state(ca, ca_key, key, loaded)
    }

    fn install_state(
        &self,
        ca: CertificateDer<'static>,
        ca_key_pem: Option<String>,
        key: Arc<CertifiedKey>,
        loaded: Vec<Option<SystemTime>>,
    ) -> Result<(), TrustError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| TrustError::Pki(format!("cluster CA: {e}")))?;
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), self.inner.provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TrustError::Pki(format!("client verifier: {e}")))?;
        *self.inner.state.write() = Arc::new(State {
            ca: Some(ca),
            ca_key_pem,
            client_verifier: Some(client_verifier),
            key,
            member: true,
            loaded,
        });
        Ok(())
    }

    /// Creates the cluster CA (the node that forms a cluster, or a node running alone) and
    /// signs this node's certificate with it. Does nothing when the node already has one.
    pub fn create_ca(&self, cluster_name: &str) -> Result<(), TrustError> {
        if self.is_member() || self.operator_managed() {
            return Ok(());
        }
        let (ca, ca_key) = pki::new_ca(cluster_name)?;
        let csr = self.csr()?;
        let cert = pki::sign_node(&ca, &ca_key, &self.inner.node_id, &csr)?;
        tracing::info!(node = %self.inner.node_id, fingerprint = %pki::fingerprint(&ca), "created the cluster CA");
        self.install(&ca, Some(&ca_key), &cert)
    }

    /// A CSR for this node's key.
    pub fn csr(&self) -> Result<Vec<u8>, TrustError> {
        pki::csr(&self.inner.node_id, &self.inner.node_key_pem)
    }

    /// Stores what joining brought (CA, its key, this node's certificate) and switches to it.
    pub fn install(
        &self,
        ca: &CertificateDer<'_>,
        ca_key_pem: Option<&str>,
        node_cert: &CertificateDer<'_>,
    ) -> Result<(), TrustError> {
        if pki::node_id_of(node_cert).as_deref() != Some(self.inner.node_id.as_str()) {
            return Err(TrustError::Join(
                "the certificate received does not name this node".into(),
            ));
        }
        // Check the certificate chains to the CA before keeping either.
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| TrustError::Pki(format!("cluster CA: {e}")))?;
        let parsed = rustls::server::ParsedCertificate::try_from(node_cert)
            .map_err(|e| TrustError::Pki(format!("node certificate: {e}")))?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            UnixTime::now(),
            self.inner.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| {
            TrustError::Join(format!(
                "the certificate received is not signed by the CA received: {e}"
            ))
        })?;
        let d = &self.inner.dir;
        if let Some(k) = ca_key_pem {
            pki::write_private(&d.join(CA_KEY), k.as_bytes())?;
        }
        pki::write_private(&d.join(CA_CERT), pki::cert_pem(ca).as_bytes())?;
        pki::write_private(&d.join(NODE_CERT), pki::cert_pem(node_cert).as_bytes())?;
        self.reload()
    }

    /// Signs a joiner's certificate (this node must hold the CA key).
    pub fn sign(
        &self,
        node_id: &str,
        csr_der: &[u8],
    ) -> Result<CertificateDer<'static>, TrustError> {
        let st = self.state();
        let (Some(ca), Some(key)) = (&st.ca, &st.ca_key_pem) else {
            return Err(TrustError::Join(
                "this node does not hold the cluster CA key".into(),
            ));
        };
        pki::sign_node(ca, key, node_id, csr_der)
    }

    /// Watches operator files and reloads them when they change (no-op for the cluster CA).
    pub fn spawn_reload(&self, every: std::time::Duration) {
        let Some(files) = self.inner.operator.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now = vec![
                    mtime(&files.ca_cert),
                    mtime(&files.node_cert),
                    mtime(&files.node_key),
                ];
                if now != this.state().loaded {
                    match this.reload() {
                        Ok(()) => tracing::info!("reloaded the operator TLS certificates"),
                        Err(e) => {
                            tracing::warn!(error = %e, "the changed TLS certificate files do not load; keeping the previous ones")
                        }
                    }
                }
            }
        });
    }

    /// The RPC server's configuration: serves this node's certificate; a client certificate is
    /// optional at the TLS layer (CLI clients have none) but, when presented, must chain to the
    /// cluster CA. Services needing a node check the verified identity per call.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TrustError> {
        let mut cfg = ServerConfig::builder_with_provider(self.inner.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TrustError::Pki(e.to_string()))?
            .with_client_cert_verifier(Arc::new(DynClientVerifier(self.clone())))
            .with_cert_resolver(Arc::new(DynServerCert(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Configuration for calls to other nodes: their certificate must chain to the cluster CA
    /// and name a node; this node presents its own CA-signed certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TrustError> {
        let mut cfg = ClientConfig::builder_with_provider(self.inner.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TrustError::Pki(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(DynClientCert(self.clone())));
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The node id of a verified peer certificate (as presented in a completed handshake).
    pub fn peer_node(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
        certs.and_then(|c| c.first()).and_then(pki::node_id_of)
    }
}

/// Configuration for `Hello` and `Join` before this node can verify anyone: any server
/// certificate is accepted (the handshake signature is still checked) and none is presented.
/// Nothing learnt over it is trusted unless the token MAC checks.
pub fn join_client_config() -> Result<Arc<ClientConfig>, TrustError> {
    let p = provider();
    let mut cfg = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TrustError::Pki(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(p)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// How a CLI client recognises the cluster CA.
#[derive(Clone, Debug)]
pub enum CaSource {
    /// A CA certificate (PEM or DER bytes).
    Cert(Vec<u8>),
    /// SHA-256 of the CA certificate's DER (hex); the CA comes with the server's chain.
    Fingerprint(String),
}

/// Configuration for a client without a certificate (the CLI) that trusts the cluster CA.
pub fn ca_client_config(source: &CaSource) -> Result<Arc<ClientConfig>, TrustError> {
    let p = provider();
    let verifier = match source {
        CaSource::Cert(b) => {
            let ca = pki::cert_from_pem_or_der(b)?
                .into_iter()
                .next()
                .ok_or_else(|| TrustError::Pki("empty CA file".into()))?;
            CaVerifier {
                provider: p.clone(),
                ca: Some(ca),
                fingerprint: None,
            }
        }
        CaSource::Fingerprint(f) => {
            let f: String = f.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            if f.len() != 64 {
                return Err(TrustError::Pki(
                    "a CA fingerprint is the SHA-256 of the CA certificate: 64 hex digits".into(),
                ));
            }
            CaVerifier {
                provider: p.clone(),
                ca: None,
                fingerprint: Some(f.to_ascii_lowercase()),
            }
        }
    };
    let mut cfg = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TrustError::Pki(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// The handshake-signature half of every verifier here is rustls's own check with the ring
/// provider's algorithms; only certificate acceptance differs between them.
macro_rules! signature_checks {
    ($this:ident, $algs:expr) => {
        fn verify_tls12_signature(
            &$this,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &$algs)
        }

        fn verify_tls13_signature(
            &$this,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &$algs)
        }

        fn supported_verify_schemes(&$this) -> Vec<SignatureScheme> {
            $algs.supported_schemes()
        }
    };
}

fn verify_chain(
    provider: &CryptoProvider,
    ca: &CertificateDer<'_>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        now,
        provider.signature_verification_algorithms.all,
    )
}

#[derive(Debug)]
struct CaVerifier {
    provider: Arc<CryptoProvider>,
    ca: Option<CertificateDer<'static>>,
    fingerprint: Option<String>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = match (&self.ca, &self.fingerprint) {
            (Some(ca), _) => ca.clone(),
            (None, Some(f)) => intermediates
                .iter()
                .find(|c| pki::fingerprint(c) == *f)
                .map(|c| c.clone().into_owned())
                .ok_or_else(|| {
                    rustls::Error::General(
                        "the server's CA does not have the expected fingerprint".into(),
                    )
                })?,
            (None, None) => return Err(rustls::Error::General("no CA to verify with".into())),
        };
        verify_chain(&self.provider, &ca, end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!(self, self.provider.signature_verification_algorithms);
}

/// Server certificates of peers must chain to the current cluster CA and name a node.
#[derive(Debug)]
struct ClusterServerVerifier(Trust);

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = self.0.ca() else {
            return Err(rustls::Error::General(
                "this node has not joined a cluster yet (no cluster CA)".into(),
            ));
        };
        verify_chain(&self.0.inner.provider, &ca, end_entity, intermediates, now)?;
        if pki::node_id_of(end_entity).is_none() {
            return Err(rustls::Error::General(
                "the peer certificate names no node".into(),
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!(
        self,
        self.0.inner.provider.signature_verification_algorithms
    );
}

/// Accepts any server certificate (used only for the token-authenticated join calls).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!(self, self.0.signature_verification_algorithms);
}

/// Client certificates: optional; when presented, checked against the current cluster CA.
#[derive(Debug)]
struct DynClientVerifier(Trust);

impl ClientCertVerifier for DynClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.state().client_verifier.clone() {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "this node has no cluster CA yet: client certificates cannot be verified".into(),
            )),
        }
    }

    signature_checks!(
        self,
        self.0.inner.provider.signature_verification_algorithms
    );
}

#[derive(Debug)]
struct DynServerCert(Trust);

impl ResolvesServerCert for DynServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.state().key.clone())
    }
}

#[derive(Debug)]
struct DynClientCert(Trust);

impl ResolvesClientCert for DynClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let st = self.0.state();
        st.member.then(|| st.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
