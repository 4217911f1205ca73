//! A deterministic discrete-event simulator over `raft_core::State::step`.
//!
//! Virtual time is in microseconds. Each node's outputs are executed in
//! order, as the runtime does: a `Persist` takes a disk write (nodes write
//! one at a time), and every later output of the same list waits for it:
//! sends leave and timers start only once the write is done. A
//! `PersistAsync` (a leader's own entries, a candidate's vote) takes its
//! turn on the disk too, but nothing waits for it: its completion comes
//! back as `Input::Persisted` when the write is done. (The disk's content
//! changes when a write is asked for: a crash is a timing event here, and
//! what it loses is not modelled.) Messages take
//! a latency drawn from the network's distribution and may be lost.

use raft_core::{Config, Input, LogIndex, Membership, MemoryStore, Message, NodeId, Output, State, Timer};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

/// Virtual time, in microseconds.
pub type Micros = u64;

/// A distribution of delays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Always the same delay.
    Fixed(Micros),
    /// Uniform over `min..=max`.
    Uniform {
        /// The shortest delay.
        min: Micros,
        /// The longest delay.
        max: Micros,
    },
}

impl Latency {
    /// Draws one delay.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Micros {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => rng.random_range(min..=max),
        }
    }

    /// The mean delay.
    pub fn mean(&self) -> Micros {
        match *self {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, max } => (min + max) / 2,
        }
    }
}

/// The simulated environment: network and disk delays and message loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    /// One-way message latency.
    pub network: Latency,
    /// Time for one durable write (write + fsync).
    pub disk: Latency,
    /// Probability that a message is lost, in `0.0..=1.0`.
    pub loss: f64,
}

impl NetworkConfig {
    /// The setup of the paper's Figure 16: a broadcast time (a round trip
    /// plus a disk write) of about 15 ms: 5 ms ± 1 ms each way and a 5 ms ±
    /// 1 ms disk write, no loss.
    pub fn paper() -> NetworkConfig {
        NetworkConfig {
            network: Latency::Uniform { min: 4_000, max: 6_000 },
            disk: Latency::Uniform { min: 4_000, max: 6_000 },
            loss: 0.0,
        }
    }
}

/// Something scheduled to happen at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A message arrives at `to`.
    Deliver {
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// A node's timer fires (ignored if re-armed or cancelled since:
    /// `generation` no longer matches).
    Timer {
        /// The node.
        node: NodeId,
        /// Which timer.
        timer: Timer,
        /// The arming it belongs to.
        generation: u64,
    },
    /// A node's background write is durable (ignored if the node crashed
    /// since: `lifetime` no longer matches).
    Written {
        /// The node.
        node: NodeId,
        /// The completion to report.
        report: Input,
        /// The node's lifetime when it asked for the write.
        lifetime: u64,
    },
}

struct SimNode {
    config: Config,
    state: State,
    alive: bool,
    disk_free_at: Micros,
    timer_generation: [u64; TIMER_KINDS],
    /// What the node persisted.
    disk: MemoryStore,
    /// How many times the node crashed.
    lifetime: u64,
}

/// A cluster of raft-core nodes in virtual time.
pub struct Sim {
    now: Micros,
    nodes: Vec<SimNode>,
    queue: BTreeMap<(Micros, u64), Event>,
    sequence: u64,
    rng: ChaCha8Rng,
    net: NetworkConfig,
    trace: DefaultHasher,
    events: u64,
}

/// raft-core's timer kinds, each with its own generation counter.
const TIMER_KINDS: usize = 4;

fn timer_slot(timer: Timer) -> usize {
    match timer {
        Timer::Election => 0,
        Timer::Heartbeat => 1,
        Timer::CheckQuorum => 2,
        Timer::Transfer => 3,
    }
}

fn micros(d: Duration) -> Micros {
    d.as_micros() as Micros
}

impl Sim {
    /// A cluster of brand-new nodes with these configurations (node `i` of
    /// the vector must have id `i + 1`), started at time 0.
    pub fn new(configs: Vec<Config>, net: NetworkConfig, seed: u64) -> Sim {
        let mut sim = Sim {
            now: 0,
            nodes: Vec::with_capacity(configs.len()),
            queue: BTreeMap::new(),
            sequence: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            net,
            trace: DefaultHasher::new(),
            events: 0,
        };
        let membership = Membership::new(configs.iter().map(|c| c.id())).expect("at least one node");
        for (i, config) in configs.into_iter().enumerate() {
            assert_eq!(config.id(), NodeId(i as u64 + 1), "node ids must be 1..=n in order");
            let (state, outputs) = State::new(&config, membership.clone());
            sim.nodes.push(SimNode {
                config,
                state,
                alive: true,
                disk_free_at: 0,
                timer_generation: [0; TIMER_KINDS],
                disk: MemoryStore::new(),
                lifetime: 0,
            });
            sim.execute(NodeId(i as u64 + 1), outputs);
        }
        sim
    }

    /// The current virtual time.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// The node with this id.
    pub fn state(&self, id: NodeId) -> &State {
        &self.node(id).state
    }

    /// Whether the node is running.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.node(id).alive
    }

    /// The ids of all nodes.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (1..=self.nodes.len() as u64).map(NodeId)
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// A hash of every event applied so far, in order: two runs with the
    /// same seed and inputs have the same trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace.finish()
    }

    /// The RNG, for experiments that draw from the same seeded stream.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Removes and returns the next event, advancing the clock to its time.
    /// The caller then [`apply`](Sim::apply)s it (possibly changed) or drops it.
    pub fn pop(&mut self) -> Option<Event> {
        let ((at, _), event) = self.queue.pop_first()?;
        self.now = at;
        Some(event)
    }

    /// The time of the next event, if any.
    pub fn peek_time(&self) -> Option<Micros> {
        self.queue.keys().next().map(|&(at, _)| at)
    }

    /// Applies an event at the current time.
    pub fn apply(&mut self, event: Event) {
        self.events += 1;
        (self.now, &event).hash(&mut self.trace);
        match event {
            Event::Deliver { from, to, message } => {
                if self.node(to).alive {
                    self.input(to, Input::Receive { from, message });
                }
            }
            Event::Timer { node, timer, generation } => {
                let n = self.node(node);
                if n.alive && n.timer_generation[timer_slot(timer)] == generation {
                    self.input(node, Input::Timeout(timer));
                }
            }
            Event::Written { node, report, lifetime } => {
                let n = self.node(node);
                if n.alive && n.lifetime == lifetime {
                    self.input(node, report);
                }
            }
        }
    }

    /// Feeds an input to a node now and executes its outputs.
    pub fn input(&mut self, id: NodeId, input: Input) {
        let mut outputs = Vec::new();
        let n = self.node_mut(id);
        n.state.step(&n.config, input, &mut outputs);
        self.execute(id, outputs);
    }

    /// Crashes a node: it stops, its timers die, messages to it are lost,
    /// and everything it had not persisted is gone.
    pub fn crash(&mut self, id: NodeId) {
        let n = self.node_mut(id);
        n.alive = false;
        n.lifetime += 1;
        n.timer_generation.iter_mut().for_each(|g| *g += 1);
    }

    /// Restarts a crashed node from what it persisted.
    pub fn restart(&mut self, id: NodeId) {
        let now = self.now;
        let n = self.node_mut(id);
        let (state, outputs) =
            State::recover(&n.config, n.disk.clone(), LogIndex(0)).expect("the simulator's disk is consistent");
        n.state = state;
        n.alive = true;
        n.disk_free_at = now;
        self.execute(id, outputs);
    }

    fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[(id.0 - 1) as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[(id.0 - 1) as usize]
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), event);
    }

    /// Executes outputs in order; `ready` is when the next output may run,
    /// pushed later by each disk write.
    fn execute(&mut self, id: NodeId, outputs: Vec<Output>) {
        let mut ready = self.now;
        let mut applied = None;
        for output in outputs {
            match output {
                Output::Persist(p) => {
                    let write = self.net.disk.sample(&mut self.rng);
                    let n = self.node_mut(id);
                    ready = ready.max(n.disk_free_at) + write;
                    n.disk_free_at = ready;
                    if let Err(refused) = n.disk.apply(&p) {
                        panic!("raft-core broke the persist contract: {refused}");
                    }
                }
                Output::PersistAsync { persist, term, index } => {
                    let write = self.net.disk.sample(&mut self.rng);
                    let n = self.node_mut(id);
                    let done = ready.max(n.disk_free_at) + write;
                    n.disk_free_at = done;
                    if let Err(refused) = n.disk.apply(&persist) {
                        panic!("raft-core broke the persist contract: {refused}");
                    }
                    let (report, lifetime) = (Input::Persisted { term, index }, n.lifetime);
                    self.schedule(done, Event::Written { node: id, report, lifetime });
                }
                Output::Send { to, message } => {
                    let lost = self.net.loss > 0.0 && self.rng.random_bool(self.net.loss);
                    if !lost {
                        let at = ready + self.net.network.sample(&mut self.rng);
                        self.schedule(at, Event::Deliver { from: id, to, message });
                    }
                }
                Output::SetTimer { timer, min, max } => {
                    let delay = self.rng.random_range(micros(min)..=micros(max));
                    let n = self.node_mut(id);
                    n.timer_generation[timer_slot(timer)] += 1;
                    let generation = n.timer_generation[timer_slot(timer)];
                    self.schedule(ready + delay, Event::Timer { node: id, timer, generation });
                }
                Output::CancelTimer(timer) => self.node_mut(id).timer_generation[timer_slot(timer)] += 1,
                Output::Deliver(_) => applied = Some(self.node(id).state.delivered_index()),
                _ => {}
            }
        }
        // The simulated application applies what it is given at once.
        if let Some(index) = applied {
            self.input(id, Input::Applied(index));
        }
    }
}
