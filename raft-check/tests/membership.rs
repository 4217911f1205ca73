//! The 2015 single-server membership bug (raft-dev), as the checker found
//! it with the own-term commit rule switched off
//! (`Fault::ChangeBeforeTermCommit`), kept as replays of raft-core alone:
//! n1, leader of term 1 in a cluster of four voters and a learner, removes
//! n4 before its no-op commits; n3, elected in term 4 by n2, n4 and itself,
//! promotes n5, also before its no-op commits. A majority of n1's three
//! voters and one of n3's five need not meet, and then two leaders are
//! elected in one term. With the rule, n3 refuses the change.

use raft_check::model::ModelConfig;
use raft_check::profiles::membership_model;
use raft_check::replay::{replay, Cluster, ReplayFile};
use raft_core::{ChangeRejection, Config, Fault, Membership, Output};

fn configs(fault: Option<Fault>) -> Vec<Config> {
    let cfg = ModelConfig { fault, ..membership_model() };
    (0..cfg.servers).map(|i| cfg.raft_config(i)).collect()
}

fn replay_file(text: &str, fault: Option<Fault>) -> Cluster {
    let file = ReplayFile::from_json(text).expect("a replay file");
    assert!(file.flags.iter().any(|f| f == "change-before-term-commit"), "found with the fault");
    replay(configs(fault), &file.steps, false)
}

fn membership_of(cluster: &Cluster, node: u64) -> Membership {
    cluster.states[node as usize - 1].as_ref().expect("up").membership().clone()
}

/// Two memberships whose majorities can be disjoint: together they hold at
/// least as many servers as their two majorities.
fn may_not_overlap(a: &Membership, b: &Membership) -> bool {
    let majority = |m: &Membership| m.voters().len() / 2 + 1;
    let union = a.voters().union(b.voters()).count();
    majority(a) + majority(b) <= union
}

#[test]
fn s4_2_the_2015_bug_gives_two_memberships_whose_majorities_need_not_meet() {
    let text = include_str!("replays/disjoint-majorities-2015.json");
    let faulty = replay_file(text, Some(Fault::ChangeBeforeTermCommit));
    let (n1, n3) = (membership_of(&faulty, 1), membership_of(&faulty, 3));
    assert_eq!(n1.voters().iter().map(|v| v.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(n3.voters().iter().map(|v| v.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(may_not_overlap(&n1, &n3));

    // With the rule, n3's change (the last step) is refused.
    let correct = replay_file(text, None);
    let refused = Output::ChangeRejected { id: raft_core::ProposalId(0), reason: ChangeRejection::LeaderNotReady };
    assert!(correct.last_outputs[2].contains(&refused), "{:?}", correct.last_outputs[2]);
    assert!(!may_not_overlap(&membership_of(&correct, 1), &membership_of(&correct, 3)));
}

#[test]
fn s4_2_the_2015_bug_elects_two_leaders_in_one_term() {
    let text = include_str!("replays/two-leaders-2015.json");
    let leaders = replay_file(text, Some(Fault::ChangeBeforeTermCommit)).leaders();
    let same_term = leaders.windows(2).any(|w| w[0].0 == w[1].0);
    assert!(same_term, "two leaders of one term: {leaders:?}");
    let leaders = replay_file(text, None).leaders();
    assert!(leaders.windows(2).all(|w| w[0].0 != w[1].0), "{leaders:?}");
}
