//! The core alone: how many entries a 3-node cluster commits per second on
//! one core, when nothing but `step` costs anything.
//!
//! The cluster lives in memory: three states, a FIFO queue as a perfect,
//! instant network, and no disk (persist outputs are free). Node 1 is
//! already leader and both followers already take appends in streaming
//! mode. One iteration commits `ENTRIES_PER_ITERATION` proposals of 64
//! bytes on a fresh cluster, fed either in batches (one `Input::Propose`
//! per batch, as a driver that drains its client queue would) or one at a
//! time, running the network until it is quiet after each feed; each node's
//! application reports what it was delivered applied at once
//! (`Input::Applied`). The figure
//! is the leader's committed entries per second (criterion's elements/s);
//! each iteration checks that the leader delivered every entry.
//!
//! Run: `cargo bench -p raft-core --bench core`

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use raft_core::{Config, Input, Membership, NodeId, Output, Proposal, ProposalId, State, Timer};
use std::collections::VecDeque;
use std::hint::black_box;

/// Proposals committed per iteration: enough that one iteration lasts
/// milliseconds, few enough that the logs stay small in memory.
const ENTRIES_PER_ITERATION: u64 = 8_192;
/// The size of each proposal.
const PROPOSAL_BYTES: usize = 64;

struct Cluster {
    configs: Vec<Config>,
    states: Vec<State>,
    network: VecDeque<(NodeId, NodeId, raft_core::Message)>,
    outputs: Vec<Output>,
    /// Entries the leader has delivered.
    committed: u64,
}

impl Cluster {
    /// Three nodes, node 1 elected, followers streaming.
    fn ready() -> Cluster {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let membership = Membership::new(ids.clone()).expect("valid");
        let configs: Vec<Config> = ids.iter().map(|&id| Config::new(id)).collect();
        let states = configs.iter().map(|c| State::new(c, membership.clone()).0).collect();
        let mut cluster = Cluster { configs, states, network: VecDeque::new(), outputs: Vec::new(), committed: 0 };
        cluster.input(0, Input::Timeout(Timer::Election));
        cluster.run();
        // One proposal takes both followers from probing to streaming.
        cluster.input(0, Input::Propose(vec![Proposal { id: ProposalId(0), data: vec![0; PROPOSAL_BYTES] }]));
        cluster.run();
        assert!(cluster.states[0].is_leader() && cluster.committed == 1, "the benchmark cluster is not ready");
        cluster.committed = 0;
        cluster
    }

    fn input(&mut self, node: usize, input: Input) {
        self.outputs.clear();
        self.states[node].step(&self.configs[node], input, &mut self.outputs);
        let from = self.configs[node].id();
        let (mut applied, mut written) = (None, None);
        for output in self.outputs.drain(..) {
            match output {
                Output::Send { to, message } => self.network.push_back((from, to, message)),
                Output::PersistAsync { term, index, .. } => written = Some(Input::Persisted { term, index }),
                Output::Deliver(entries) => {
                    if node == 0 {
                        self.committed += entries.len() as u64;
                    }
                    applied = entries.last().map(|c| c.index);
                }
                _ => {}
            }
        }
        // The application applies what it is delivered at once and says so,
        // as a driver must for the core to deliver more than one window.
        if let Some(index) = applied {
            self.input(node, Input::Applied(index));
        }
        // An instant disk: a background write is durable at once.
        if let Some(written) = written {
            self.input(node, written);
        }
    }

    fn run(&mut self) {
        while let Some((from, to, message)) = self.network.pop_front() {
            self.input((to.0 - 1) as usize, Input::Receive { from, message });
        }
    }

    /// Commits `ENTRIES_PER_ITERATION` proposals fed `batch` at a time.
    fn commit_all(&mut self, batch: u64) {
        let mut next = 1;
        while next <= ENTRIES_PER_ITERATION {
            let proposals = (next..next + batch)
                .map(|id| Proposal { id: ProposalId(id), data: vec![id as u8; PROPOSAL_BYTES] })
                .collect();
            next += batch;
            self.input(0, Input::Propose(proposals));
            self.run();
        }
        assert_eq!(self.committed, ENTRIES_PER_ITERATION, "every proposal must commit");
    }
}

fn commit_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_nodes_64_byte_proposals");
    group.throughput(Throughput::Elements(ENTRIES_PER_ITERATION));
    group.sample_size(20);
    for batch in [1u64, 16, 64, 256] {
        group.bench_with_input(BenchmarkId::new("batch", batch), &batch, |b, &batch| {
            b.iter_batched(
                Cluster::ready,
                |mut cluster| {
                    cluster.commit_all(batch);
                    // Returned, so that freeing the logs is not timed.
                    black_box(cluster)
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
