//! Which Raft group owns what. Group 0 is the system group; partition `p` is group `p + 1`.

/// The system group: buckets, and later nodes, layout and keys.
pub const SYSTEM_GROUP: u64 = 0;

/// The Raft group id of partition `p`.
pub fn partition_group(p: u32) -> u64 {
    u64::from(p) + 1
}

/// The partition that holds index shard `shard` of `bucket` (DESIGN §2: hash(b, s) mod P).
pub fn bucket_partition(bucket: &str, shard: u32, partitions: u32) -> u32 {
    let mut h = blake3::Hasher::new();
    h.update(bucket.as_bytes());
    h.update(&[0]);
    h.update(&shard.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_bytes()[..8]);
    (u64::from_be_bytes(b) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_in_range_and_stable() {
        for p in [1, 2, 64, 256] {
            let a = bucket_partition("photos", 0, p);
            assert!(a < p);
            assert_eq!(a, bucket_partition("photos", 0, p));
        }
        assert_eq!(partition_group(0), 1);
    }
}
