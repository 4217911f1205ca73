//! The mutation harness: the checker is only as good as the bugs it
//! catches. Every rule of raft-core broken on purpose (`raft_core::Fault`)
//! must be caught by the CI profiles, by a property and not by a crash;
//! the correct core must pass every profile with every `Sometimes` found;
//! and a panic inside raft-core is a counterexample like any other.
//!
//! `-m mutants` and `-m profiles` on the command line run the same code and
//! print the same table.

use raft_check::actor::{server_index, Switches};
use raft_check::cli::until_any;
use raft_check::model::{ModelConfig, Proposals};
use raft_check::profiles::{catch, ci_profiles, run};
use raft_check::properties::{ELECTION_LIVENESS, NO_PANIC};
use raft_check::replay::steps_of_path;
use raft_core::Fault;
use stateright::{Checker, Model};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn every_fault_is_caught_by_a_property_of_the_ci_profiles() {
    let profiles = ci_profiles();
    let mut escaped = Vec::new();
    for &fault in Fault::ALL {
        let caught = catch(fault, &profiles, threads());
        match &caught.by {
            Some((profile, property, steps, outcome)) => {
                eprintln!(
                    "{:<32} {profile:<12} {property:<22} {steps:>3} steps {:>8} unique {:>6.1} s",
                    fault.name(),
                    outcome.unique,
                    caught.elapsed.as_secs_f64()
                );
                assert_ne!(*property, NO_PANIC, "{fault:?} is caught only by a crash, not by a property");
            }
            None => escaped.push(fault),
        }
    }
    assert!(escaped.is_empty(), "faults that escaped every CI profile: {escaped:?}");
    assert!(Fault::ALL.len() >= 20, "the harness covers {} rules", Fault::ALL.len());
}

#[test]
fn the_correct_core_passes_every_ci_profile_and_reaches_every_sometimes() {
    for profile in ci_profiles() {
        let outcome = run(&profile, None, false, threads());
        let counterexamples: Vec<_> = outcome.counterexamples.iter().map(|(name, _)| *name).collect();
        assert!(counterexamples.is_empty(), "{}: {counterexamples:?}", profile.name);
        assert!(outcome.missing_examples.is_empty(), "{}: no example of {:?}", profile.name, outcome.missing_examples);
        assert!(outcome.unique > 100_000, "{}: only {} states", profile.name, outcome.unique);
    }
}

/// A broken contract makes raft-core's own assertion fail (here: the driver
/// steps a new leader with another node's configuration, and the end-of-step
/// invariant that a leader names itself fails). The
/// checker does not abort: the panic is caught, the node is marked, and No
/// Panic reports it with a path whose inputs replay against raft-core alone.
#[test]
fn a_panic_inside_raft_core_is_a_counterexample_with_a_path() {
    let switches = Switches { foreign_config_after_election: true, ..Switches::default() };
    let cfg = ModelConfig {
        proposals: Proposals::None,
        crashes: 0,
        max_term: 1,
        heartbeats: true,
        switches,
        ..ModelConfig::default()
    };
    let checker = cfg.into_model().checker().finish_when(until_any(&[NO_PANIC])).spawn_bfs().join();
    let path = checker.discovery(NO_PANIC).expect("the panic is reported as a No Panic counterexample");
    assert!(checker.discovery(ELECTION_LIVENESS).is_some(), "a leader was elected first");
    let steps = steps_of_path(checker.model(), &path);
    // The last step is the leader's first input after its election: a
    // heartbeat timeout or a message.
    let last = steps.last().expect("a path of at least one step");
    let leader = path.last_state().actor_states[server_index(last.node)].clone();
    assert!(format!("{leader:?}").contains("panicked: true"), "{leader:?}");
    assert!(checker.model().properties().iter().any(|p| p.name == NO_PANIC));
}

#[test]
fn faults_have_unique_names_and_rules() {
    let mut names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Fault::ALL.len());
    for &fault in Fault::ALL {
        assert_eq!(Fault::from_name(fault.name()), Some(fault));
        assert!(!fault.rule().is_empty() && !fault.section().is_empty());
    }
}
