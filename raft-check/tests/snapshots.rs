//! Snapshots in the model: off by default (the default model's state space
//! is pinned in `model.rs` and does not move), and when on, a small model
//! explored exhaustively keeps every property, reaches the states the
//! snapshot properties are about, and its paths replay against raft-core
//! alone. The faults that break the snapshot rules are caught by the
//! mutation harness (`mutants.rs`); here each is also shown to break the
//! property named after its rule.
//!
//! These run in debug builds under `cargo test --workspace`, so every model
//! here is small: terms up to 1, logs of at most 2 entries.

use raft_check::actor::server_index;
use raft_check::cli::until_any;
use raft_check::model::{ModelConfig, ModelKind};
use raft_check::properties::*;
use raft_check::replay::{replay, steps_of_path, Event};
use raft_check::simulate::{simulate, Weights};
use raft_check::symmetry;
use raft_core::{Config, Fault, Input, LogIndex, Message, Output};
use stateright::{Checker, Expectation, Model};

/// One snapshot per server, terms up to 1, logs up to 2 entries, no crash.
fn small() -> ModelConfig {
    ModelConfig { snapshots: 1, max_term: 1, max_log: 2, crashes: 0, ..ModelConfig::default() }
}

fn configs(cfg: &ModelConfig) -> Vec<Config> {
    (0..cfg.servers).map(|i| cfg.raft_config(i)).collect()
}

/// The whole bounded space, depth-first with symmetry reduction: every
/// Always holds, a follower is caught up by a leader's snapshot, and the
/// number of states is pinned so that a change to it shows in review.
#[test]
fn a_small_snapshot_model_keeps_every_property_and_is_pinned() {
    let checker = small().into_model().checker().symmetry_fn(symmetry::representative).spawn_dfs().join();
    assert!(checker.is_done());
    for p in checker.model().properties().iter().filter(|p| p.expectation == Expectation::Always) {
        assert!(checker.discovery(p.name).is_none(), "{} fails", p.name);
    }
    assert!(checker.discovery(CAUGHT_UP_BY_SNAPSHOT).is_some(), "no follower was caught up by a snapshot");
    assert_eq!(checker.unique_state_count(), 63_347);
}

/// The snapshot properties exist only in models with snapshots.
#[test]
fn snapshot_properties_only_with_snapshots() {
    let names = |cfg: ModelConfig| -> Vec<&'static str> {
        cfg.into_model().properties().iter().map(|p| p.name).collect::<Vec<_>>()
    };
    let off = names(ModelConfig::default());
    for name in [RESTORE_KEEPS_APPLIED, SNAPSHOT_COVERS_COMMITTED, CAUGHT_UP_BY_SNAPSHOT, RECOVERED_FROM_SNAPSHOT] {
        assert!(!off.contains(&name), "{name} in the default model");
    }
    let on = names(ModelConfig { snapshots: 1, ..ModelConfig::default() });
    for name in [RESTORE_KEEPS_APPLIED, SNAPSHOT_COVERS_COMMITTED, CAUGHT_UP_BY_SNAPSHOT, RECOVERED_FROM_SNAPSHOT] {
        assert!(on.contains(&name), "{name} missing");
    }
}

/// A follower caught up by a snapshot, found breadth-first: the path's
/// raft-core inputs replayed with no checker and no snapshot data (the
/// core never sees any) leave the follower with the leader's snapshot, its
/// log compacted through it and its commit index there.
#[test]
fn a_follower_caught_up_by_a_snapshot_replays_against_raft_core_alone() {
    let cfg = small();
    let checker =
        cfg.clone().into_model().checker().finish_when(until_any(&[CAUGHT_UP_BY_SNAPSHOT])).spawn_bfs().join();
    let path = checker.discovery(CAUGHT_UP_BY_SNAPSHOT).expect("a follower caught up by a snapshot");
    let steps = steps_of_path(checker.model(), &path);
    assert!(steps.iter().any(|s| matches!(s.event, Event::Input(Input::SnapshotTaken(_)))), "{steps:#?}");
    let last = steps.last().expect("at least one step");
    let Event::Input(Input::Receive { message: Message::InstallSnapshot(install), .. }) = &last.event else {
        panic!("the last step is not an InstallSnapshot: {last}");
    };
    let cluster = replay(configs(&cfg), &steps, false);
    let i = server_index(last.node);
    let follower = cluster.states[i].as_ref().expect("the follower is up");
    assert_eq!(follower.snapshot(), Some(&install.snapshot));
    assert_eq!(follower.log().compacted_index(), install.snapshot.index);
    assert_eq!(follower.commit_index(), install.snapshot.index);
    assert_eq!(cluster.storage[i].snapshot.as_ref(), Some(&install.snapshot));
    assert!(cluster.last_outputs[i].contains(&Output::RestoreSnapshot(install.snapshot.clone())));
}

/// A node that crashes after taking a snapshot restarts from it.
#[test]
fn a_node_recovers_from_its_snapshot_after_a_crash() {
    let cfg = ModelConfig { crashes: 1, ..small() };
    let checker =
        cfg.clone().into_model().checker().finish_when(until_any(&[RECOVERED_FROM_SNAPSHOT])).spawn_bfs().join();
    let path = checker.discovery(RECOVERED_FROM_SNAPSHOT).expect("a recovery from a snapshot");
    let steps = steps_of_path(checker.model(), &path);
    assert_eq!(steps.last().map(|s| &s.event), Some(&Event::Recover), "{steps:#?}");
    let cluster = replay(configs(&cfg), &steps, false);
    let i = server_index(steps.last().expect("a step").node);
    let recovered = cluster.states[i].as_ref().expect("up again");
    let snapshot = recovered.snapshot().expect("recovered with a snapshot");
    assert!(snapshot.index > LogIndex(0));
    assert_eq!(recovered.commit_index(), snapshot.index);
    assert!(matches!(cluster.last_outputs[i].first(), Some(Output::RestoreSnapshot(meta)) if meta == snapshot));
}

fn compact_past_commit(config: Config) -> Config {
    config.with_fault(Fault::CompactPastCommit)
}

fn install_discards_matching_suffix(config: Config) -> Config {
    config.with_fault(Fault::InstallDiscardsMatchingSuffix)
}

/// A core that takes a snapshot of entries it does not know committed
/// breaks the rule that names it, in a few steps.
#[test]
fn compacting_past_the_commit_index_breaks_snapshot_covers_committed() {
    let cfg = ModelConfig { config_hook: Some(compact_past_commit), ..small() };
    let checker = cfg.into_model().checker().finish_when(until_any(&[SNAPSHOT_COVERS_COMMITTED])).spawn_bfs().join();
    let path = checker.discovery(SNAPSHOT_COVERS_COMMITTED).expect("a snapshot past the commit index");
    let steps = path.into_actions().len();
    assert!(steps <= 8, "{steps} steps");
}

/// A follower that installs a snapshot, discards the entries after it that
/// matched the leader's, and acknowledges them anyway: its acknowledgement
/// is not backed by what it stored. Needs a log that goes on past the
/// snapshot's index: logs of 3 entries.
#[test]
fn discarding_a_matching_suffix_on_install_breaks_persist_before_send() {
    let cfg = ModelConfig { max_log: 3, config_hook: Some(install_discards_matching_suffix), ..small() };
    let names = [PERSIST_BEFORE_SEND, MATCH_INDEX_SOUND];
    let checker = cfg.into_model().checker().finish_when(until_any(&names)).spawn_bfs().join();
    assert!(names.iter().any(|n| checker.discovery(n).is_some()), "the fault escaped");
}

/// The kv model with snapshots: a client's write and its read at another
/// server stay linearizable when servers compact and catch up by
/// snapshots, on 1,000 seeded walks (the exhaustive space is a million
/// states, too many for a debug build), which complete a read and catch a
/// follower up by a snapshot.
#[test]
fn kv_with_snapshots_is_linearizable() {
    let cfg = ModelConfig { kind: ModelKind::Kv, clients: 1, max_term: 2, max_log: 3, ..small() };
    let model = cfg.into_model();
    let weights = Weights { deliver: 16, timeout: 4, crash: 1, slow: 1, operator: 4 };
    let outcome = simulate(&model, 1, 1_000, 80, weights, false, |_, _, _| {});
    for p in model.properties().iter().filter(|p| p.expectation == Expectation::Always) {
        assert!(!outcome.discoveries.contains_key(p.name), "{} fails", p.name);
    }
    for name in [READ_COMPLETED, CAUGHT_UP_BY_SNAPSHOT] {
        assert!(outcome.discoveries.contains_key(name), "no example of {name}");
    }
}

/// Symmetry reduction only merges equivalent states, snapshots included:
/// every Always has the same value on a state and its representative.
#[test]
fn representatives_agree_with_snapshots() {
    let cfg = ModelConfig { snapshots: 2, max_term: 2, max_log: 3, ..ModelConfig::default() };
    let model = cfg.into_model();
    let properties = model.properties();
    let mut with_snapshot = 0;
    for seed in 0..30u64 {
        let mut state = model.init_states().remove(0);
        for step in 0..60u64 {
            let rep = symmetry::representative(&state);
            for p in properties.iter().filter(|p| p.expectation == Expectation::Always) {
                assert_eq!((p.condition)(&model, &state), (p.condition)(&model, &rep), "{} on {state:?}", p.name);
            }
            with_snapshot += usize::from(format!("{state:?}").contains("data "));
            let next: Vec<_> =
                model.next_states(&state).into_iter().filter(|s| Model::within_boundary(&model, s)).collect();
            if next.is_empty() {
                break;
            }
            state = next[((seed * 7 + step * 13) % next.len() as u64) as usize].clone();
        }
    }
    assert!(with_snapshot > 0, "no walk took a snapshot");
}
