//! Certificates: the cluster CA, node certificates (the node id is the subject common name),
//! the provisional self-signed certificate a node serves before it has joined, and the files
//! under `<data>/tls/` (directory 0700, files 0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};

use crate::TrustError;

/// DNS name every node certificate carries (peers are dialled by address, so this is only a
/// marker; identity is the subject common name).
pub const NODE_SAN: &str = "cairn-node";

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.pem";
pub const NODE_KEY: &str = "node.key";

fn err(what: &str, e: impl std::fmt::Display) -> TrustError {
    TrustError::Pki(format!("{what}: {e}"))
}

/// `<data>/tls`, created 0700.
pub fn tls_dir(data: &Path) -> Result<PathBuf, TrustError> {
    let dir = data.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| TrustError::io(&dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TrustError::io(&dir, e))?;
    }
    Ok(dir)
}

/// Writes `bytes` to `path` with mode 0600 (temporary file + rename, so a crash never leaves a
/// half-written key).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| TrustError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| TrustError::io(&tmp, e))?;
    f.sync_all().map_err(|e| TrustError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrustError::io(path, e))
}

/// Reads a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TrustError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrustError::io(path, e)),
    }
}

/// A new cluster CA: (certificate DER, key PEM).
pub fn new_ca(cluster_name: &str) -> Result<(CertificateDer<'static>, String), TrustError> {
    let key = KeyPair::generate().map_err(|e| err("generating the CA key", e))?;
    let params = ca_params(cluster_name);
    let cert = params
        .self_signed(&key)
        .map_err(|e| err("signing the CA", e))?;
    Ok((cert.der().clone(), key.serialize_pem()))
}

fn ca_params(cluster_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("cairn cluster CA ({cluster_name})"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn node_params(node_id: &str) -> Result<CertificateParams, TrustError> {
    let mut params = CertificateParams::new(vec![NODE_SAN.to_string()])
        .map_err(|e| err("node certificate parameters", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A new node key pair (PEM).
pub fn new_node_key() -> Result<String, TrustError> {
    Ok(KeyPair::generate()
        .map_err(|e| err("generating the node key", e))?
        .serialize_pem())
}

/// A certificate signing request for `key_pem` (DER).
pub fn csr(node_id: &str, key_pem: &str) -> Result<Vec<u8>, TrustError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| err("node key", e))?;
    // Only the key matters to the CA (it decides the names and extensions), so the request
    // stays minimal: some extensions cannot be expressed in a CSR.
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_id);
    params.distinguished_name = dn;
    let req = params
        .serialize_request(&key)
        .map_err(|e| err("building the CSR", e))?;
    Ok(req.der().to_vec())
}

/// Signs a node certificate for `node_id` over the public key of `csr_der`. The request's own
/// names and extensions are ignored: the CA decides what the certificate says.
pub fn sign_node(
    ca_cert: &CertificateDer<'_>,
    ca_key_pem: &str,
    node_id: &str,
    csr_der: &[u8],
) -> Result<CertificateDer<'static>, TrustError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| err("CA key", e))?;
    let issuer = Issuer::from_ca_cert_der(ca_cert, ca_key).map_err(|e| err("CA certificate", e))?;
    let req = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
        csr_der.to_vec(),
    ))
    .map_err(|e| err("certificate signing request", e))?;
    let cert = node_params(node_id)?
        .signed_by(&req.public_key, &issuer)
        .map_err(|e| err("signing the node certificate", e))?;
    Ok(cert.der().clone())
}

/// A self-signed certificate for `key_pem`, served until the node has joined. Nobody trusts it
/// for anything: it only encrypts the token-authenticated Hello and Join calls.
pub fn provisional(node_id: &str, key_pem: &str) -> Result<CertificateDer<'static>, TrustError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| err("node key", e))?;
    let mut params = node_params(node_id)?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cairn provisional");
    let cert = params
        .self_signed(&key)
        .map_err(|e| err("self-signing", e))?;
    Ok(cert.der().clone())
}

/// The node id a certificate names (its subject common name).
pub fn node_id_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = x509.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// The first certificate in a PEM text (or the bytes themselves when they are DER).
pub fn cert_from_pem_or_der(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    use rustls::pki_types::pem::PemObject;
    if bytes.starts_with(b"-----") {
        let certs = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("PEM certificate", e))?;
        if certs.is_empty() {
            return Err(TrustError::Pki("no certificate in the PEM text".into()));
        }
        Ok(certs)
    } else {
        Ok(vec![CertificateDer::from(bytes.to_vec())])
    }
}

/// A private key from PEM.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TrustError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| err("PEM private key", e))
}

/// PEM text of a certificate.
pub fn cert_pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine;
    use std::fmt::Write;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(line));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// SHA-256 of a certificate's DER, lower-case hex (what `--ca-fingerprint` takes).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(cert.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_signs_node_certificates_naming_the_node() {
        let (ca, ca_key) = new_ca("test").unwrap();
        let key = new_node_key().unwrap();
        let req = csr("node-a", &key).unwrap();
        let cert = sign_node(&ca, &ca_key, "node-a", &req).unwrap();
        assert_eq!(node_id_of(&cert).as_deref(), Some("node-a"));
        let pem = cert_pem(&cert);
        assert_eq!(cert_from_pem_or_der(pem.as_bytes()).unwrap()[0], cert);
        assert_eq!(fingerprint(&ca).len(), 64);
        // A garbage request is refused, not signed.
        assert!(sign_node(&ca, &ca_key, "node-a", b"not a csr").is_err());
    }
}
