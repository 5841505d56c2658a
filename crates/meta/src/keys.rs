//! Byte layout of state-machine keys. Every key starts with the 8-byte big-endian group id so
//! one group's state is one contiguous range per table (snapshots are range scans), and object
//! keys sort in UTF-8 binary order as S3 requires. Bucket names, keys and upload ids never
//! contain NUL (the S3 layer refuses them), so NUL is a safe separator.

pub const SEP: u8 = 0;

/// The first key of `group`'s range.
pub fn group_start(group: u64) -> Vec<u8> {
    group.to_be_bytes().to_vec()
}

/// The first key after `group`'s range.
pub fn group_end(group: u64) -> Vec<u8> {
    match group.checked_add(1) {
        Some(g) => g.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    }
}

fn with_group(group: u64, cap: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + cap);
    k.extend_from_slice(&group.to_be_bytes());
    k
}

/// `g | bucket | 0 |` — the prefix of all object keys of a bucket.
pub fn bucket_prefix(group: u64, bucket: &str) -> Vec<u8> {
    let mut k = with_group(group, bucket.len() + 1);
    k.extend_from_slice(bucket.as_bytes());
    k.push(SEP);
    k
}

/// `g | bucket | 0 | key`
pub fn object(group: u64, bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(group, bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `g | bucket | 0 | key | 0 | upload_id`
pub fn upload(group: u64, bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = object(group, bucket, key);
    k.push(SEP);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// `g | upload_id | 0 |` — the prefix of an upload's parts.
pub fn parts_prefix(group: u64, upload_id: &str) -> Vec<u8> {
    let mut k = with_group(group, upload_id.len() + 5);
    k.extend_from_slice(upload_id.as_bytes());
    k.push(SEP);
    k
}

/// `g | upload_id | 0 | part_number (u32 BE)`
pub fn part(group: u64, upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = parts_prefix(group, upload_id);
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// `g | chunk (32 bytes)` — the prefix of a chunk's reference set.
pub fn refs_prefix(group: u64, chunk: &[u8; 32]) -> Vec<u8> {
    let mut k = with_group(group, 32);
    k.extend_from_slice(chunk);
    k
}

/// `g | chunk | owner`
pub fn chunk_ref(group: u64, chunk: &[u8; 32], owner: &str) -> Vec<u8> {
    let mut k = refs_prefix(group, chunk);
    k.extend_from_slice(owner.as_bytes());
    k
}

/// `g | seq (u64 BE)`
pub fn outbox(group: u64, seq: u64) -> Vec<u8> {
    let mut k = with_group(group, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `g | name`
pub fn bucket(group: u64, name: &str) -> Vec<u8> {
    let mut k = with_group(group, name.len());
    k.extend_from_slice(name.as_bytes());
    k
}

/// `g | name` in the state-machine metadata table.
pub fn sm_meta(group: u64, name: &str) -> Vec<u8> {
    bucket(group, name)
}

/// The smallest byte string greater than every string that starts with `prefix`
/// (None when there is none, i.e. the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_sort_like_s3_keys() {
        let a = object(1, "b", "a/b");
        let b = object(1, "b", "a/b/c");
        let c = object(1, "b", "a0");
        assert!(a < b && b < c);
        // A longer bucket name never interleaves with a shorter one's keys.
        assert!(object(1, "b", "zzz") < object(1, "b0", ""));
    }

    #[test]
    fn prefix_end_is_tight() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn groups_are_disjoint_ranges() {
        let k = object(5, "bucket", "key");
        assert!(k >= group_start(5) && k < group_end(5));
        assert!(k >= group_end(4));
    }
}
