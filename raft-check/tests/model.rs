//! The model checker checks what it claims: a pinned state space, every
//! `Sometimes` reachable, and each deliberate bug caught with a
//! counterexample that replays against raft-core alone.
//!
//! These run in debug builds under `cargo test --workspace`, so every model
//! here is small: terms up to 1 or 2, short logs, few clients.

use raft_check::actor::{server_index, Switches};
use raft_check::cli::until_any;
use raft_check::model::{ModelConfig, ModelKind, NetworkKind, Proposals};
use raft_check::properties::*;
use raft_check::replay::{replay, replay_json, steps_of_path, Event, Step};
use raft_check::symmetry;
use raft_core::{Config, Fault, Input, Message, NodeId, Output, Term};
use stateright::{Checker, Expectation, Model};

fn small() -> ModelConfig {
    ModelConfig { max_term: 1, max_log: 2, heartbeats: false, ..ModelConfig::default() }
}

fn configs(n: usize, hook: Option<fn(Config) -> Config>) -> Vec<Config> {
    let cfg = ModelConfig { servers: n, config_hook: hook, ..ModelConfig::default() };
    (0..n).map(|i| cfg.raft_config(i)).collect()
}

/// Any change to the adapter, the model or raft-core's state space shows
/// here. Exhaustive, depth-first with symmetry reduction, as `-m check`
/// without `--depth` runs it.
#[test]
fn pinned_unique_state_counts() {
    let no_crash = ModelConfig { crashes: 0, ..small() };
    let checker = no_crash.into_model().checker().symmetry_fn(symmetry::representative).spawn_dfs().join();
    for p in checker.model().properties().iter().filter(|p| p.expectation == Expectation::Always) {
        assert!(checker.discovery(p.name).is_none(), "{} fails", p.name);
    }
    assert_eq!(checker.unique_state_count(), 182);

    // Breadth-first to depth 6, as `-m check --depth 6` on the default model.
    let checker = ModelConfig::default().into_model().checker().target_max_depth(6).spawn_bfs().join();
    assert_eq!(checker.unique_state_count(), 1_982);
    assert!(checker.discovery(ELECTION_SAFETY).is_none());
}

/// `--depth N` counts the initial state as depth 1; states of depth N are
/// generated but not checked, as the CLI's help says.
#[test]
fn depth_counts_the_initial_state_and_the_last_level_is_not_checked() {
    let run = |depth| ModelConfig::default().into_model().checker().target_max_depth(depth).spawn_bfs().join();
    assert_eq!(run(1).unique_state_count(), 1);
    let model = ModelConfig::default().into_model();
    let successors = model.next_states(&model.init_states()[0]).len();
    assert_eq!(run(2).unique_state_count(), 1 + successors);
    // A granted vote is in flight after two actions (a timeout, a request
    // delivered): those states are depth 3, checked only from --depth 4.
    assert!(run(3).discovery(ACK_IN_FLIGHT).is_none());
    assert_eq!(run(4).discovery(ACK_IN_FLIGHT).expect("found at depth 3").into_actions().len(), 2);
}

/// Each `Sometimes` is reachable, so no `Always` passes vacuously. Each is
/// searched for on its own (breadth-first, stopping at the first example)
/// in a model just big enough for it.
#[test]
fn every_sometimes_is_discovered() {
    let no_crash = ModelConfig { crashes: 0, max_term: 2, max_log: 2, ..ModelConfig::default() };
    let cases = [
        (ELECTION_LIVENESS, no_crash.clone()),
        (LOG_LIVENESS, no_crash.clone()),
        (COMMIT_ON_TWO, no_crash.clone()),
        (ACK_IN_FLIGHT, no_crash.clone()),
        (LEADER_CHANGE_AFTER_COMMIT, ModelConfig { heartbeats: false, proposals: Proposals::None, ..no_crash.clone() }),
        (LEADER_AFTER_CRASH, ModelConfig { proposals: Proposals::None, ..small() }),
    ];
    for (name, cfg) in cases {
        let started = std::time::Instant::now();
        let checker = cfg.into_model().checker().finish_when(until_any(&[name])).spawn_bfs().join();
        let path = checker.discovery(name).unwrap_or_else(|| panic!("no example of {name}"));
        eprintln!("{name}: Path[{}] in {:?}", path.into_actions().len(), started.elapsed());
        for always in [ELECTION_SAFETY, LOG_MATCHING, LEADER_COMPLETENESS, STATE_MACHINE_SAFETY, LEADER_APPEND_ONLY] {
            assert!(checker.discovery(always).is_none(), "{always} failed");
        }
        assert!(checker.discovery(PERSIST_BEFORE_SEND).is_none());
    }
}

/// The bug of stateright's own Raft example: a node that forgets its vote
/// when it restarts can vote twice in a term, and two leaders follow.
#[test]
fn adapter_that_forgets_the_vote_on_recovery_breaks_election_safety() {
    let switches = Switches { forget_vote_on_recovery: true, ..Switches::default() };
    let cfg = ModelConfig { proposals: Proposals::None, switches, ..small() };
    let model = cfg.clone().into_model();
    let checker = model.checker().finish_when(until_any(&[ELECTION_SAFETY])).spawn_bfs().join();
    let path = checker.discovery(ELECTION_SAFETY).expect("two leaders in one term");
    let actions = path.clone().into_actions();
    assert!(actions.iter().any(|a| matches!(a, stateright::actor::ActorModelAction::Recover(_))), "{actions:?}");

    // The same inputs fed straight to raft-core, with the same recovery bug,
    // give two leaders of term 1.
    let steps = steps_of_path(checker.model(), &path);
    let broken = replay(configs(3, None), &steps, true);
    let terms: Vec<Term> = broken.leaders().iter().map(|l| l.0).collect();
    assert_eq!(terms, vec![Term(1), Term(1)], "{steps:#?}");
    // The second vote came from the node that recovered: with a correct
    // recovery it refuses that request.
    let recovered = steps.iter().rev().find(|s| s.event == Event::Recover).expect("a recovery").node;
    let last_request = steps
        .iter()
        .rposition(|s| {
            s.node == recovered
                && matches!(&s.event, Event::Input(Input::Receive { message: Message::RequestVote(_), .. }))
        })
        .expect("the recovered node answers a vote request");
    let prefix = &steps[..=last_request];
    let i = server_index(recovered);
    assert_eq!(vote_answer(&replay(configs(3, None), prefix, true).last_outputs[i]), Some(true));
    assert_eq!(vote_answer(&replay(configs(3, None), prefix, false).last_outputs[i]), Some(false));
}

fn vote_answer(outputs: &[Output]) -> Option<bool> {
    outputs.iter().find_map(|o| match o {
        Output::Send { message: Message::RequestVoteResponse(r), .. } => Some(r.granted),
        _ => None,
    })
}

fn grant_second_vote(config: Config) -> Config {
    config.with_fault(Fault::GrantSecondVote)
}

#[test]
fn granting_a_second_vote_breaks_election_safety() {
    let cfg = ModelConfig { proposals: Proposals::None, crashes: 0, config_hook: Some(grant_second_vote), ..small() };
    let checker = cfg.into_model().checker().finish_when(until_any(&[ELECTION_SAFETY])).spawn_bfs().join();
    let path = checker.discovery(ELECTION_SAFETY).expect("two leaders in one term");
    let steps = steps_of_path(checker.model(), &path);
    let cluster = replay(configs(3, Some(grant_second_vote)), &steps, false);
    assert_eq!(cluster.leaders().len(), 2, "{steps:#?}");
}

/// A counterexample as the CLI wrote it (the `steps` of its replay file)
/// for the GrantSecondVote fault, kept as a regression test: n1 and n3 both
/// start an election in term 1 and n2 grants both.
#[test]
fn replayed_counterexample_elects_two_leaders_in_term_1() {
    let json = r#"[{"node":1,"event":"Start"},{"node":2,"event":"Start"},{"node":3,"event":"Start"},
        {"node":1,"event":{"Input":{"Timeout":"Election"}}},
        {"node":3,"event":{"Input":{"Timeout":"Election"}}},
        {"node":2,"event":{"Input":{"Receive":{"from":1,"message":{"RequestVote":{"term":1,"last_log_index":0,"last_log_term":0}}}}}},
        {"node":2,"event":{"Input":{"Receive":{"from":3,"message":{"RequestVote":{"term":1,"last_log_index":0,"last_log_term":0}}}}}},
        {"node":1,"event":{"Input":{"Receive":{"from":2,"message":{"RequestVoteResponse":{"term":1,"granted":true}}}}}},
        {"node":3,"event":{"Input":{"Receive":{"from":2,"message":{"RequestVoteResponse":{"term":1,"granted":true}}}}}}]"#;
    let faulty = replay_json(configs(3, Some(grant_second_vote)), json, false);
    assert_eq!(faulty.leaders(), vec![(Term(1), NodeId(1)), (Term(1), NodeId(3))]);
    // Without the fault raft-core refuses n3's request (step 7) at n2.
    let steps: Vec<Step> = serde_json::from_str(json).unwrap();
    assert_eq!(
        vote_answer(&replay(configs(3, Some(grant_second_vote)), &steps[..7], false).last_outputs[1]),
        Some(true)
    );
    assert_eq!(vote_answer(&replay(configs(3, None), &steps[..7], false).last_outputs[1]), Some(false));
}

fn kv(switches: Switches) -> ModelConfig {
    ModelConfig { kind: ModelKind::Kv, clients: 1, crashes: 0, switches, ..small() }
}

/// Reads served from a server's local state machine (bypassing the log) can
/// miss a write that completed before the read began.
#[test]
fn kv_reads_that_bypass_the_log_can_be_stale() {
    let switches = Switches { reads_bypass_log: true, ..Switches::default() };
    let checker = kv(switches).into_model().checker().finish_when(until_any(&[LINEARIZABLE])).spawn_bfs().join();
    let path = checker.discovery(LINEARIZABLE).expect("a stale read");
    let last = path.last_state();
    let tester = last.history.register.as_ref().expect("kv history");
    assert!(format!("{tester:?}").contains("ReadOk(0)"), "{tester:?}");
}

/// Reads through ReadIndex (no log entry) are linearizable, and do
/// complete: the whole bounded state space is explored (no early stop), so
/// the Always is checked on every reachable state, and a completed read
/// shows it is not vacuous.
#[test]
fn kv_reads_through_read_index_are_linearizable() {
    let cfg = ModelConfig { max_log: 3, ..kv(Switches::default()) };
    let checker = cfg.into_model().checker().spawn_dfs().join();
    assert!(checker.is_done());
    assert!(checker.discovery(LINEARIZABLE).is_none(), "a non-linearizable history");
    assert!(checker.discovery(READ_COMPLETED).is_some(), "no read completed: the property would be vacuous");
    assert!(checker.unique_state_count() > 10_000, "{} states", checker.unique_state_count());
}

/// Symmetry reduction only merges equivalent states: on states from random
/// walks, every property has the same value on a state and on its
/// representative (the Always ones: some Sometimes look at messages the
/// representative drops as garbage).
#[test]
fn representatives_agree_on_every_property() {
    for network in [NetworkKind::UnorderedNonduplicating, NetworkKind::UnorderedDuplicating, NetworkKind::Ordered] {
        let cfg = ModelConfig { network, max_term: 2, max_log: 3, ..ModelConfig::default() };
        let model = cfg.into_model();
        let properties = model.properties();
        let mut checked = 0;
        for seed in 0..20 {
            let mut state = model.init_states().remove(0);
            for step in 0..40u64 {
                let rep = symmetry::representative(&state);
                for p in properties.iter().filter(|p| p.expectation == Expectation::Always) {
                    assert_eq!((p.condition)(&model, &state), (p.condition)(&model, &rep), "{} on {state:?}", p.name);
                }
                checked += 1;
                let next = model.next_states(&state);
                let next: Vec<_> = next.into_iter().filter(|s| Model::within_boundary(&model, s)).collect();
                if next.is_empty() {
                    break;
                }
                state = next[((seed * 7 + step * 13) % next.len() as u64) as usize].clone();
            }
        }
        assert!(checked > 100);
    }
}
