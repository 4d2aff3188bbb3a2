//! The encoder's reference tables: small bucket chains while a table is small, a hash table beyond.
//!
//! A typical RPC value writes a few dozen strings and a trait or two. Looking a key up among the
//! few that share its tag (its length and end bytes, a few instructions to compute) costs less
//! than hashing it, and the small table lives inline, so a small value allocates nothing. Past `N`
//! entries the table moves to a foldhash map, seeded per process so that peer-chosen keys (a
//! decoded value echoed back) cannot force collisions; until then a lookup scans at most `N`
//! entries, so writing n keys costs O(n) whatever they are.

use std::collections::hash_map::Entry;
use std::hash::Hash;

use foldhash::HashMap;

/// A key of a reference table.
pub(crate) trait Key: Copy + Eq + Hash {
    /// A cheap summary of the key: equal keys have equal tags, and unequal ones often do not.
    fn tag(&self) -> u32;
}

impl Key for &str {
    fn tag(&self) -> u32 {
        let bytes = self.as_bytes();
        let first = bytes.first().map_or(0, |&byte| u32::from(byte));
        let last = bytes.last().map_or(0, |&byte| u32::from(byte));
        (bytes.len() as u32) ^ (first << 8) ^ (last << 16)
    }
}

/// Bits of a bucket number: the small table has 16 buckets.
const BUCKET_BITS: u32 = 4;
/// The end of a bucket's chain.
const END: u8 = u8::MAX;

/// Keys already written, numbered in the order they were first written. Up to `N` (at most 255)
/// keys are chained in buckets chosen by their tag, so a lookup compares a key or two; a peer can
/// make all its keys share a bucket, but that only costs a scan of at most `N` entries.
pub(crate) struct RefTable<K, const N: usize> {
    /// The keys in table order (the first `len`), while there are at most `N` of them; plain
    /// arrays, as `SmallVec`'s bookkeeping cost as much as the lookup itself.
    linear: [Option<K>; N],
    /// For each entry of `linear`, the previous entry of its bucket, or `END`.
    chain: [u8; N],
    /// Entries in `linear`.
    len: usize,
    /// The last entry of each bucket, or `END`.
    heads: [u8; 1 << BUCKET_BITS],
    /// Every key with its index, once the table has outgrown `linear`.
    hashed: Option<HashMap<K, u32>>,
}

impl<K: Key, const N: usize> RefTable<K, N> {
    /// An empty table.
    pub(crate) fn new() -> RefTable<K, N> {
        const { assert!(N < END as usize) };
        RefTable {
            linear: [None; N],
            chain: [END; N],
            len: 0,
            heads: [END; 1 << BUCKET_BITS],
            hashed: None,
        }
    }

    /// The index of `key` if it was added before; otherwise adds it with the next index and
    /// returns `None`.
    #[inline]
    pub(crate) fn find_or_add(&mut self, key: K) -> Option<u32> {
        if self.hashed.is_some() {
            return self.find_or_add_hashed(key);
        }
        // Fibonacci hashing: the top bits of the product mix every bit of the tag.
        let bucket = (key.tag().wrapping_mul(0x9e37_79b9) >> (32 - BUCKET_BITS)) as usize;
        let mut entry = self.heads[bucket];
        while let (Some(Some(known)), Some(&previous)) = (
            self.linear.get(usize::from(entry)),
            self.chain.get(usize::from(entry)),
        ) {
            if *known == key {
                return Some(u32::from(entry));
            }
            entry = previous;
        }
        let index = self.len;
        if let (Some(free), Some(previous)) =
            (self.linear.get_mut(index), self.chain.get_mut(index))
        {
            *free = Some(key);
            *previous = self.heads[bucket];
            self.heads[bucket] = index as u8;
            self.len += 1;
            None
        } else {
            self.add_hashed(key)
        }
    }

    /// Moves the small table into a hash table and adds `key`, new, to it.
    #[cold]
    #[inline(never)]
    fn add_hashed(&mut self, key: K) -> Option<u32> {
        let mut hashed = HashMap::with_capacity_and_hasher(N * 2, Default::default());
        hashed.extend(self.linear.iter().flatten().copied().zip(0..));
        self.hashed = Some(hashed);
        self.find_or_add_hashed(key)
    }

    /// `find_or_add` once the table has outgrown the small one; kept apart (like `add_hashed`)
    /// so that the small table's lookup stays lean.
    #[inline(never)]
    fn find_or_add_hashed(&mut self, key: K) -> Option<u32> {
        let hashed = self.hashed.get_or_insert_with(HashMap::default);
        let next_index = hashed.len() as u32;
        match hashed.entry(key) {
            Entry::Occupied(known) => Some(*known.get()),
            Entry::Vacant(new) => {
                new.insert(next_index);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_first_insertion_across_the_switch_to_hashing() {
        // Keys that differ only inside share a tag and so a bucket; the others spread.
        for keys in [
            (0..100).map(|n| format!("key{n}")).collect::<Vec<_>>(),
            (0..100).map(|n| format!("k{n:03}z")).collect(),
        ] {
            assert_indices_follow_first_insertion(&keys);
        }
    }

    fn assert_indices_follow_first_insertion(keys: &[String]) {
        let mut table = RefTable::<&str, 8>::new();
        for key in keys {
            assert_eq!(table.find_or_add(key.as_str()), None);
        }
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(table.find_or_add(key.as_str()), Some(index as u32));
        }
    }
}
