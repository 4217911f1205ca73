//! Driving raft-core by hand: three nodes, a network that is a queue, and
//! a loop that executes outputs in order. This is all a runtime does.
//!
//! Run with `cargo run -p raft-core --example by_hand`.

use raft_core::{Config, Input, Membership, Message, NodeId, Output, Proposal, ProposalId, State, Timer};
use std::collections::VecDeque;

fn main() {
    let ids = [NodeId(1), NodeId(2), NodeId(3)];
    let membership = Membership::new(ids).expect("valid members");
    let configs: Vec<Config> = ids.iter().map(|&id| Config::new(id)).collect();
    let mut states: Vec<State> = configs.iter().map(|c| State::new(c, membership.clone()).0).collect();
    let mut network: VecDeque<(NodeId, NodeId, Message)> = VecDeque::new();

    // Node 1's election timer fires first; then a client proposes at node 3,
    // which forwards to the leader; a heartbeat tells followers the commit.
    let script = [
        (0, Input::Timeout(Timer::Election)),
        (2, Input::Propose(vec![Proposal { id: ProposalId(1), data: b"x=1".to_vec() }])),
        (0, Input::Timeout(Timer::Heartbeat)),
    ];
    for (node, input) in script {
        let mut pending = vec![(node, input)];
        while let Some((node, input)) = pending.pop() {
            let mut outputs = Vec::new();
            states[node].step(&configs[node], input, &mut outputs);
            for output in outputs {
                match output {
                    // A real driver writes and fsyncs here, before going on.
                    Output::Persist(p) => println!("n{} persists {p:?}", node + 1),
                    // A leader's own entries, a candidate's vote: a real
                    // driver writes them in the background and goes on; once
                    // durable, it reports them. Here the disk is instant.
                    Output::PersistAsync { persist, term, index } => {
                        println!("n{} persists in the background {persist:?}", node + 1);
                        pending.push((node, Input::Persisted { term, index }));
                    }
                    Output::Send { to, message } => network.push_back((ids[node], to, message)),
                    Output::Deliver(entries) => {
                        for e in &entries {
                            println!("n{} applies {:?} at {}", node + 1, String::from_utf8_lossy(&e.data), e.index);
                        }
                        // Once applied, the application says so, and the
                        // core delivers more (it holds back what would
                        // overflow the application's window).
                        if let Some(last) = entries.last() {
                            pending.push((node, Input::Applied(last.index)));
                        }
                    }
                    Output::LeaderChanged { leader, term } => {
                        println!("n{} sees leader {leader:?} in {term}", node + 1)
                    }
                    _ => {}
                }
            }
            if pending.is_empty() {
                if let Some((from, to, message)) = network.pop_front() {
                    pending.push(((to.0 - 1) as usize, Input::Receive { from, message }));
                }
            }
        }
    }
    assert!(states[0].is_leader());
    assert!(states.iter().all(|s| s.commit_index() == states[0].commit_index()));
}
