//! A three-node cluster on a perfect FIFO network: election, replication,
//! forwarding and delivery, end to end.

mod common;

use raft_core::*;
use std::collections::VecDeque;

struct Cluster {
    configs: Vec<Config>,
    states: Vec<State>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    delivered: Vec<Vec<Vec<u8>>>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let membership = Membership::new(ids.clone()).unwrap();
        let configs: Vec<Config> = ids.iter().map(|&id| Config::new(id)).collect();
        let states = configs.iter().map(|c| State::new(c, membership.clone()).0).collect();
        Cluster { configs, states, queue: VecDeque::new(), delivered: vec![Vec::new(); n as usize] }
    }

    fn input(&mut self, node: usize, input: Input) {
        // An instant disk: background writes complete at once.
        let out = common::step(&self.configs[node], &mut self.states[node], input);
        for o in out {
            match o {
                Output::Send { to, message } => self.queue.push_back((self.configs[node].id(), to, message)),
                Output::Deliver(entries) => self.delivered[node].extend(entries.into_iter().map(|c| c.data)),
                _ => {}
            }
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, message)) = self.queue.pop_front() {
            self.input((to.0 - 1) as usize, Input::Receive { from, message });
            steps += 1;
            assert!(steps < 10_000, "network did not quiesce");
        }
    }
}

#[test]
fn elects_replicates_and_forwards() {
    let mut c = Cluster::new(3);
    c.input(0, Input::Timeout(Timer::Election));
    c.run();
    assert!(c.states[0].is_leader());
    assert_eq!(c.states[1].leader(), Some(NodeId(1)));
    c.input(0, Input::Propose(vec![Proposal { id: ProposalId(1), data: b"a".to_vec() }]));
    c.input(2, Input::Propose(vec![Proposal { id: ProposalId(1), data: b"b".to_vec() }]));
    c.run();
    // Followers learn the commit index with the next heartbeat.
    c.input(0, Input::Timeout(Timer::Heartbeat));
    c.run();
    for d in &c.delivered {
        assert_eq!(d, &vec![b"a".to_vec(), b"b".to_vec()]);
    }
}
