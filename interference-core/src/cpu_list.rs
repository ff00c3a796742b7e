//! CPU lists, as the kernel writes them (`cpuset.cpus`, `/sys/devices/system/cpu/online`:
//! `0-3,8`): one type, one parser, one formatter, for every stage that reads, writes or
//! prices a set of CPUs.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// No real machine has 65536 CPUs: a range that large is a misread, not a set.
pub const MAX_CPU: u32 = (1 << 16) - 1;

/// A set of CPU numbers, ordered. In JSON it is a list of numbers (`[0, 1, 2]`), the
/// form journals and ledgers have always used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CpuList(BTreeSet<u32>);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a CPU list: {text:?} ({why})")]
pub struct CpuListError {
    pub text: String,
    pub why: &'static str,
}

impl CpuList {
    pub fn new(cpus: impl IntoIterator<Item = u32>) -> Self {
        Self(cpus.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// The CPUs in ascending order.
    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).copied().collect())
    }

    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).copied().collect())
    }

    pub fn difference(&self, other: &Self) -> Self {
        Self(self.0.difference(&other.0).copied().collect())
    }

    pub fn is_subset(&self, other: &Self) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl FromStr for CpuList {
    type Err = CpuListError;

    /// Comma-separated CPUs and `a-b` ranges, surrounding blanks ignored; blank is the
    /// empty set (a v1 cpuset nobody configured).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let bad = |why| CpuListError {
            text: text.to_owned(),
            why,
        };
        let mut cpus = BTreeSet::new();
        if t.is_empty() {
            return Ok(Self(cpus));
        }
        for part in t.split(',') {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let lo: u32 = lo.trim().parse().map_err(|_| bad("not a number"))?;
            let hi: u32 = hi.trim().parse().map_err(|_| bad("not a number"))?;
            if lo > hi {
                return Err(bad("a range that goes down"));
            }
            if hi > MAX_CPU {
                return Err(bad("a CPU number beyond 65535"));
            }
            cpus.extend(lo..=hi);
        }
        Ok(Self(cpus))
    }
}

impl fmt::Display for CpuList {
    /// Canonical form, as the kernel prints it: `0-3,8`; the empty set is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl FromIterator<u32> for CpuList {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl From<&[u32]> for CpuList {
    fn from(cpus: &[u32]) -> Self {
        Self::new(cpus.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_kernels_format() {
        let l: CpuList = " 0-3,8,10-11\n".parse().unwrap();
        assert_eq!(l.to_vec(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(l.to_string(), "0-3,8,10-11");
        assert_eq!("".parse::<CpuList>().unwrap(), CpuList::default());
        assert_eq!("5,1,1-2".parse::<CpuList>().unwrap().to_string(), "1-2,5");
        assert_eq!(CpuList::new([3]).to_string(), "3");
    }

    #[test]
    fn refuses_what_is_not_a_list() {
        for bad in ["x", "3-1", "0-70000", "1,,2", "-1"] {
            let e = bad.parse::<CpuList>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn set_operations_and_json() {
        let a = CpuList::new([0, 1, 2]);
        let b = CpuList::new([2, 3]);
        assert_eq!(a.union(&b).to_string(), "0-3");
        assert_eq!(a.intersection(&b).to_string(), "2");
        assert_eq!(a.difference(&b).to_string(), "0-1");
        assert!(CpuList::new([1]).is_subset(&a));
        assert_eq!(serde_json::to_string(&a).unwrap(), "[0,1,2]");
        assert_eq!(
            serde_json::from_str::<CpuList>("[2,0]")
                .unwrap()
                .to_string(),
            "0,2"
        );
    }
}
