//! The seeded cluster simulator (see `common/sim.rs`) over many seeds, for
//! clusters starting with 3 and 5 voters (and joiners beside them, which
//! an operator adds, promotes and removes): a faulty safety phase, then a
//! fault-free liveness phase that must converge. And checks that the simulator can
//! fail: with a node that grants a second vote in a term, it must report
//! an Election Safety violation; with a leader that serves reads without a
//! quorum, a stale read; with a leader that never steps down, no agreed
//! leader after the faults stop; and with each of the deliberately broken
//! rules of `raft_core::Fault`, some property's violation (the mutation
//! harness).
//!
//! Then scenarios without random faults, each paired with the run that
//! shows it can fail: a node cut off and healed does not depose the leader
//! with pre-vote (thesis §9.6) and does without; a leader cut off with a
//! minority steps down within two election timeouts with check-quorum
//! (thesis §6.2) and leads on without; a partial partition keeps one leader
//! that commits with both, and churns leaders with neither; a leadership
//! transfer (thesis §3.10) completes in one term; an abandoned one lets
//! proposals resume; two membership changes across a change of leader are
//! safe with the 2015 fix (thesis §4.2.3) and lose a committed entry
//! without it.
//!
//! `SIM_SEED=n` runs exactly seed n (add `SIM_TRACE=1` to print every step);
//! `SIM_SEEDS=n` runs seeds 0..n (default 500 per cluster size).

mod common;

use common::sim::{run_seed, LeadershipChange, Options, Outcome, Property, Sim, Violation};
use raft_core::{Change, ChangeRejection, Fault, Input, LogIndex, NodeId, Rejection, Term};
use std::collections::BTreeMap;

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
    let windowed: u64 = outcomes.iter().map(|o| o.deliveries_after_applied).sum();
    let partial: u64 = outcomes.iter().map(|o| o.partial_partitions).sum();
    let transfers: u64 = outcomes.iter().map(|o| o.transfers).sum();
    let timeouts_now: u64 = outcomes.iter().map(|o| o.timeouts_now).sum();
    let taken: u64 = outcomes.iter().map(|o| o.snapshots_taken).sum();
    let installed: u64 = outcomes.iter().map(|o| o.snapshots_installed).sum();
    let recovered: u64 = outcomes.iter().map(|o| o.recoveries_from_snapshot).sum();
    let background: u64 = outcomes.iter().map(|o| o.background_writes).sum();
    let late: u64 = outcomes.iter().map(|o| o.late_write_reports).sum();
    let lost: u64 = outcomes.iter().map(|o| o.writes_lost).sum();
    let changes_asked: u64 = outcomes.iter().map(|o| o.changes_asked).sum();
    let changes_accepted: u64 = outcomes.iter().map(|o| o.changes_accepted).sum();
    let changes_committed: u64 = outcomes.iter().map(|o| o.changes_committed).sum();
    let mut rejected: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &outcomes {
        for (reason, n) in &o.changes_rejected {
            *rejected.entry(reason).or_default() += n;
        }
    }
    let learners_added: u64 = outcomes.iter().map(|o| o.learners_added).sum();
    let promoted: u64 = outcomes.iter().map(|o| o.learners_promoted).sum();
    let voters_removed: u64 = outcomes.iter().map(|o| o.voters_removed).sum();
    let learners_removed: u64 = outcomes.iter().map(|o| o.learners_removed).sum();
    let removed_themselves: u64 = outcomes.iter().map(|o| o.leaders_removed_themselves).sum();
    let joiners: u64 = outcomes.iter().map(|o| o.joiners_started).sum();
    assert!(background > 0, "no background write was asked for: §10.2.1 is not exercised");
    assert!(reads > 0, "no read was ever served: the read path is not exercised");
    assert!(windowed > 0, "no delivery ever waited for Input::Applied: the delivery window is not exercised");
    if seeds.len() >= 50 {
        // A handful of seeds may draw none; fifty cannot, short of a bug.
        assert!(partial > 0, "no partial partition was made");
        assert!(timeouts_now > 0, "no transfer reached its TimeoutNow: the transfer path is not exercised");
        assert!(taken > 0 && installed > 0, "no snapshot was taken and installed: §7 is not exercised");
        assert!(recovered > 0, "no node recovered from a snapshot");
        assert!(late > 0, "no background write was reported after a later persist flushed it");
        assert!(lost > 0, "no crash lost a background write");
        // Membership changes (thesis §4), each kind at least once.
        assert!(changes_accepted > 0 && changes_committed > 0, "no membership change was committed");
        assert!(learners_added > 0, "no learner was added");
        assert!(promoted > 0, "no learner was promoted");
        assert!(voters_removed > 0, "no voter was removed");
        assert!(learners_removed > 0, "no learner was removed");
        assert!(removed_themselves > 0, "no leader removed itself");
        for reason in ["leader-not-ready", "change-in-progress"] {
            assert!(rejected.contains_key(reason), "no change was refused as {reason}: {rejected:?}");
        }
    }
    println!(
        "simulator, {nodes} nodes: {} seeds ({}..={}), {steps} steps ({liveness} in liveness phases), \
         {crashes} crashes, {partial} partial partitions, {transfers} transfers asked ({timeouts_now} TimeoutNow sent), \
         {terms} terms with a leader, {accepted} proposals accepted, \
         {reads} reads served, {windowed} deliveries after a full window, {committed} log indexes committed, \
         {taken} snapshots taken, {installed} installed by followers, {recovered} restarts from a snapshot, \
         {background} background writes ({late} reported after a later persist flushed them, {lost} lost in crashes), \
         {changes_asked} membership changes asked ({changes_accepted} accepted, {changes_committed} committed: \
         {learners_added} learners added, {promoted} promoted, {voters_removed} voters removed, \
         {learners_removed} learners removed; {removed_themselves} leaders removed themselves; \
         refused: {rejected:?}), {joiners} joiners started",
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

/// The liveness phase can fail: a leader that never steps down on seeing
/// a higher term (`Fault::NoStepDownOnHigherTerm`) keeps leading its old
/// term after the faults stop, beside the leader of the newer one; or,
/// with check-quorum's lease keeping the others from voting, beside a
/// node that stands for election in ever higher terms. Either way the
/// cluster never agrees on one leader.
#[test]
fn simulator_finds_no_agreed_leader_when_a_leader_never_steps_down() {
    let (seed, violation) = find_violation(Fault::NoStepDownOnHigherTerm, Property::LeaderAgreement);
    println!("with NoStepDownOnHigherTerm, seed {seed}: {violation}");
    let two_leaders = violation.detail.contains("2 live nodes in the leader role");
    let one_never_follows = violation.detail.contains("not every live node follows it");
    assert!(two_leaders || one_never_follows, "{violation}");
}

/// Seeds tried per fault and cluster size, in order from 0, in the
/// mutation harness. The rarest faults show in a few seeds in a hundred
/// (a stale answer must reach its node after it was elected again), so 200
/// leaves a wide margin; the harness stops at the first seed that catches a
/// fault, which keeps it to seconds, and even a fault caught by no seed
/// costs 400 runs, about ten seconds in a debug build.
const HARNESS_SEEDS_PER_SIZE: u64 = 200;

/// What the mutation harness found for one fault: the first run that
/// violated a property, as (nodes, seed, violation), if any (4 nodes: the
/// hand-played scenario of the 2015 bug); and the runs tried before it that
/// ended in a panic, which do not count.
struct Catch {
    first: Option<(u64, u64, Violation)>,
    panics: Vec<(u64, u64)>,
}

/// Runs 3-node and then 5-node clusters, seeds from 0, with `fault`
/// injected, until one violates a property; failing that, the scenario of
/// the 2015 bug ([`disjoint_majorities`]), whose conditions (four voters,
/// two changes across a change of leader, a voter cut off from the new
/// leader just after voting for it) random seeds reach too seldom to count
/// on.
fn first_catch(fault: Fault) -> Catch {
    let mut panics = Vec::new();
    for nodes in [3, 5] {
        for seed in 0..HARNESS_SEEDS_PER_SIZE {
            let options = Options { fault: Some(fault), ..Options::new(nodes, seed) };
            match Sim::new(options).run() {
                Err(v) if v.property == Property::Panic => panics.push((nodes, seed)),
                Err(v) => return Catch { first: Some((nodes, seed, v)), panics },
                Ok(_) => {}
            }
        }
    }
    for seed in 0..SCENARIO_SEEDS {
        // The scenario asserts its own steps; a fault that breaks them is
        // not caught by it.
        let run = std::panic::catch_unwind(|| disjoint_majorities(seed, Some(fault)).1);
        match run {
            Ok(Err(v)) if v.property == Property::Panic => panics.push((4, seed)),
            Ok(Err(v)) => return Catch { first: Some((4, seed, v)), panics },
            Ok(Ok(())) | Err(_) => {}
        }
    }
    Catch { first: None, panics }
}

/// The mutation harness: for every deliberately broken rule in
/// `Fault::ALL`, some seed must violate one of the simulator's properties
/// (a panic of the core does not count). A fault that no property catches
/// is a rule the simulator does not check. Prints one line per fault: the
/// seed that caught it, the property, and the steps taken until then.
#[test]
fn every_fault_is_caught_by_the_simulator() {
    let mut missed = Vec::new();
    println!("{:<32} {:>5} {:>5} {:<22} {:>6}", "fault", "nodes", "seed", "property", "steps");
    for &fault in Fault::ALL {
        let catch = first_catch(fault);
        let panics = if catch.panics.is_empty() {
            String::new()
        } else {
            format!("  (runs that panicked first: {:?})", catch.panics)
        };
        match catch.first {
            Some((nodes, seed, v)) => {
                let property = format!("{:?}", v.property);
                println!("{:<32} {nodes:>5} {seed:>5} {property:<22} {:>6}{panics}", fault.name(), v.step);
            }
            None => {
                println!("{:<32} not caught{panics}", fault.name());
                missed.push(fault.name());
            }
        }
    }
    println!("mutation harness: {} of {} faults caught", Fault::ALL.len() - missed.len(), Fault::ALL.len());
    assert!(missed.is_empty(), "no seed caught these faults: {missed:?}");
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

// Scenarios: runs without random faults (clients still propose, and every
// property is still checked after every step), where the test cuts links,
// asks for transfers and reads the history of who led when. Each runs a few
// seeds, so that timers and message delays differ, and ends with the
// liveness phase, which must converge.

/// Seeds per scenario.
const SCENARIO_SEEDS: u64 = 8;

/// A run of `nodes` with no random faults and pre-vote and check-quorum as
/// given.
fn quiet(nodes: u64, seed: u64, pre_vote: bool, check_quorum: bool) -> Sim {
    let trace = std::env::var_os("SIM_TRACE").is_some();
    let options = Options {
        chaos: false,
        pre_vote: Some(pre_vote),
        check_quorum: Some(check_quorum),
        trace,
        ..Options::new(nodes, seed)
    };
    Sim::new(options)
}

fn ok<T>(result: Result<T, Violation>) -> T {
    result.unwrap_or_else(|v| panic!("{v}"))
}

/// Runs until one leader that every node follows; returns it and its term.
fn settle(sim: &mut Sim) -> (usize, Term) {
    let deadline = sim.now_us() + 5_000_000;
    while sim.now_us() < deadline {
        ok(sim.run_for(20_000));
        if let Some(leader) = sim.agreed_leader() {
            return leader;
        }
    }
    panic!("no agreed leader within 5 s of a fault-free start");
}

/// The changes of who leads after `since_us`.
fn changes_since(sim: &Sim, since_us: u64) -> Vec<LeadershipChange> {
    sim.leadership().iter().filter(|c| c.time_us > since_us).copied().collect()
}

/// The minimum election timeout, in microseconds.
fn election_timeout_min_us(sim: &Sim) -> u64 {
    sim.config().election_timeout().0.as_micros() as u64
}

/// A follower of a settled cluster is cut off for two seconds (many
/// election timeouts), then healed and given a second to settle. Returns
/// the leader and term before, the cut node's term while cut off, the time
/// of the heal, and the run.
fn cut_off_and_heal(nodes: u64, seed: u64, pre_vote: bool) -> ((usize, Term), Term, u64, Sim) {
    let mut sim = quiet(nodes, seed, pre_vote, false);
    let (leader, term) = settle(&mut sim);
    let cut = (leader + 1) % nodes as usize;
    sim.isolate(cut);
    ok(sim.run_for(2_000_000));
    let cut_term = sim.state(cut).expect("up").term();
    sim.heal();
    let healed_at = sim.now_us();
    ok(sim.run_for(1_000_000));
    ((leader, term), cut_term, healed_at, sim)
}

/// Thesis §9.6: with pre-vote on (check-quorum off, so that pre-vote alone
/// is tested), a follower cut off for many election timeouts asks for
/// pre-votes in vain and never raises its term; healed, it follows the
/// leader again, which kept its term throughout: no leader changed.
#[test]
fn s9_6_a_node_cut_off_and_healed_does_not_depose_the_leader() {
    for nodes in [3, 5] {
        for seed in 0..SCENARIO_SEEDS {
            let ((leader, term), cut_term, _, sim) = cut_off_and_heal(nodes, seed, true);
            let at = format!("{nodes} nodes, seed {seed}");
            assert_eq!(cut_term, term, "{at}: the cut-off node kept its term");
            assert_eq!(sim.agreed_leader(), Some((leader, term)), "{at}");
            let settled_at = sim.leadership().last().expect("a leader was elected").time_us;
            assert_eq!(changes_since(&sim, settled_at), vec![], "{at}: no leadership change after the first");
            ok(sim.finish());
        }
    }
}

/// The same cut-off follower with pre-vote off (§5 alone): it stands for
/// election in ever higher terms while cut off, and once healed its term
/// deposes the leader. This is what the test above rules out, and shows
/// the scenario can fail.
#[test]
fn s9_6_without_pre_vote_a_node_cut_off_and_healed_deposes_the_leader() {
    for nodes in [3, 5] {
        for seed in 0..SCENARIO_SEEDS {
            let ((leader, term), cut_term, healed_at, sim) = cut_off_and_heal(nodes, seed, false);
            let at = format!("{nodes} nodes, seed {seed}");
            assert!(cut_term > term, "{at}: the cut-off node's term rose to {cut_term:?}");
            let deposed = changes_since(&sim, healed_at).iter().any(|c| c.node == leader && !c.leads);
            assert!(deposed, "{at}: the leader of {term:?} was deposed after the heal");
            ok(sim.finish());
        }
    }
}

/// A settled cluster is split with its leader in the minority (alone of
/// three, with one follower of five). Returns the old leader and term, the
/// minority, the time of the split, and the run after `run_us` more.
fn split_with_leader_in_minority(
    nodes: u64,
    seed: u64,
    check_quorum: bool,
    run_us: u64,
) -> ((usize, Term), Vec<usize>, u64, Sim) {
    let mut sim = quiet(nodes, seed, true, check_quorum);
    let (leader, term) = settle(&mut sim);
    let minority: Vec<usize> = (0..(nodes as usize - 1) / 2).map(|k| (leader + k) % nodes as usize).collect();
    sim.partition(&minority);
    let split_at = sim.now_us();
    ok(sim.run_for(run_us));
    ((leader, term), minority, split_at, sim)
}

/// Thesis §6.2: with check-quorum on, a leader cut off with a minority
/// steps down within two minimum election timeouts (its check runs every
/// such timeout, and the one after the split finds no majority heard),
/// keeping its term; meanwhile the majority elects a leader of a newer
/// term. Healed, the cluster converges.
#[test]
fn s6_2_a_leader_in_the_minority_steps_down_within_two_election_timeouts() {
    let mut slowest = 0;
    for nodes in [3, 5] {
        for seed in 0..SCENARIO_SEEDS {
            let ((leader, term), minority, split_at, mut sim) =
                split_with_leader_in_minority(nodes, seed, true, 2_000_000);
            let at = format!("{nodes} nodes, seed {seed}");
            let bound = 2 * election_timeout_min_us(&sim);
            let changes = changes_since(&sim, split_at);
            let stepped_down = changes.iter().find(|c| c.node == leader && !c.leads).expect("stepped down");
            assert_eq!(stepped_down.term, term, "{at}");
            let after = stepped_down.time_us - split_at;
            assert!(after <= bound, "{at}: the leader stepped down {after}us after the split, over {bound}us");
            slowest = slowest.max(after);
            assert_eq!(sim.state(leader).expect("up").term(), term, "{at}: stepping down is no new term");
            let elected = changes.iter().find(|c| c.leads).expect("the majority elected a leader");
            assert!(!minority.contains(&elected.node) && elected.term > term, "{at}: {elected:?}");
            assert!(changes.iter().all(|c| !c.leads || !minority.contains(&c.node)), "{at}: the minority led again");
            sim.heal();
            ok(sim.finish());
        }
    }
    println!("check-quorum: the slowest step-down came {slowest}us after the split");
}

/// The same split with check-quorum off: the old leader goes on leading
/// its term in the minority, beside the majority's new leader, until the
/// heal. This is what the test above rules out, and shows it can fail.
#[test]
fn s6_2_without_check_quorum_a_leader_in_the_minority_keeps_leading() {
    for nodes in [3, 5] {
        for seed in 0..SCENARIO_SEEDS {
            let ((leader, term), _, split_at, mut sim) = split_with_leader_in_minority(nodes, seed, false, 2_000_000);
            let at = format!("{nodes} nodes, seed {seed}");
            assert!(sim.state(leader).expect("up").is_leader(), "{at}: still in the leader role");
            assert_eq!(sim.state(leader).expect("up").term(), term, "{at}");
            let changes = changes_since(&sim, split_at);
            assert!(changes.iter().any(|c| c.leads && c.term > term), "{at}: and the majority elected another");
            sim.heal();
            ok(sim.finish());
        }
    }
}

/// A settled three-node cluster, leader A, whose link between A and B is
/// cut both ways: B cannot hear A, and both still reach C. Returns the
/// leader and term, the cut time, the leader's commit index then, and the
/// run three seconds on.
fn partial_partition(seed: u64, extensions: bool) -> ((usize, Term), u64, LogIndex, Sim) {
    let mut sim = quiet(3, seed, extensions, extensions);
    let (a, term) = settle(&mut sim);
    let b = (a + 1) % 3;
    sim.cut(a, b);
    sim.cut(b, a);
    let cut_at = sim.now_us();
    let commit = sim.state(a).expect("up").commit_index();
    ok(sim.run_for(3_000_000));
    ((a, term), cut_at, commit, sim)
}

/// Thesis §9.6 and §6.2 together, in a partial partition (A and B cannot
/// talk; both reach C): B's election timer fires again and again, but C
/// hears from the live leader A and refuses B's pre-votes, so B never
/// raises its term; A keeps leading its term and keeps committing with C.
#[test]
fn s9_6_s6_2_a_partial_partition_keeps_a_leader_that_commits() {
    for seed in 0..SCENARIO_SEEDS {
        let ((a, term), cut_at, commit, mut sim) = partial_partition(seed, true);
        let at = format!("seed {seed}");
        assert_eq!(changes_since(&sim, cut_at), vec![], "{at}: no leadership change");
        let leader = sim.state(a).expect("up");
        assert!(leader.is_leader() && leader.term() == term, "{at}");
        assert!(leader.commit_index().0 >= commit.0 + 5, "{at}: committed {commit:?} to {:?}", leader.commit_index());
        let b = (a + 1) % 3;
        assert_eq!(sim.state(b).expect("up").term(), term, "{at}: B never raised its term");
        sim.heal();
        ok(sim.finish());
    }
}

/// The same partial partition with both extensions off: B's elections, in
/// ever higher terms, reach C, whose next answer to A deposes it, again and
/// again. This is what the test above rules out, and shows it can fail.
#[test]
fn s9_6_s6_2_without_either_a_partial_partition_deposes_the_leader() {
    for seed in 0..SCENARIO_SEEDS {
        let ((a, term), cut_at, _, mut sim) = partial_partition(seed, false);
        let at = format!("seed {seed}");
        let changes = changes_since(&sim, cut_at);
        assert!(changes.iter().any(|c| c.node == a && c.term == term && !c.leads), "{at}: A deposed");
        sim.heal();
        ok(sim.finish());
    }
}

/// Thesis §3.10: a leader asked to hand its leadership to a follower that
/// holds its whole log does so within one term: the follower is elected in
/// the next term, and no other node leads or stands; every node follows it
/// well within an election timeout. With pre-vote and check-quorum in every
/// combination, in three and five nodes.
#[test]
fn s3_10_a_transfer_to_an_up_to_date_target_completes_in_one_term() {
    for nodes in [3, 5] {
        for (pre_vote, check_quorum) in [(false, false), (true, false), (false, true), (true, true)] {
            for seed in 0..SCENARIO_SEEDS / 2 {
                let at = format!("{nodes} nodes, pre-vote {pre_vote}, check-quorum {check_quorum}, seed {seed}");
                let mut sim = quiet(nodes, seed, pre_vote, check_quorum);
                let (leader, term) = settle(&mut sim);
                let target = (leader + 1) % nodes as usize;
                let last = |sim: &Sim, n: usize| sim.state(n).expect("up").log().last_index();
                for _ in 0..1_000 {
                    if last(&sim, target) == last(&sim, leader) {
                        break;
                    }
                    ok(sim.run_for(100));
                }
                assert_eq!(last(&sim, target), last(&sim, leader), "{at}: the target caught up");
                let asked_at = sim.now_us();
                ok(sim.input(leader, Input::TransferLeadership(NodeId(target as u64 + 1))));
                ok(sim.run_for(election_timeout_min_us(&sim)));
                // The target may win before the old leader hears of it: the
                // two changes come in either order.
                let mut changes: Vec<(usize, Term, bool)> =
                    changes_since(&sim, asked_at - 1).iter().map(|c| (c.node, c.term, c.leads)).collect();
                changes.sort();
                let mut expected = vec![(leader, term, false), (target, Term(term.0 + 1), true)];
                expected.sort();
                assert_eq!(changes, expected, "{at}");
                assert_eq!(sim.agreed_leader(), Some((target, Term(term.0 + 1))), "{at}");
                ok(sim.finish());
            }
        }
    }
}

/// Thesis §3.10: a transfer to a target that cannot be reached is given
/// up when its deadline passes (a minimum election timeout): meanwhile the
/// leader refuses proposals, naming the target; afterwards it accepts and
/// commits them again, in the same term, having never stopped leading.
#[test]
fn s3_10_an_abandoned_transfer_resumes_proposals() {
    for nodes in [3, 5] {
        for seed in 0..SCENARIO_SEEDS {
            let at = format!("{nodes} nodes, seed {seed}");
            let mut sim = quiet(nodes, seed, true, true);
            let (leader, term) = settle(&mut sim);
            let target = (leader + 1) % nodes as usize;
            sim.isolate(target);
            let asked_at = sim.now_us();
            let target_id = NodeId(target as u64 + 1);
            ok(sim.input(leader, Input::TransferLeadership(target_id)));
            let during = ok(sim.propose(leader, b"during"));
            assert_eq!(sim.answer(during), Some(Err(Rejection::Transferring { target: target_id })), "{at}");
            ok(sim.run_for(election_timeout_min_us(&sim) + 1));
            assert_eq!(sim.state(leader).expect("up").transfer_target(), None, "{at}: the transfer was given up");
            let after = ok(sim.propose(leader, b"after"));
            let Some(Ok((accepted_term, index))) = sim.answer(after) else {
                panic!("{at}: {:?}", sim.answer(after));
            };
            assert_eq!(accepted_term, term, "{at}");
            ok(sim.run_for(100_000));
            assert!(sim.state(leader).expect("up").commit_index() >= index, "{at}: and committed");
            assert_eq!(changes_since(&sim, asked_at), vec![], "{at}: the leader never stopped leading");
            sim.heal();
            ok(sim.finish());
        }
    }
}

/// The raft-dev bug of 2015 (thesis §4.2.3), played by hand in four voters
/// (pre-vote and check-quorum on), as `fault` allows: leader A removes D
/// while cut off, so the change {A, B, C} is in A's log alone; the others
/// elect L2, which at once, before committing an entry of its term, is
/// asked to remove A; L2's link to the third, Z, is cut just after Z voted
/// for it, so L2 commits {B, C, D} minus A with the remaining voter W
/// alone. Healed (but for L2 to Z), A stands with Z's vote: a majority of
/// A's membership that meets none of L2's. Returns how L2 answered the
/// change, and the run's end: a violation (A, elected, lacks the entries
/// L2 committed), or the liveness phase's outcome.
fn disjoint_majorities(
    seed: u64,
    fault: Option<Fault>,
) -> (Option<Result<LogIndex, ChangeRejection>>, Result<(), Violation>) {
    let trace = std::env::var_os("SIM_TRACE").is_some();
    let options =
        Options { chaos: false, pre_vote: Some(true), check_quorum: Some(true), fault, trace, ..Options::new(4, seed) };
    let mut sim = Sim::new(options);
    let (a, _) = settle(&mut sim);
    ok(sim.run_for(100_000)); // A's no-op commits: A may change the membership
    let d = (a + 1) % 4;
    sim.isolate(a);
    let first = ok(sim.change(a, Change::Remove(NodeId(d as u64 + 1))));
    assert!(matches!(sim.change_answer(first), Some(Ok(_))), "{:?}", sim.change_answer(first));
    let deadline = sim.now_us() + 5_000_000;
    let l2 = loop {
        assert!(sim.now_us() < deadline, "seed {seed}: the others elected no leader");
        ok(sim.run_for(20));
        if let Some(n) = (0..4).find(|&n| n != a && sim.state(n).is_some_and(|s| s.is_leader())) {
            break n;
        }
    };
    let z = (0..4).find(|&n| n != a && n != d && n != l2).expect("four nodes");
    sim.cut(l2, z);
    let second = ok(sim.change(l2, Change::Remove(NodeId(a as u64 + 1))));
    let answer = sim.change_answer(second);
    let run = (|| {
        sim.run_for(200_000)?;
        sim.heal();
        sim.cut(l2, z);
        sim.run_for(3_000_000)?;
        sim.heal();
        sim.finish().map(|_| ())
    })();
    (answer, run)
}

/// Thesis §4.2.3: with the 2015 fix, the new leader refuses the change
/// until it has committed an entry of its term, and the scenario above
/// breaks nothing.
#[test]
fn s4_2_3_a_leader_takes_no_change_before_committing_in_its_term() {
    for seed in 0..SCENARIO_SEEDS {
        let (answer, run) = disjoint_majorities(seed, None);
        assert_eq!(answer, Some(Err(ChangeRejection::LeaderNotReady)), "seed {seed}");
        ok(run);
    }
}

/// The same scenario without the fix (`Fault::ChangeBeforeTermCommit`):
/// both changes are taken, two majorities that do not meet each decide,
/// and an entry committed by one is missing from a leader elected by the
/// other.
#[test]
fn s4_2_3_without_the_fix_two_changes_make_disjoint_majorities() {
    for seed in 0..SCENARIO_SEEDS {
        let (answer, run) = disjoint_majorities(seed, Some(Fault::ChangeBeforeTermCommit));
        assert!(matches!(answer, Some(Ok(_))), "seed {seed}: {answer:?}");
        let violation = run.expect_err("a committed entry is lost");
        println!("with ChangeBeforeTermCommit, scenario seed {seed}: {violation}");
        assert_eq!(violation.property, Property::LeaderCompleteness, "seed {seed}: {violation}");
    }
}
