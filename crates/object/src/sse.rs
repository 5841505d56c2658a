//! Server-side encryption of object bodies, applied before chunking.
//!
//! Every object gets a fresh random 256-bit data key. Its plaintext is cut into segments of
//! `SEGMENT_SIZE` bytes, each sealed with ChaCha20-Poly1305 (the `chacha20poly1305` crate):
//! the nonce is the segment index, unique because the key is used by one object only, and the
//! associated data carries the index and a final-segment flag, so reordered, dropped or
//! truncated segments fail to open. An empty object is one empty final segment.
//!
//! The data key is wrapped (sealed with a random nonce) by a key-encryption key: for SSE-S3
//! the cluster's SSE key, derived from the master key; for SSE-C a key derived from the
//! customer's key, which is never stored — opening the wrapped key is the check that a GET
//! brought the right one.
//!
//! A multipart upload has one data key (wrapped on its upload record); each uploaded part is
//! sealed as its own segment stream under a *part key* derived from the data key and a fresh
//! random 128-bit salt (`DataKey::for_part`). The nonce stays the segment index within the
//! part, so (key, nonce) pairs never repeat: two parts — or two uploads of the same part
//! number, or a part and its replacement — have different salts and hence different keys,
//! and within one part the index is unique. The completed object keeps the salts in order,
//! which also binds each part's segments to their place (a part moved elsewhere opens with the
//! wrong key and fails authentication).
//!
//! Because chunks hold ciphertext under per-object keys, equal plaintexts in two objects give
//! different chunks: content addressing never reveals equality across encrypted objects.

use bytes::{Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Plaintext bytes per sealed segment.
pub const SEGMENT_SIZE: u32 = 64 * 1024;
/// Bytes a seal adds to a segment (the Poly1305 tag).
pub const TAG_LEN: u64 = 16;
const SEGMENT_AAD: &[u8] = b"cairn sse segment v1";
const WRAP_AAD: &[u8] = b"cairn sse data key v1";
const PART_CONTEXT: &str = "cairn 2026 sse part key v1";
/// Bytes of a part's salt.
pub const SALT_LEN: usize = 16;
/// Context of the SSE-S3 key derived from the cluster master key.
pub const SSE_S3_CONTEXT: &str = "cairn 2026 sse-s3 wrapping key v1";
const CUSTOMER_CONTEXT: &str = "cairn 2026 sse-c wrapping key v1";

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("the data key cannot be unwrapped with this key")]
    WrongKey,
    #[error("encrypted segment {0} fails authentication (tampered, reordered or truncated)")]
    Tampered(u64),
    #[error("sealing failed")]
    Seal,
}

/// A per-object data key.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(ChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The key of one uploaded part: BLAKE3 key derivation from this (upload) data key and the
    /// part's random salt (see the module comment for why nonces then never repeat).
    pub fn for_part(&self, salt: &[u8]) -> DataKey {
        let mut h = blake3::Hasher::new_derive_key(PART_CONTEXT);
        h.update(&self.0);
        h.update(salt);
        DataKey(*h.finalize().as_bytes())
    }

    /// Raw key bytes, for keys that are themselves wrapping keys (the key store's keys).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from raw bytes (a key-store key opened from its record).
    pub fn from_bytes(k: [u8; 32]) -> Self {
        Self(k)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// A short digest keyed by the data key: lets an ETag vary with the content without
    /// revealing the plaintext's MD5 (what S3 does for SSE-C objects).
    pub fn tag(&self, data: &[u8]) -> [u8; 16] {
        let h = blake3::keyed_hash(&self.0, data);
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.as_bytes()[..16]);
        out
    }
}

/// Context of the key that wraps the key store's keys (SSE-KMS), derived from the SSE-S3
/// key (itself derived from the cluster master key).
const KMS_STORE_CONTEXT: &str = "cairn 2026 kms key store wrapping v1";

fn kms_store_kek(sse_s3_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(KMS_STORE_CONTEXT, sse_s3_key)
}

fn kms_aad(name: &str) -> Vec<u8> {
    format!("cairn kms key v1\0{name}").into_bytes()
}

/// Key material for a new key-store key named `name`: a fresh random 256-bit key, wrapped
/// (bound to its name) so it can be proposed to the cluster without revealing it.
pub fn new_kms_key(sse_s3_key: &[u8; 32], name: &str) -> Result<Vec<u8>, SseError> {
    wrap_with(
        &kms_store_kek(sse_s3_key),
        &DataKey::generate(),
        &kms_aad(name),
    )
}

/// Opens the key-store key `name` from its wrapped material.
pub fn open_kms_key(
    sse_s3_key: &[u8; 32],
    name: &str,
    wrapped: &[u8],
) -> Result<DataKey, SseError> {
    unwrap_with(&kms_store_kek(sse_s3_key), wrapped, &kms_aad(name))
}

/// A fresh random salt for a part key.
pub fn new_salt() -> Vec<u8> {
    let k = ChaCha20Poly1305::generate_key(&mut OsRng);
    k[..SALT_LEN].to_vec()
}

/// The key-encryption key of an SSE-C object, derived from the customer's key.
pub fn customer_kek(customer_key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(CUSTOMER_CONTEXT, customer_key)
}

/// Wraps `dk` with `kek`: 12-byte random nonce followed by the sealed key.
pub fn wrap(kek: &[u8; 32], dk: &DataKey) -> Result<Vec<u8>, SseError> {
    wrap_with(kek, dk, WRAP_AAD)
}

/// Unwraps a data key; `WrongKey` when `kek` is not the one it was wrapped with.
pub fn unwrap(kek: &[u8; 32], wrapped: &[u8]) -> Result<DataKey, SseError> {
    unwrap_with(kek, wrapped, WRAP_AAD)
}

/// `wrap` with other associated data (e.g. a key-store key bound to its name).
pub fn wrap_with(kek: &[u8; 32], dk: &DataKey, aad: &[u8]) -> Result<Vec<u8>, SseError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: &dk.0, aad })
        .map_err(|_| SseError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// `unwrap` with other associated data (see `wrap_with`).
pub fn unwrap_with(kek: &[u8; 32], wrapped: &[u8], aad: &[u8]) -> Result<DataKey, SseError> {
    if wrapped.len() != 12 + 32 + TAG_LEN as usize {
        return Err(SseError::WrongKey);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek));
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&wrapped[..12]),
            Payload {
                msg: &wrapped[12..],
                aad,
            },
        )
        .map_err(|_| SseError::WrongKey)?;
    let mut k = [0u8; 32];
    if plain.len() != 32 {
        return Err(SseError::WrongKey);
    }
    k.copy_from_slice(&plain);
    Ok(DataKey(k))
}

fn nonce(index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n
}

fn aad(index: u64, last: bool) -> Vec<u8> {
    let mut a = SEGMENT_AAD.to_vec();
    a.extend_from_slice(&index.to_be_bytes());
    a.push(u8::from(last));
    a
}

fn seal_segment(
    cipher: &ChaCha20Poly1305,
    index: u64,
    last: bool,
    plain: &[u8],
) -> Result<Vec<u8>, SseError> {
    cipher
        .encrypt(
            Nonce::from_slice(&nonce(index)),
            Payload {
                msg: plain,
                aad: &aad(index, last),
            },
        )
        .map_err(|_| SseError::Seal)
}

/// Opens sealed segment `index` (`last`: whether it is the object's final segment).
pub fn open_segment(
    dk: &DataKey,
    index: u64,
    last: bool,
    sealed: &[u8],
) -> Result<Vec<u8>, SseError> {
    dk.cipher()
        .decrypt(
            Nonce::from_slice(&nonce(index)),
            Payload {
                msg: sealed,
                aad: &aad(index, last),
            },
        )
        .map_err(|_| SseError::Tampered(index))
}

/// Seals a plaintext stream segment by segment. A full segment is held back until more
/// plaintext arrives, since only then is it known not to be the final one.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
    segment: usize,
    buf: BytesMut,
    index: u64,
}

impl Sealer {
    pub fn new(dk: &DataKey, segment_size: u32) -> Self {
        Self {
            cipher: dk.cipher(),
            segment: segment_size.max(1) as usize,
            buf: BytesMut::new(),
            index: 0,
        }
    }

    /// Takes plaintext; returns the sealed segments now complete (possibly none).
    pub fn push(&mut self, piece: &[u8]) -> Result<Bytes, SseError> {
        self.buf.extend_from_slice(piece);
        let mut out = Vec::new();
        while self.buf.len() > self.segment {
            let plain = self.buf.split_to(self.segment);
            out.extend_from_slice(&seal_segment(&self.cipher, self.index, false, &plain)?);
            self.index += 1;
        }
        Ok(Bytes::from(out))
    }

    /// Seals what remains as the final segment.
    pub fn finish(&mut self) -> Result<Bytes, SseError> {
        let plain = self.buf.split();
        let sealed = seal_segment(&self.cipher, self.index, true, &plain)?;
        self.index += 1;
        Ok(Bytes::from(sealed))
    }
}

/// Where plaintext bytes live among the sealed segments of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext size.
    pub size: u64,
    pub segment: u64,
}

/// The segments covering a plaintext range and their place in the sealed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    /// Inclusive.
    pub last: u64,
    /// Sealed byte range `[sealed_start, sealed_end)`.
    pub sealed_start: u64,
    pub sealed_end: u64,
    /// Plaintext bytes to drop from the first opened segment.
    pub skip: u64,
}

impl Layout {
    pub fn new(size: u64, segment_size: u32) -> Self {
        Self {
            size,
            segment: u64::from(segment_size.max(1)),
        }
    }

    /// Number of segments (an empty object has one, empty).
    pub fn segments(&self) -> u64 {
        self.size.div_ceil(self.segment).max(1)
    }

    /// Total sealed size.
    pub fn sealed_size(&self) -> u64 {
        self.size + self.segments() * TAG_LEN
    }

    /// Sealed length of segment `i`.
    pub fn sealed_len(&self, i: u64) -> u64 {
        let n = self.segments();
        if i + 1 < n {
            self.segment + TAG_LEN
        } else {
            self.size - (n - 1) * self.segment + TAG_LEN
        }
    }

    /// The segments holding plaintext `[start, end)`; requires `start < end <= size`.
    pub fn span(&self, start: u64, end: u64) -> Span {
        let first = start / self.segment;
        let last = (end - 1) / self.segment;
        let sealed_start = first * (self.segment + TAG_LEN);
        let sealed_end =
            (last * (self.segment + TAG_LEN) + self.sealed_len(last)).min(self.sealed_size());
        Span {
            first,
            last,
            sealed_start,
            sealed_end,
            skip: start - first * self.segment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seal_all(dk: &DataKey, seg: u32, plain: &[u8], piece: usize) -> Vec<u8> {
        let mut s = Sealer::new(dk, seg);
        let mut out = Vec::new();
        for p in plain.chunks(piece.max(1)) {
            out.extend_from_slice(&s.push(p).unwrap());
        }
        out.extend_from_slice(&s.finish().unwrap());
        out
    }

    fn open_range(
        dk: &DataKey,
        seg: u32,
        size: u64,
        sealed: &[u8],
        start: u64,
        end: u64,
    ) -> Vec<u8> {
        let l = Layout::new(size, seg);
        let sp = l.span(start, end);
        let mut pos = sp.sealed_start as usize;
        let mut out = Vec::new();
        for i in sp.first..=sp.last {
            let n = l.sealed_len(i) as usize;
            let p = open_segment(dk, i, i + 1 == l.segments(), &sealed[pos..pos + n]).unwrap();
            out.extend_from_slice(&p);
            pos += n;
        }
        assert_eq!(pos as u64, sp.sealed_end);
        out[sp.skip as usize..sp.skip as usize + (end - start) as usize].to_vec()
    }

    #[test]
    fn round_trip_and_sizes() {
        let dk = DataKey::generate();
        for size in [0usize, 1, 15, 16, 17, 32, 100] {
            let plain: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let sealed = seal_all(&dk, 16, &plain, 7);
            let l = Layout::new(size as u64, 16);
            assert_eq!(sealed.len() as u64, l.sealed_size(), "size {size}");
            if size > 0 {
                assert_eq!(
                    open_range(&dk, 16, size as u64, &sealed, 0, size as u64),
                    plain
                );
            }
        }
    }

    #[test]
    fn tamper_truncation_and_reorder_are_detected() {
        let dk = DataKey::generate();
        let plain = vec![7u8; 40];
        let sealed = seal_all(&dk, 16, &plain, 40);
        let s = 16 + TAG_LEN as usize;
        // A flipped bit.
        let mut bad = sealed.clone();
        bad[3] ^= 1;
        assert_eq!(
            open_segment(&dk, 0, false, &bad[..s]),
            Err(SseError::Tampered(0))
        );
        // Truncation: segment 1 presented as the final one.
        assert!(open_segment(&dk, 1, true, &sealed[s..2 * s]).is_err());
        assert!(open_segment(&dk, 1, false, &sealed[s..2 * s]).is_ok());
        // Reordering: segment 1 at index 0.
        assert!(open_segment(&dk, 0, false, &sealed[s..2 * s]).is_err());
        // Another key.
        assert!(open_segment(&DataKey::generate(), 0, false, &sealed[..s]).is_err());
    }

    #[test]
    fn key_wrapping() {
        let kek = [1u8; 32];
        let dk = DataKey::generate();
        let w = wrap(&kek, &dk).unwrap();
        assert_eq!(unwrap(&kek, &w).unwrap().0, dk.0);
        assert_eq!(unwrap(&[2u8; 32], &w).unwrap_err(), SseError::WrongKey);
        assert_eq!(unwrap(&kek, &w[1..]).unwrap_err(), SseError::WrongKey);
        let ck = customer_kek(&[3u8; 32]);
        assert_ne!(ck, [3u8; 32]);
    }

    #[test]
    fn equal_plaintexts_seal_differently() {
        let plain = b"same bytes".to_vec();
        let a = seal_all(&DataKey::generate(), 16, &plain, 3);
        let b = seal_all(&DataKey::generate(), 16, &plain, 3);
        assert_ne!(a, b);
    }

    #[test]
    fn part_keys_differ_per_salt_and_never_share_a_keystream() {
        let dk = DataKey::generate();
        let (s1, s2) = (new_salt(), new_salt());
        assert_eq!(s1.len(), SALT_LEN);
        assert_ne!(s1, s2);
        // Same data key and salt: the same part key (reads re-derive it).
        assert_eq!(dk.for_part(&s1).0, dk.for_part(&s1).0);
        assert_ne!(dk.for_part(&s1).0, dk.for_part(&s2).0);
        assert_ne!(dk.for_part(&s1).0, dk.0);
        // Two parts (or a part and its re-upload under the same number) with equal
        // plaintext: segment 0 of each uses nonce 0, but under different keys, so the
        // ciphertexts (hence the keystreams) differ.
        let plain = vec![0u8; 40];
        let a = seal_all(&dk.for_part(&s1), 16, &plain, 40);
        let b = seal_all(&dk.for_part(&s2), 16, &plain, 40);
        assert_ne!(a[..16], b[..16]);
        // A part's segments do not open under another part's key (moved parts fail).
        let s = 16 + TAG_LEN as usize;
        assert!(open_segment(&dk.for_part(&s2), 0, false, &a[..s]).is_err());
        assert!(open_segment(&dk.for_part(&s1), 0, false, &a[..s]).is_ok());
    }

    #[test]
    fn wrapping_binds_the_associated_data() {
        let kek = [4u8; 32];
        let dk = DataKey::generate();
        let w = wrap_with(&kek, &dk, b"key a").unwrap();
        assert_eq!(unwrap_with(&kek, &w, b"key a").unwrap().0, dk.0);
        assert!(unwrap_with(&kek, &w, b"key b").is_err());
        assert!(unwrap(&kek, &w).is_err());
    }

    #[test]
    fn kms_keys_open_only_under_their_name_and_cluster() {
        let cluster = [5u8; 32];
        let w = new_kms_key(&cluster, "app").unwrap();
        let k = open_kms_key(&cluster, "app", &w).unwrap();
        assert_eq!(open_kms_key(&cluster, "app", &w).unwrap().0, k.0);
        assert!(open_kms_key(&cluster, "other", &w).is_err());
        assert!(open_kms_key(&[6u8; 32], "app", &w).is_err());
        // Two keys of one name are different keys.
        let w2 = new_kms_key(&cluster, "app").unwrap();
        assert_ne!(open_kms_key(&cluster, "app", &w2).unwrap().0, k.0);
    }

    proptest! {
        #[test]
        fn any_range_opens_to_the_right_bytes(size in 1u64..200, seg in 1u32..40, a in 0u64..200, b in 0u64..200, piece in 1usize..50) {
            let (start, end) = (a.min(b) % size, (a.max(b) % size) + 1);
            prop_assume!(start < end);
            let dk = DataKey::generate();
            let plain: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let sealed = seal_all(&dk, seg, &plain, piece);
            let got = open_range(&dk, seg, size, &sealed, start, end);
            prop_assert_eq!(got, plain[start as usize..end as usize].to_vec());
        }
    }
}
