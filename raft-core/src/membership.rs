//! Who is in the cluster: the voters whose majorities elect leaders, commit
//! entries and confirm reads.
//!
//! The member set is part of a node's *state*, not of its [`Config`]: it is
//! persisted with the term, vote and log (as [`Persist::Membership`]) and
//! recovered with them, so that membership changes can later move it
//! through configuration entries in the log and snapshots without a new
//! shape. Today it is fixed when the cluster is bootstrapped.
//!
//! [`Config`]: crate::Config
//! [`Persist::Membership`]: crate::Persist::Membership

use crate::quorum::Quorum;
use crate::types::NodeId;
use core::fmt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The members of the cluster. Build it with [`Membership::new`], which
/// checks it. Shared: every state of a node holds the same one until a
/// membership change, so cloning a state does not copy it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Membership {
    voters: Arc<BTreeSet<NodeId>>,
}

/// Why a member set was refused. Each variant is a caller's mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// The list names no voter: such a cluster can elect no leader.
    NoVoters,
    /// A member id appears twice in the list given.
    DuplicateMember {
        /// The repeated id.
        id: NodeId,
    },
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::NoVoters => write!(f, "the member list names no voter"),
            MembershipError::DuplicateMember { id } => write!(f, "member {id} is listed twice"),
        }
    }
}

impl std::error::Error for MembershipError {}

impl Membership {
    /// A cluster whose members are all voters.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Result<Membership, MembershipError> {
        let mut set = BTreeSet::new();
        for v in voters {
            if !set.insert(v) {
                return Err(MembershipError::DuplicateMember { id: v });
            }
        }
        if set.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        Ok(Membership { voters: Arc::new(set) })
    }

    /// The voters.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` votes (and so may stand for election).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Every member but `me`: the nodes a leader replicates to.
    pub fn peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied().filter(move |&m| m != me)
    }

    /// The rule that decides whether the members agree.
    pub(crate) fn quorum(&self) -> Quorum<'_> {
        Quorum::Majority(&self.voters)
    }

    /// The same membership with every id renamed by `node` (a bijection).
    /// A bijection on the member set gives the same set back, shared.
    pub(crate) fn renamed(&self, node: &dyn Fn(NodeId) -> NodeId) -> Membership {
        if self.voters.iter().all(|&v| self.voters.contains(&node(v))) {
            return self.clone();
        }
        Membership { voters: Arc::new(self.voters.iter().map(|&v| node(v)).collect()) }
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters {:?}", self.voters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_and_duplicate_member_lists() {
        assert_eq!(Membership::new([]), Err(MembershipError::NoVoters));
        assert_eq!(
            Membership::new([NodeId(1), NodeId(2), NodeId(1)]),
            Err(MembershipError::DuplicateMember { id: NodeId(1) })
        );
        let m = Membership::new([NodeId(3), NodeId(1)]).unwrap();
        assert_eq!(m.peers(NodeId(1)).collect::<Vec<_>>(), vec![NodeId(3)]);
        assert!(m.is_voter(NodeId(3)) && !m.contains(NodeId(2)));
    }
}
