//! Deterministic, per-key object contents.
//!
//! The bytes of an object are the BLAKE3 XOF output of a hasher in
//! key-derivation mode, fed with the object key. Every object is therefore
//! unique and incompressible (no dedup or compression can flatter the
//! numbers), and a GET can be verified without keeping a copy of what was
//! PUT: the expected bytes are regenerated from the key on the fly.

const CONTEXT: &str = "cairn-bench 2024 object content v1";

/// Chunk size used while comparing a body against the expected stream.
const VERIFY_CHUNK: usize = 64 * 1024;

fn reader(key: &str) -> blake3::OutputReader {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(key.as_bytes());
    h.finalize_xof()
}

/// The full contents of the object named `key` with `size` bytes.
pub fn generate(key: &str, size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    reader(key).fill(&mut buf);
    buf
}

/// Check that `data` is exactly the content of `key` with `size` bytes,
/// without materialising a second full-size buffer.
pub fn verify(key: &str, size: usize, data: &[u8]) -> Result<(), String> {
    if data.len() != size {
        return Err(format!(
            "length mismatch: got {} bytes, expected {size}",
            data.len()
        ));
    }
    let mut r = reader(key);
    let mut expected = vec![0u8; VERIFY_CHUNK.min(size)];
    for (i, chunk) in data.chunks(VERIFY_CHUNK).enumerate() {
        let exp = &mut expected[..chunk.len()];
        r.fill(exp);
        if chunk != exp {
            let pos = chunk
                .iter()
                .zip(exp.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "content mismatch at byte offset {}",
                i * VERIFY_CHUNK + pos
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic() {
        let a = generate("bench/4KiB/00000001", 4096);
        let b = generate("bench/4KiB/00000001", 4096);
        assert_eq!(a.len(), 4096);
        assert_eq!(a, b);
    }

    #[test]
    fn unique_per_key() {
        let a = generate("bench/4KiB/00000001", 4096);
        let b = generate("bench/4KiB/00000002", 4096);
        assert_ne!(a, b);
        // not trivially compressible: no long runs of one byte
        assert!(a.windows(16).all(|w| w.iter().any(|&x| x != w[0])));
    }

    #[test]
    fn known_prefix_is_stable() {
        // Guards against accidental changes of the derivation, which would
        // make objects kept (--keep) by an older build fail verification.
        let a = generate("k", 8);
        let mut h = blake3::Hasher::new_derive_key("cairn-bench 2024 object content v1");
        h.update(b"k");
        let mut exp = [0u8; 8];
        h.finalize_xof().fill(&mut exp);
        assert_eq!(a, exp);
    }

    #[test]
    fn verify_accepts_and_rejects() {
        let size = 3 * VERIFY_CHUNK + 123;
        let key = "bench/x/00000007";
        let mut data = generate(key, size);
        assert_eq!(verify(key, size, &data), Ok(()));
        assert!(verify("other", size, &data).is_err());
        assert!(verify(key, size + 1, &data).is_err());
        assert!(verify(key, size - 1, &data[..size - 1]).is_ok());
        data[2 * VERIFY_CHUNK + 5] ^= 1;
        assert_eq!(
            verify(key, size, &data),
            Err(format!(
                "content mismatch at byte offset {}",
                2 * VERIFY_CHUNK + 5
            ))
        );
    }

    #[test]
    fn empty_object() {
        assert!(generate("k", 0).is_empty());
        assert_eq!(verify("k", 0, &[]), Ok(()));
    }
}
