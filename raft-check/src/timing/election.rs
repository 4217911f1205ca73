//! The experiment of the Raft paper's Figure 16: how long a five-server
//! cluster is without a leader after its leader crashes, for a given range
//! of election timeouts.
//!
//! Each trial, on a fresh simulated cluster:
//! 1. a leader is elected and appends three entries that reach the
//!    followers unevenly, so the followers' logs end at different indexes
//!    and the two shortest cannot win an election (the paper's setup);
//! 2. at one of its heartbeats (a synchronized reset of every follower's
//!    timer), the leader's crash is scheduled at a uniformly random moment
//!    within its heartbeat interval, which is half the minimum election
//!    timeout;
//! 3. the trial measures from the crash until every surviving server other
//!    than the new leader has received an AppendEntries from it.
//!
//! A trial that has not finished after `limit` of virtual time is reported
//! as censored at the limit, so that a range that livelocks (no randomness)
//! cannot run forever.

use super::sim::{Event, Micros, NetworkConfig, Sim};
use raft_core::{Config, LogIndex, Message, NodeId, Proposal, ProposalId, Term, Timer};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The parameters of one run of trials.
#[derive(Clone, Debug)]
pub struct ElectionParams {
    /// Cluster size.
    pub nodes: u64,
    /// Election timeout range in milliseconds, inclusive.
    pub timeout_ms: (u64, u64),
    /// Number of trials.
    pub trials: u32,
    /// The seed from which every trial's seed is drawn.
    pub seed: u64,
    /// Network and disk.
    pub net: NetworkConfig,
    /// The longest a trial may run, in virtual time, after the crash.
    pub limit: Micros,
    /// Pre-vote (thesis §9.6) and check-quorum (§6.2) on.
    pub extensions: (bool, bool),
}

impl ElectionParams {
    /// The paper's setup for this timeout range.
    pub fn paper(timeout_ms: (u64, u64), trials: u32, seed: u64) -> ElectionParams {
        ElectionParams {
            nodes: 5,
            timeout_ms,
            trials,
            seed,
            net: NetworkConfig::paper(),
            limit: 60_000_000,
            extensions: (false, false),
        }
    }

    fn configs(&self) -> Vec<Config> {
        let ids: Vec<NodeId> = (1..=self.nodes).map(NodeId).collect();
        let (min, max) = (Duration::from_millis(self.timeout_ms.0), Duration::from_millis(self.timeout_ms.1));
        // The heartbeat interval is half the minimum election timeout, as
        // in the paper's experiment.
        let heartbeat = min / 2;
        ids.iter()
            .map(|&id| {
                Config::new(id)
                    .with_pre_vote(self.extensions.0)
                    .with_check_quorum(self.extensions.1)
                    .with_timing(min, max, heartbeat)
                    .expect("a valid experiment configuration")
            })
            .collect()
    }
}

/// The result of one trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialOutcome {
    /// A new leader reached every other survivor this long after the crash.
    Elected(Micros),
    /// No new leader was established within the limit.
    Censored(Micros),
}

impl TrialOutcome {
    /// The measured (or censored) time.
    pub fn micros(&self) -> Micros {
        match *self {
            TrialOutcome::Elected(t) | TrialOutcome::Censored(t) => t,
        }
    }
}

/// Runs every trial; the same parameters give the same outcomes.
pub fn run_trials(params: &ElectionParams) -> Vec<TrialOutcome> {
    let mut seeds = ChaCha8Rng::seed_from_u64(params.seed);
    let configs = params.configs();
    (0..params.trials).map(|_| trial(params, configs.clone(), seeds.random())).collect()
}

/// How many entries the leader appends during setup; follower `k` (in id
/// order) receives all but `k` of them.
const SETUP_ENTRIES: u64 = 3;

fn trial(params: &ElectionParams, configs: Vec<Config>, seed: u64) -> TrialOutcome {
    let mut sim = Sim::new(configs, params.net, seed);
    let old_leader = elect_first_leader(&mut sim);
    let old_term = sim.state(old_leader).term();
    let caps = uneven_caps(&sim, old_leader);
    let proposals = (0..SETUP_ENTRIES).map(|i| Proposal { id: ProposalId(i), data: vec![i as u8] }).collect();
    sim.input(old_leader, raft_core::Input::Propose(proposals));

    // Run until the leader's heartbeat timer fires after the followers
    // settled, then schedule the crash within one heartbeat interval.
    let settle_until = sim.now() + 4 * params.timeout_ms.1 * 1_000;
    let interval = params.timeout_ms.0 * 1_000 / 2;
    let last = sim.state(old_leader).log().last_index();
    let filter = |event| setup_filter(event, old_leader, &caps, last);
    let crash_at = loop {
        let Some(event) = sim.pop().and_then(filter) else { continue };
        let is_heartbeat = matches!(event, Event::Timer { node, timer: Timer::Heartbeat, .. } if node == old_leader);
        sim.apply(event);
        if is_heartbeat && sim.now() >= settle_until && sim.state(old_leader).is_leader() {
            break sim.now() + sim.rng().random_range(0..interval);
        }
        assert!(sim.now() < settle_until + 100 * interval, "the setup leader lost its leadership");
    };
    while sim.peek_time().is_some_and(|t| t < crash_at) {
        if let Some(event) = filter(sim.pop().expect("peeked")) {
            sim.apply(event);
        }
    }
    sim.crash(old_leader);
    measure(&mut sim, params, old_leader, old_term, filter, crash_at)
}

/// Starts an election at node 1 and runs until a leader is known to every node.
fn elect_first_leader(sim: &mut Sim) -> NodeId {
    sim.input(NodeId(1), raft_core::Input::Timeout(Timer::Election));
    loop {
        let event = sim.pop().expect("events while electing");
        sim.apply(event);
        let leaders: BTreeSet<Option<NodeId>> = sim.ids().map(|id| sim.state(id).leader()).collect();
        if leaders.len() == 1 {
            if let Some(Some(leader)) = leaders.into_iter().next() {
                return leader;
            }
        }
        assert!(sim.now() < 60_000_000, "no first leader within a minute");
    }
}

/// The highest log index each follower may receive from the setup leader.
fn uneven_caps(sim: &Sim, leader: NodeId) -> BTreeMap<NodeId, LogIndex> {
    let base = sim.state(leader).log().last_index().0;
    sim.ids()
        .filter(|&id| id != leader)
        .enumerate()
        .map(|(k, id)| (id, LogIndex(base + SETUP_ENTRIES.saturating_sub(k as u64))))
        .collect()
}

/// The setup's network filter, applied to every event until the trial
/// ends: the setup leader's appends are cut so a follower never holds more
/// than its cap, and the answers of the followers it holds back are lost.
/// Without the second rule, each cut append would be answered and resent at
/// once, resetting the lagging followers' timers between heartbeats; with
/// it, every follower's timer is reset by the leader's heartbeats alone.
fn setup_filter(mut event: Event, leader: NodeId, caps: &BTreeMap<NodeId, LogIndex>, last: LogIndex) -> Option<Event> {
    match &mut event {
        Event::Deliver { from, to, message: Message::AppendEntries(m) } if *from == leader => {
            let keep = caps[to].0.saturating_sub(m.prev_log_index.0) as usize;
            m.entries.truncate(keep);
        }
        Event::Deliver { from, to, message: Message::AppendEntriesResponse(_) }
            if *to == leader && caps[from] < last =>
        {
            return None;
        }
        _ => {}
    }
    Some(event)
}

fn measure(
    sim: &mut Sim,
    params: &ElectionParams,
    old_leader: NodeId,
    old_term: Term,
    filter: impl Fn(Event) -> Option<Event>,
    crash_at: Micros,
) -> TrialOutcome {
    let survivors: BTreeSet<NodeId> = sim.ids().filter(|&id| id != old_leader).collect();
    let mut reached: BTreeMap<(Term, NodeId), BTreeSet<NodeId>> = BTreeMap::new();
    while let Some(event) = sim.pop() {
        if sim.now() - crash_at > params.limit {
            return TrialOutcome::Censored(params.limit);
        }
        let Some(event) = filter(event) else { continue };
        if let Event::Deliver { from, to, message: Message::AppendEntries(m) } = &event {
            if m.term > old_term {
                let set = reached.entry((m.term, *from)).or_default();
                set.insert(*to);
                if set.len() == survivors.len() - 1 {
                    return TrialOutcome::Elected(sim.now() - crash_at);
                }
            }
        }
        sim.apply(event);
    }
    TrialOutcome::Censored(params.limit)
}

/// Percentiles of a run of trials, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Trials run.
    pub trials: usize,
    /// Trials that hit the limit (counted at the limit).
    pub censored: usize,
    /// Smallest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Summary {
    /// Summarizes outcomes (nearest-rank percentiles).
    pub fn of(outcomes: &[TrialOutcome]) -> Summary {
        assert!(!outcomes.is_empty(), "no trials to summarize");
        let mut ms: Vec<f64> = outcomes.iter().map(|o| o.micros() as f64 / 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Summary {
            trials: ms.len(),
            censored: outcomes.iter().filter(|o| matches!(o, TrialOutcome::Censored(_))).count(),
            min: ms[0],
            p10: rank(10.0),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
            mean: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trials={} min={:.1} p10={:.1} p50={:.1} p90={:.1} p99={:.1} max={:.1} mean={:.1} ms",
            self.trials, self.min, self.p10, self.p50, self.p90, self.p99, self.max, self.mean
        )?;
        if self.censored > 0 {
            write!(f, " (censored={} at the limit)", self.censored)?;
        }
        Ok(())
    }
}
