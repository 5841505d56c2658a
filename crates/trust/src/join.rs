//! The join proof. Both sides know the join token; neither sends it. Every message of `Hello`
//! and `Join` carries a BLAKE3 MAC keyed by a key derived from the token, over a transcript that
//! includes fresh nonces from the side that checks it, so a captured message is useless for
//! another exchange. The cluster secrets a joiner receives are sealed (ChaCha20-Poly1305) under
//! a key derived from the token and both nonces.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use parking_lot::Mutex;
use rand::RngCore;

use crate::TrustError;

/// Length of every nonce.
pub const NONCE_LEN: usize = 32;

/// How far a greeting's clock may be from ours.
pub const HELLO_SKEW: Duration = Duration::from_secs(300);

/// A fresh random nonce.
pub fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut n);
    n
}

/// The token-derived MAC key.
#[derive(Clone)]
pub struct JoinKey([u8; 32]);

impl std::fmt::Debug for JoinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinKey(..)")
    }
}

impl JoinKey {
    pub fn new(token: &str) -> Self {
        Self(blake3::derive_key(
            "cairn 2026 join proof v1",
            token.as_bytes(),
        ))
    }

    /// MAC over a transcript of length-prefixed fields; `label` separates the message kinds so
    /// one kind's MAC never checks as another's.
    pub fn mac(&self, label: &str, fields: &[&[u8]]) -> Vec<u8> {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        for f in std::iter::once(label.as_bytes()).chain(fields.iter().copied()) {
            h.update(&(f.len() as u64).to_be_bytes());
            h.update(f);
        }
        h.finalize().as_bytes().to_vec()
    }

    /// Checks a MAC in constant time.
    pub fn verify(&self, label: &str, fields: &[&[u8]], mac: &[u8]) -> bool {
        let Ok(got) = <[u8; 32]>::try_from(mac) else {
            return false;
        };
        let want = self.mac(label, fields);
        let Ok(want) = <[u8; 32]>::try_from(want.as_slice()) else {
            return false;
        };
        blake3::Hash::from(want) == blake3::Hash::from(got)
    }

    fn seal_key(&self, client_nonce: &[u8], server_nonce: &[u8], node_id: &str) -> [u8; 32] {
        let k = self.mac("seal", &[client_nonce, server_nonce, node_id.as_bytes()]);
        let mut out = [0u8; 32];
        out.copy_from_slice(&k);
        out
    }

    /// Seals `plain` for one join. The key is unique to the nonces, so a fixed AEAD nonce is
    /// safe.
    pub fn seal(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        node_id: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, TrustError> {
        let cipher =
            ChaCha20Poly1305::new(&self.seal_key(client_nonce, server_nonce, node_id).into());
        cipher
            .encrypt(&[0u8; 12].into(), plain)
            .map_err(|_| TrustError::Join("sealing the cluster secrets failed".into()))
    }

    pub fn open(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        node_id: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, TrustError> {
        let cipher =
            ChaCha20Poly1305::new(&self.seal_key(client_nonce, server_nonce, node_id).into());
        cipher.decrypt(&[0u8; 12].into(), sealed).map_err(|_| {
            TrustError::Join("the cluster secrets do not open with this join token".into())
        })
    }
}

/// The join keys a node checks proofs with: its primary token's (the only one it proves with)
/// and those of `CLUSTER_JOIN_TOKEN_ACCEPT`, so a token can be rotated with rolling restarts.
#[derive(Clone, Debug)]
pub struct JoinKeyring {
    primary: JoinKey,
    accepted: Vec<JoinKey>,
}

impl JoinKeyring {
    pub fn new(primary: &str, accepted: &[String]) -> Self {
        Self {
            primary: JoinKey::new(primary),
            accepted: accepted.iter().map(|t| JoinKey::new(t)).collect(),
        }
    }

    /// The key this node proves with.
    pub fn primary(&self) -> &JoinKey {
        &self.primary
    }

    fn keys(&self) -> impl Iterator<Item = &JoinKey> {
        std::iter::once(&self.primary).chain(&self.accepted)
    }

    /// The key (primary first) under which `mac` checks, if any. Answers to a proof are made
    /// with that key, so the other side can check them whatever its own accepted tokens.
    pub fn verify(&self, label: &str, fields: &[&[u8]], mac: &[u8]) -> Option<&JoinKey> {
        self.keys().find(|k| k.verify(label, fields, mac))
    }

    /// Opens sealed cluster secrets under whichever key they were sealed with.
    pub fn open(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        node_id: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, TrustError> {
        let mut last = None;
        for k in self.keys() {
            match k.open(client_nonce, server_nonce, node_id, sealed) {
                Ok(plain) => return Ok(plain),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| TrustError::Join("no join key".into())))
    }
}

/// Nonces handed out or seen recently, each usable once. Bounded: when full, expired entries
/// are dropped first and a new nonce is refused rather than growing without limit.
pub struct NonceBook {
    ttl: Duration,
    cap: usize,
    entries: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl NonceBook {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn make_room(&self, map: &mut HashMap<Vec<u8>, Instant>) -> bool {
        if map.len() >= self.cap {
            let now = Instant::now();
            map.retain(|_, t| now.duration_since(*t) < self.ttl);
        }
        map.len() < self.cap
    }

    /// Issues a server nonce (None when too many are outstanding).
    pub fn issue(&self) -> Option<Vec<u8>> {
        let mut map = self.entries.lock();
        if !self.make_room(&mut map) {
            return None;
        }
        let n = nonce();
        map.insert(n.clone(), Instant::now());
        Some(n)
    }

    /// Takes an issued nonce: true once, if it was issued within the TTL.
    pub fn take(&self, n: &[u8]) -> bool {
        self.entries
            .lock()
            .remove(n)
            .is_some_and(|t| t.elapsed() < self.ttl)
    }

    /// Records a nonce the other side chose: false if it was seen within the TTL (a replay)
    /// or the book is full.
    pub fn first_sight(&self, n: &[u8]) -> bool {
        let mut map = self.entries.lock();
        if let Some(t) = map.get(n) {
            if t.elapsed() < self.ttl {
                return false;
            }
        }
        if !self.make_room(&mut map) {
            return false;
        }
        map.insert(n.to_vec(), Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_depends_on_token_label_and_every_field() {
        let k = JoinKey::new("t1");
        let m = k.mac("join", &[b"a", b"bc"]);
        assert!(k.verify("join", &[b"a", b"bc"], &m));
        assert!(!k.verify("hello", &[b"a", b"bc"], &m));
        // Length prefixes: moving a byte between fields changes the MAC.
        assert!(!k.verify("join", &[b"ab", b"c"], &m));
        assert!(!JoinKey::new("t2").verify("join", &[b"a", b"bc"], &m));
        assert!(!k.verify("join", &[b"a", b"bc"], &m[..31]));
    }

    #[test]
    fn sealed_secrets_open_only_for_the_same_join() {
        let k = JoinKey::new("t1");
        let (c, s) = (nonce(), nonce());
        let sealed = k.seal(&c, &s, "n1", b"secret").unwrap();
        assert_eq!(k.open(&c, &s, "n1", &sealed).unwrap(), b"secret");
        assert!(k.open(&c, &nonce(), "n1", &sealed).is_err());
        assert!(k.open(&c, &s, "n2", &sealed).is_err());
        assert!(JoinKey::new("t2").open(&c, &s, "n1", &sealed).is_err());
    }

    #[test]
    fn keyring_accepts_primary_and_accepted_tokens_only() {
        let ring = JoinKeyring::new("new", &["old".to_string()]);
        let fields: &[&[u8]] = &[b"a", b"b"];
        for token in ["new", "old"] {
            let mac = JoinKey::new(token).mac("hello", fields);
            let k = ring.verify("hello", fields, &mac).expect(token);
            // The key that checked is the one the answer is made with.
            assert_eq!(k.mac("hello", fields), mac);
        }
        let stranger = JoinKey::new("other").mac("hello", fields);
        assert!(ring.verify("hello", fields, &stranger).is_none());
        // It proves with the primary only.
        assert_eq!(
            ring.primary().mac("hello", fields),
            JoinKey::new("new").mac("hello", fields)
        );
        let (c, s) = (nonce(), nonce());
        let sealed = JoinKey::new("old").seal(&c, &s, "n1", b"secret").unwrap();
        assert_eq!(ring.open(&c, &s, "n1", &sealed).unwrap(), b"secret");
        let sealed = JoinKey::new("other").seal(&c, &s, "n1", b"secret").unwrap();
        assert!(ring.open(&c, &s, "n1", &sealed).is_err());
        // Without accepted tokens only the primary checks.
        let alone = JoinKeyring::new("new", &[]);
        let mac = JoinKey::new("old").mac("hello", fields);
        assert!(alone.verify("hello", fields, &mac).is_none());
    }

    #[test]
    fn nonces_are_single_use_and_bounded() {
        let book = NonceBook::new(Duration::from_secs(60), 2);
        let a = book.issue().unwrap();
        assert!(book.take(&a));
        assert!(!book.take(&a));
        assert!(!book.take(&nonce()));
        let seen = nonce();
        assert!(book.first_sight(&seen));
        assert!(!book.first_sight(&seen));
        book.issue().unwrap();
        assert!(book.issue().is_none(), "a full book refuses new nonces");
    }
}
