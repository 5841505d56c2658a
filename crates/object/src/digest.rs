//! One-pass digests over a request body: MD5 (ETag), the optional S3 checksum, and BLAKE3 per
//! chunk (content address).

use base64::Engine as _;
use md5::{Digest as _, Md5};

use cairn_meta::model::ChecksumAlgo;

/// An S3 checksum being computed.
pub enum ChecksumHasher {
    Crc(crc_fast::Digest, ChecksumAlgo),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl ChecksumHasher {
    pub fn new(algo: ChecksumAlgo) -> Self {
        use crc_fast::CrcAlgorithm;
        match algo {
            ChecksumAlgo::Crc32 => {
                Self::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32IsoHdlc), algo)
            }
            ChecksumAlgo::Crc32c => {
                Self::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi), algo)
            }
            ChecksumAlgo::Crc64Nvme => {
                Self::Crc(crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme), algo)
            }
            ChecksumAlgo::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgo::Sha256 => Self::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc(d, _) => d.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
        }
    }

    /// The base64 value S3 clients expect (big-endian for CRCs).
    pub fn finish(self) -> (ChecksumAlgo, String) {
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            Self::Crc(d, algo) => {
                let v = d.finalize();
                let s = if algo == ChecksumAlgo::Crc64Nvme {
                    b64.encode(v.to_be_bytes())
                } else {
                    b64.encode((v as u32).to_be_bytes())
                };
                (algo, s)
            }
            Self::Sha1(h) => (ChecksumAlgo::Sha1, b64.encode(h.finalize())),
            Self::Sha256(h) => (ChecksumAlgo::Sha256, b64.encode(h.finalize())),
        }
    }
}

/// MD5 + optional checksum over the whole body.
pub struct BodyDigest {
    md5: Md5,
    checksum: Option<ChecksumHasher>,
    pub size: u64,
}

impl BodyDigest {
    pub fn new(algo: Option<ChecksumAlgo>) -> Self {
        Self {
            md5: Md5::new(),
            checksum: algo.map(ChecksumHasher::new),
            size: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
        self.size += data.len() as u64;
    }

    pub fn finish(self) -> crate::Digests {
        let mut md5 = [0u8; 16];
        md5.copy_from_slice(&self.md5.finalize());
        crate::Digests {
            size: self.size,
            md5,
            checksum: self.checksum.map(ChecksumHasher::finish),
        }
    }
}

/// `hex(md5(md5_1 || ... || md5_n))-n`, the multipart ETag.
pub fn multipart_etag(part_etags: &[String]) -> Option<String> {
    let mut h = Md5::new();
    for e in part_etags {
        let mut b = [0u8; 16];
        hex::decode_to_slice(e, &mut b).ok()?;
        h.update(b);
    }
    Some(format!(
        "{}-{}",
        hex::encode(h.finalize()),
        part_etags.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_checksums() {
        // Values from the AWS documentation / standard test vectors for "hello world".
        let mut d = BodyDigest::new(Some(ChecksumAlgo::Crc32));
        d.update(b"hello ");
        d.update(b"world");
        let out = d.finish();
        assert_eq!(hex::encode(out.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(out.checksum.unwrap().1, "DUoRhQ==");
        let mut c = ChecksumHasher::new(ChecksumAlgo::Crc32c);
        c.update(b"hello world");
        assert_eq!(c.finish().1, "yZRlqg==");
        let mut s = ChecksumHasher::new(ChecksumAlgo::Sha256);
        s.update(b"hello world");
        assert_eq!(s.finish().1, "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=");
    }

    #[test]
    fn multipart_etag_format() {
        let e = multipart_etag(&[
            "5eb63bbbe01eeed093cb22bb8f5acdc3".into(),
            "5eb63bbbe01eeed093cb22bb8f5acdc3".into(),
        ])
        .unwrap();
        assert!(e.ends_with("-2"));
        assert_eq!(e.len(), 34);
        assert!(multipart_etag(&["zz".into()]).is_none());
    }
}
