//! The CPUs a VM may run on, as a bitset: `pair_shared_cpus` intersects two of them
//! for every ordered pair and model tick (59 400 times for 100 VMs), so it has to be a
//! few word ANDs, not a set merge.

/// Highest CPU id kept. Linux allows at most 8192 CPUs (`CONFIG_NR_CPUS`); an id far
/// beyond that is a corrupt sample, and a bitset sized by it would be huge.
pub const MAX_CPU_ID: u32 = 65_535;

/// A set of CPU ids (duplicates in the input count once, as in the trainer's `set`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuMask {
    words: Box<[u64]>,
    len: usize,
}

impl CpuMask {
    /// The set of `ids`, or None when one is above [`MAX_CPU_ID`] (treated as unknown).
    pub fn from_ids(ids: &[u32]) -> Option<Self> {
        let max = ids.iter().copied().max();
        if max.is_some_and(|m| m > MAX_CPU_ID) {
            return None;
        }
        let n_words = max.map_or(0, |m| m as usize / 64 + 1);
        let mut words = vec![0u64; n_words].into_boxed_slice();
        for &id in ids {
            words[id as usize / 64] |= 1 << (id % 64);
        }
        let len = words.iter().map(|w| w.count_ones() as usize).sum();
        Some(Self { words, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// `|self ∩ other|`.
    pub fn intersection_len(&self, other: &CpuMask) -> usize {
        self.words
            .iter()
            .zip(other.words.iter())
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum()
    }

    /// True when `ids` (strictly increasing, as the kernel lists them) is this set, so
    /// the previous sample's set can be shared instead of allocating a new one. False
    /// negatives (unsorted input) only cost an allocation.
    pub fn is_exactly(&self, ids: &[u32]) -> bool {
        ids.len() == self.len
            && ids.windows(2).all(|w| w[0] < w[1])
            && ids.iter().all(|&id| self.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_counts_and_intersects() {
        let a = CpuMask::from_ids(&[0, 1, 2, 64, 130]).expect("small ids");
        let b = CpuMask::from_ids(&[1, 2, 3, 130]).expect("small ids");
        assert_eq!(a.len(), 5);
        assert!(a.contains(64) && a.contains(130) && !a.contains(3) && !a.contains(10_000));
        assert_eq!(a.intersection_len(&b), 3);
        assert_eq!(b.intersection_len(&a), 3);
        let empty = CpuMask::from_ids(&[]).expect("empty");
        assert!(empty.is_empty());
        assert_eq!(a.intersection_len(&empty), 0);
    }

    #[test]
    fn duplicates_count_once() {
        let a = CpuMask::from_ids(&[3, 3, 1]).expect("small ids");
        assert_eq!(a.len(), 2);
        assert!(!a.is_exactly(&[3, 3, 1]));
        assert!(a.is_exactly(&[1, 3]));
        assert!(!a.is_exactly(&[1, 2]));
        assert!(!a.is_exactly(&[1]));
    }

    #[test]
    fn absurd_ids_are_unknown() {
        assert!(CpuMask::from_ids(&[MAX_CPU_ID]).is_some());
        assert!(CpuMask::from_ids(&[0, MAX_CPU_ID + 1]).is_none());
        assert!(CpuMask::from_ids(&[u32::MAX]).is_none());
    }
}
