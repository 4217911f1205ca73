//! Every "does a quorum agree?" question, answered in one place: a won
//! election, the commit index, a confirmed leadership-check round.
//!
//! Each question is asked the same way: every voter has a value (granted
//! or not, the index it matches, the round it answered), and the answer is
//! the highest value that a quorum has reached. For a majority of one
//! voter set, that is the value at rank `n / 2 + 1` from the top. A joint
//! configuration (thesis §4.3) will be one more variant, whose answer is
//! the lower of its two majorities' answers; no caller changes.

use crate::types::NodeId;
use std::collections::BTreeSet;

/// Who must agree.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Quorum<'a> {
    /// More than half of these voters.
    Majority(&'a BTreeSet<NodeId>),
}

impl Quorum<'_> {
    /// The highest value that a quorum of voters has each reached, where
    /// `value` gives each voter's.
    pub fn agreed<T: Ord + Copy>(&self, value: impl Fn(NodeId) -> T) -> T {
        self.agreed_short_of(0, value)
    }

    /// As [`Quorum::agreed`], but with `missing` fewer voters than a quorum
    /// needs. Only the fault switches that break the majority rule use a
    /// `missing` above 0.
    pub fn agreed_short_of<T: Ord + Copy>(&self, missing: usize, value: impl Fn(NodeId) -> T) -> T {
        match self {
            Quorum::Majority(voters) => {
                let mut values: Vec<T> = voters.iter().map(|&v| value(v)).collect();
                values.sort_unstable_by(|a, b| b.cmp(a));
                let needed = (voters.len() / 2 + 1).saturating_sub(missing).max(1);
                values[needed - 1]
            }
        }
    }

    /// Whether the voters in `granted` make a quorum.
    pub fn is_won(&self, granted: &BTreeSet<NodeId>) -> bool {
        self.agreed(|v| granted.contains(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn a_majority_decides() {
        for (n, needed) in [(1u64, 1usize), (2, 2), (3, 2), (4, 3), (5, 3)] {
            let all: Vec<u64> = (1..=n).collect();
            let set = voters(&all);
            let q = Quorum::Majority(&set);
            assert!(q.is_won(&voters(&all[..needed])), "{needed} of {n} is a majority");
            assert!(!q.is_won(&voters(&all[..needed - 1])), "{} of {n} is not", needed - 1);
        }
    }

    #[test]
    fn agreed_is_the_value_a_majority_has_reached() {
        let set = voters(&[1, 2, 3, 4, 5]);
        let q = Quorum::Majority(&set);
        let matched = |v: NodeId| [9u64, 3, 7, 1, 5][(v.0 - 1) as usize];
        assert_eq!(q.agreed(matched), 5, "nodes 1, 3 and 5 hold 5 or more");
        assert_eq!(q.agreed_short_of(1, matched), 7, "one voter short of a majority");
        // Voters outside the set are never asked.
        assert!(!q.is_won(&voters(&[1, 6, 7])));
    }
}
