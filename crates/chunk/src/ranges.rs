//! Hashed ranges over a partition's chunk ids: what anti-entropy compares instead of walking
//! every chunk.
//!
//! A partition's chunk-id space is cut into [`RANGES`] ranges by the id's first byte (ids are
//! BLAKE3 hashes, so ranges fill evenly; a partition is picked by the first eight bytes modulo
//! the partition count, which leaves the first byte uniform inside every partition). Each
//! range has a [`Digest`] of the set of ids in it: their count and the lane-wise wrapping sum of
//! the ids read as four little-endian `u64`s. The digest does not depend on the order ids were
//! added, removing an id undoes adding it, and unlike a plain XOR an id counted twice (an
//! upkeep bug) does not cancel itself out but shows as a difference.
//!
//! Two sets with equal digests are taken as equal: a collision needs two different sets with
//! the same size and the same 256-bit sum, which content addresses make practically
//! impossible by accident (the digest is not meant to resist a forger, who could only make
//! this node skip a repair anyway).
//!
//! [`RangeDigests`] holds the digests of one partition. The chunk-sync worker computes one for
//! the ids the partition references and compares it with the one the store keeps for the ids
//! it holds ([`crate::ChunkStore::held_digests`]); peers answer theirs over `ChunkService`.

use crate::ChunkId;

/// Ranges per partition: one per value of the id's first byte.
pub const RANGES: usize = 256;

/// The range of `id` inside its partition.
pub fn range_of(id: &ChunkId) -> u8 {
    id.0[0]
}

/// The smallest id of range `r`; the ids of range `r` are the ids from `first_id(r)` up to, not
/// including, `first_id(r + 1)`.
pub fn first_id(r: u8) -> ChunkId {
    let mut id = [0u8; 32];
    id[0] = r;
    ChunkId(id)
}

/// The order-independent digest of a set of chunk ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest {
    /// Ids in the set.
    pub count: u64,
    /// Lane-wise wrapping sum of the ids (each id as four little-endian `u64`s).
    pub sum: [u64; 4],
}

fn lanes(id: &ChunkId) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (lane, bytes) in out.iter_mut().zip(id.0.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *lane = u64::from_le_bytes(b);
    }
    out
}

impl Digest {
    /// Adds `id` to the set.
    pub fn add(&mut self, id: &ChunkId) {
        self.count = self.count.wrapping_add(1);
        for (s, l) in self.sum.iter_mut().zip(lanes(id)) {
            *s = s.wrapping_add(l);
        }
    }

    /// Removes `id` from the set (the inverse of [`Self::add`]).
    pub fn remove(&mut self, id: &ChunkId) {
        self.count = self.count.wrapping_sub(1);
        for (s, l) in self.sum.iter_mut().zip(lanes(id)) {
            *s = s.wrapping_sub(l);
        }
    }

    /// The digest of `ids` (each counted once per occurrence).
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a ChunkId>) -> Self {
        let mut d = Self::default();
        for id in ids {
            d.add(id);
        }
        d
    }

    /// The sum as 32 bytes (for the wire).
    pub fn sum_bytes(&self) -> Vec<u8> {
        self.sum.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    /// A digest from its wire form; `None` when `sum` is not 32 bytes.
    pub fn from_wire(count: u64, sum: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = sum.try_into().ok()?;
        Some(Self {
            count,
            sum: lanes(&ChunkId(arr)),
        })
    }
}

/// The digests of one partition's ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDigests(pub Vec<Digest>);

impl Default for RangeDigests {
    fn default() -> Self {
        Self(vec![Digest::default(); RANGES])
    }
}

impl RangeDigests {
    /// The digests of `ids`, each in its range.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a ChunkId>) -> Self {
        let mut d = Self::default();
        for id in ids {
            d.add(id);
        }
        d
    }

    /// Adds `id` to its range.
    pub fn add(&mut self, id: &ChunkId) {
        self.0[usize::from(range_of(id))].add(id);
    }

    /// Removes `id` from its range.
    pub fn remove(&mut self, id: &ChunkId) {
        self.0[usize::from(range_of(id))].remove(id);
    }

    /// The digest of range `r`.
    pub fn get(&self, r: u8) -> Digest {
        self.0.get(usize::from(r)).copied().unwrap_or_default()
    }

    /// Ranges whose digests differ between `self` and `other`, in order.
    pub fn differing(&self, other: &Self) -> Vec<u8> {
        (0..=u8::MAX)
            .filter(|&r| self.get(r) != other.get(r))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(b: [u8; 32]) -> ChunkId {
        ChunkId(b)
    }

    fn arb_ids() -> impl Strategy<Value = Vec<ChunkId>> {
        prop::collection::vec(any::<[u8; 32]>().prop_map(id), 0..64)
    }

    proptest! {
        #[test]
        fn order_does_not_matter(ids in arb_ids(), seed in any::<u64>()) {
            let mut shuffled = ids.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(i as u64 + 1) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(Digest::of(&ids), Digest::of(&shuffled));
            prop_assert_eq!(RangeDigests::of(&ids), RangeDigests::of(&shuffled));
        }

        #[test]
        fn remove_undoes_add(ids in arb_ids(), extra in arb_ids()) {
            let base = RangeDigests::of(&ids);
            let mut d = base.clone();
            for e in &extra {
                d.add(e);
            }
            for e in extra.iter().rev() {
                d.remove(e);
            }
            prop_assert_eq!(d, base);
        }

        #[test]
        fn ranges_split_the_set(ids in arb_ids()) {
            let d = RangeDigests::of(&ids);
            // Every id lands in exactly the range of its first byte...
            for r in 0..=u8::MAX {
                let want = Digest::of(ids.iter().filter(|i| range_of(i) == r));
                prop_assert_eq!(d.get(r), want);
            }
            // ...and the ranges together count the whole set.
            prop_assert_eq!(d.0.iter().map(|x| x.count).sum::<u64>(), ids.len() as u64);
            // A range holds exactly the ids from its first id to the next range's.
            for i in &ids {
                let r = range_of(i);
                prop_assert!(*i >= first_id(r));
                if r < u8::MAX {
                    prop_assert!(*i < first_id(r + 1));
                }
            }
        }

        #[test]
        fn the_wire_form_round_trips(ids in arb_ids()) {
            let d = Digest::of(&ids);
            prop_assert_eq!(Digest::from_wire(d.count, &d.sum_bytes()), Some(d));
        }
    }

    #[test]
    fn a_missing_id_shows_in_its_range_only() {
        let a = id([1; 32]);
        let mut b_bytes = [2u8; 32];
        b_bytes[0] = 9;
        let b = id(b_bytes);
        let should = RangeDigests::of(&[a, b]);
        let held = RangeDigests::of(&[a]);
        assert_eq!(should.differing(&held), vec![9]);
        assert!(should.differing(&should).is_empty());
    }

    #[test]
    fn an_id_counted_twice_does_not_cancel_out() {
        let a = id([5; 32]);
        let mut twice = Digest::default();
        twice.add(&a);
        twice.add(&a);
        assert_ne!(twice, Digest::default());
        assert_ne!(twice, Digest::of(&[a]));
    }

    #[test]
    fn a_short_wire_sum_is_refused() {
        assert_eq!(Digest::from_wire(1, &[0; 31]), None);
    }
}
