//! The seeded cluster simulator (see `common/sim.rs`) over many seeds, for
//! 3- and 5-node clusters: a faulty safety phase, then a fault-free
//! liveness phase that must converge. And a check that the simulator can
//! fail: with a node that grants a second vote in a term, it must report
//! an Election Safety violation.
//!
//! `SIM_SEED=n` runs exactly seed n (add `SIM_TRACE=1` to print every step);
//! `SIM_SEEDS=n` runs seeds 0..n (default 500 per cluster size).

mod common;

use common::sim::{run_seed, Options, Outcome, Property, Sim, Violation};
use raft_core::Fault;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")))
}

/// The seeds to run: `SIM_SEED` alone, or `0..SIM_SEEDS`.
fn seeds() -> Vec<u64> {
    match env_u64("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SIM_SEEDS").unwrap_or(500)).collect(),
    }
}

fn run_many(nodes: u64) -> Vec<Outcome> {
    let trace = std::env::var_os("SIM_TRACE").is_some();
    let seeds = seeds();
    let outcomes: Vec<Outcome> =
        seeds.iter().map(|&seed| run_seed(Options { trace, ..Options::new(nodes, seed) })).collect();
    let steps: u64 = outcomes.iter().map(|o| o.steps).sum();
    let liveness: u64 = outcomes.iter().map(|o| o.liveness_steps).sum();
    let crashes: u64 = outcomes.iter().map(|o| o.crashes).sum();
    let terms: usize = outcomes.iter().map(|o| o.leader_terms).sum();
    let committed: u64 = outcomes.iter().map(|o| o.committed_index).sum();
    let accepted: u64 = outcomes.iter().map(|o| o.accepted).sum();
    let reads: u64 = outcomes.iter().map(|o| o.reads_served).sum();
    assert!(reads > 0, "no read was ever served: the read path is not exercised");
    println!(
        "simulator, {nodes} nodes: {} seeds ({}..={}), {steps} steps ({liveness} in liveness phases), \
         {crashes} crashes, {terms} terms with a leader, {accepted} proposals accepted, \
         {reads} reads served, {committed} log indexes committed",
        seeds.len(),
        seeds.first().unwrap_or(&0),
        seeds.last().unwrap_or(&0),
    );
    outcomes
}

/// §5 as a whole (Figure 3's properties), 3 nodes.
#[test]
fn nodes_3_safety_under_faults_then_liveness() {
    let outcomes = run_many(3);
    assert!(outcomes.iter().all(|o| o.leader_terms > 0 && o.committed_index > 0));
}

/// §5 as a whole (Figure 3's properties), 5 nodes.
#[test]
fn nodes_5_safety_under_faults_then_liveness() {
    let outcomes = run_many(5);
    assert!(outcomes.iter().all(|o| o.leader_terms > 0 && o.committed_index > 0));
}

/// The first seed among the first 200 whose run violates `property` with
/// `fault` injected (panics if none does).
fn find_violation(fault: Fault, property: Property) -> (u64, Violation) {
    let mut other = Vec::new();
    for seed in 0..200 {
        let options = Options { fault: Some(fault), ..Options::new(3, seed) };
        match Sim::new(options).run() {
            Err(v) if v.property == property => return (seed, v),
            Err(v) => other.push((seed, v.property)),
            Ok(_) => {}
        }
    }
    panic!("with {fault:?}, no {property:?} violation in 200 seeds; other violations: {other:?}");
}

/// The simulator can fail: when every node may grant a second vote in a
/// term (`Fault::GrantSecondVote`), some seed must show two leaders in one
/// term.
#[test]
fn simulator_finds_two_leaders_when_votes_are_granted_twice() {
    let (seed, violation) = find_violation(Fault::GrantSecondVote, Property::ElectionSafety);
    println!("with GrantSecondVote, seed {seed}: {violation}");
    assert!(violation.detail.contains("both leaders"), "{violation}");
}

/// The read check can fail: a leader that serves reads without confirming
/// its leadership with a majority (`Fault::ServeReadsWithoutQuorum`) must
/// be caught serving a stale read.
#[test]
fn simulator_finds_stale_reads_without_a_leadership_check() {
    let (seed, violation) = find_violation(Fault::ServeReadsWithoutQuorum, Property::LinearizableReads);
    println!("with ServeReadsWithoutQuorum, seed {seed}: {violation}");
    assert!(violation.detail.contains("entries were committed when it was issued"), "{violation}");
}

/// A seed replays exactly: two runs of one seed take the same steps to the
/// same end.
#[test]
fn a_seed_replays_exactly() {
    for nodes in [3, 5] {
        let first = Sim::new(Options::new(nodes, 7)).run().expect("seed 7 passes");
        let second = Sim::new(Options::new(nodes, 7)).run().expect("seed 7 passes");
        assert!(first.steps > 0);
        assert_eq!(first, second);
    }
}
