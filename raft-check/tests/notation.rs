//! The notation table (`raft_check::notation::NOTATION`) lists every
//! notation the checker's output uses: every marker that the state,
//! message and timer formatters and the trace's node rows produce, on the
//! states of random walks through several models, appears in the table's
//! left-hand column; and the README shows the table as it is.

use raft_check::actor::{node_at, NodeState};
use raft_check::model::{in_flight, ModelConfig, ModelKind, Proposals, RaftModel, RaftState};
use raft_check::notation::{markdown_table, markers, table_markers};
use raft_check::report::NodeRow;
use stateright::Model;
use std::collections::BTreeSet;

/// What the formatters print for one state: each actor's state, each
/// storage, each message in flight, each timer, and each server's row in
/// a trace.
fn texts(state: &RaftState) -> Vec<String> {
    let mut texts = Vec::new();
    for (i, s) in state.actor_states.iter().enumerate() {
        texts.push(format!("{s:?}"));
        if let Some(storage) = &state.actor_storages[i] {
            texts.push(format!("{storage:?}"));
        }
        for timer in state.timers_set[i].iter() {
            texts.push(format!("{timer:?}"));
        }
        if let NodeState::Server(server) = &**s {
            let name = node_at(i).to_string();
            let rows = [
                NodeRow::of(name.clone(), &server.raft),
                NodeRow::down(name, state.actor_storages[i].as_deref().map(|d| &d.raft)),
            ];
            for row in rows {
                texts.extend([row.node, row.role, row.term, row.vote, row.commit, row.log, row.notes]);
            }
        }
    }
    texts.extend(in_flight(&state.network).map(|e| format!("{:?}", e.msg)));
    texts
}

/// A text as the table covers it: a `BROKEN` node's flags, and the
/// results inside the two responses the table gives as `...`, are Rust's
/// derived Debug, not notation.
fn notation_part(text: &str) -> &str {
    let text = text.split(" BROKEN ").next().unwrap_or(text);
    for response in ["ForwardResponse(", "ReadIndexResponse("] {
        if let Some(at) = text.find(response) {
            return &text[..at + response.len()];
        }
    }
    text
}

/// Random walks (a fixed sequence of choices) through `model`, collecting
/// every marker of every state's texts.
fn walk_markers(model: &RaftModel, walks: u64, steps: u64) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for seed in 0..walks {
        let mut state = model.init_states().remove(0);
        for step in 0..steps {
            for text in texts(&state) {
                found.extend(markers(notation_part(&text)));
            }
            let next: Vec<_> = model.next_states(&state).into_iter().filter(|s| model.within_boundary(s)).collect();
            if next.is_empty() {
                break;
            }
            let k =
                (seed.wrapping_mul(7919) ^ step.wrapping_mul(104_729)).wrapping_add(seed * step) % next.len() as u64;
            state = next[k as usize].clone();
        }
    }
    found
}

#[test]
fn every_marker_the_formatters_produce_is_in_the_table() {
    let base = ModelConfig { max_term: 3, max_log: 4, ..ModelConfig::default() };
    let models = [
        base.clone(),
        ModelConfig {
            split_appends: true,
            pre_vote: true,
            check_quorum: true,
            transfers: true,
            crashes: 0,
            ..base.clone()
        },
        ModelConfig { snapshots: 1, ..base.clone() },
        ModelConfig { kind: ModelKind::Kv, clients: 2, crashes: 0, ..base.clone() },
        ModelConfig { proposals: Proposals::Clients, clients: 1, ..base },
    ];
    let table = table_markers();
    let mut produced = BTreeSet::new();
    for cfg in models {
        produced.extend(walk_markers(&cfg.into_model(), 40, 60));
    }
    let missing: Vec<&String> = produced.difference(&table).collect();
    assert!(missing.is_empty(), "markers the formatters produce that the notation table lacks: {missing:?}");
    // The walks reach the forms the table is for, so the test is not vacuous.
    for marker in ["L", "C", "P", "*", "@", "pending", "snapshot", "Append", "AppendOk", "Vote", "PreVote", "down"] {
        assert!(produced.contains(marker), "no walk produced {marker:?}: {produced:?}");
    }
}

#[test]
fn the_readme_shows_the_notation_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("the README");
    assert!(readme.contains(&markdown_table()), "README.md lacks the notation table; it is:\n{}", markdown_table());
}
