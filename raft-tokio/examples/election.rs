//! The Raft paper's leader-election timing experiment (Figure 16, §9.3 of
//! the extended paper) on the real runtime: how long a cluster on loopback
//! TCP is without a leader after its leader dies.
//!
//! `cargo run --release -p raft-tokio --example election -- --trials 100 --timeout 150-300 --seed 1 --storage disk`
//!
//! One cluster of `--nodes` nodes runs in this process on 127.0.0.1. The
//! heartbeat interval is half the minimum election timeout, as in the
//! paper. Each trial:
//! 1. waits until the cluster is stable: every running node knows the same
//!    leader in the same term, and that has not changed for one maximum
//!    election timeout (so a node that just rejoined has settled too);
//! 2. waits a uniformly random moment within one heartbeat interval, drawn
//!    from a ChaCha8 RNG seeded by `--seed`, so the kill falls at a random
//!    phase of the leader's heartbeats;
//! 3. kills the leader (shuts its node down) and measures from the kill
//!    until every surviving node knows one and the same new leader in a
//!    higher term. A follower learns the leader from the leader's first
//!    AppendEntries, so this is the end the simulator in raft-check
//!    measures (every survivor has received the new leader's first
//!    heartbeat), plus the time the follower's node loop takes to handle it:
//!    with the disk store, the fsync of the entries it carried;
//! 4. restarts the killed node on its address, from its data directory with
//!    the disk store (the default), and lets the next trial's wait for
//!    stability cover its rejoining.
//!
//! A trial not finished within `--limit-seconds` counts as censored at the
//! limit. Node timers are seeded from `--seed` too, but the network and the
//! scheduler are real, so runs are not reproducible bit for bit.
//!
//! It prints one line in the format of raft-check's election simulator;
//! `--verbose` adds a line per trial and a line on the restarts and the
//! nodes' durable writes (on stderr). `RUST_LOG` turns on the nodes' logs.
//!
//! `--scenario` picks another experiment on the same cluster (each trial
//! starts from a stable cluster, as above):
//! - `isolate-leader`: stops a majority of the nodes, the leader not among
//!   them, and measures until the leader no longer says it leads
//!   (check-quorum, thesis §6.2); then restarts them.
//! - `transfer`: asks the leader to hand its leadership to a random
//!   follower (thesis §3.10) and measures until every node knows that
//!   follower as leader.
//! - `restart-follower`: stops a random follower, waits one maximum
//!   election timeout, restarts it, and watches for five more; the figure is
//!   the time until every node agrees on a leader again, and the line ends
//!   with how many trials saw the restarted node depose the leader (a new
//!   term), which pre-vote (thesis §9.6) should make none.
//!
//! `--pre-vote off` and `--check-quorum off` turn the extensions off (both
//! on by default, as in `RaftParams`).

use clap::{Parser, ValueEnum};
use raft_tokio::{LeaderInfo, NodeId, Raft, RaftConfig, RaftHandle, RaftParams, RoleKind, StartError, Term};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The cluster id every node is given (any fixed value works).
const CLUSTER_ID: u64 = 0xe1ec;
/// Leader changes waiting for the main task. A node's leader changes a few
/// times per trial, so this is never reached; a forwarder that found it
/// full would only wait.
const CHANGES_QUEUE_MAX: usize = 1024;
/// How long a cluster may take to become stable (first election, or a
/// restarted node rejoining) before the run gives up.
const STABLE_WAIT_MAX: Duration = Duration::from_secs(30);
/// Times a restarted node tries to bind its address again, 50 ms apart,
/// in case the system has not released it yet.
const BIND_ATTEMPTS_MAX: u32 = 40;

#[derive(Parser)]
struct Args {
    /// Trials (leader kills).
    #[arg(long, default_value_t = 100)]
    trials: u32,
    /// Election timeout range in milliseconds, inclusive: "150-300".
    #[arg(long, default_value = "150-300")]
    timeout: TimeoutRange,
    /// Seed of the kill moments and of the nodes' timer RNGs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    /// Where nodes keep their state: `disk` (the write-ahead log in a temporary directory,
    /// one fsync per batch) or `memory` (a restarted node starts empty).
    #[arg(long, value_enum, default_value_t = StorageKind::Disk)]
    storage: StorageKind,
    /// The longest a trial may last after the kill; longer counts as censored.
    #[arg(long, default_value_t = 30)]
    limit_seconds: u64,
    /// A line per trial and one on restarts and writes, on stderr.
    #[arg(long)]
    verbose: bool,
    /// What each trial does.
    #[arg(long, value_enum, default_value_t = Scenario::KillLeader)]
    scenario: Scenario,
    /// Pre-vote (thesis §9.6): on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pre_vote: bool,
    /// Check-quorum (thesis §6.2): on or off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    check_quorum: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    KillLeader,
    IsolateLeader,
    Transfer,
    RestartFollower,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StorageKind {
    Memory,
    Disk,
}

/// An election timeout range in milliseconds, inclusive.
#[derive(Clone, Copy, Debug)]
struct TimeoutRange {
    min_ms: u64,
    max_ms: u64,
}

impl FromStr for TimeoutRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a range like 150-300"))?;
        let number = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("{x:?} is not a number of milliseconds"));
        let (min_ms, max_ms) = (number(a)?, number(b)?);
        // The heartbeat is half the minimum, and must be at least 1 ms.
        if min_ms < 2 || min_ms > max_ms {
            return Err(format!("range {s}: the minimum must be at least 2 ms and not above the maximum"));
        }
        Ok(TimeoutRange { min_ms, max_ms })
    }
}

impl TimeoutRange {
    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.min_ms) / 2
    }

    fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

/// The result of one trial.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// Every survivor knew the new leader this long after the kill.
    Elected(Duration),
    /// Not within the limit (counted at the limit).
    Censored(Duration),
}

impl Outcome {
    fn ms(&self) -> f64 {
        match *self {
            Outcome::Elected(d) | Outcome::Censored(d) => d.as_secs_f64() * 1000.0,
        }
    }
}

/// A node's leader view changed; `at` is when its forwarder saw it.
struct Change {
    node: usize,
    life: u32,
    at: Instant,
    info: LeaderInfo,
}

/// Who leads, as one running node knows it, and since when.
#[derive(Clone, Copy)]
struct View {
    at: Instant,
    info: LeaderInfo,
}

/// The in-process cluster and what the main task knows of its nodes.
struct Cluster {
    members: Vec<(NodeId, String)>,
    timeout: TimeoutRange,
    /// Pre-vote and check-quorum.
    extensions: (bool, bool),
    dir: Option<tempfile::TempDir>,
    nodes: Vec<Option<RaftHandle>>,
    /// Incremented at each start, so that a late change from a node's
    /// previous life is told apart.
    lives: Vec<u32>,
    views: Vec<Option<View>>,
    changes_tx: mpsc::Sender<Change>,
    changes: mpsc::Receiver<Change>,
}

impl Cluster {
    async fn start(
        n: u64,
        timeout: TimeoutRange,
        storage: StorageKind,
        extensions: (bool, bool),
        rng: &mut ChaCha8Rng,
    ) -> Result<Cluster, StartError> {
        let listeners: Vec<_> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port")).collect();
        let members = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (NodeId(i as u64 + 1), l.local_addr().expect("bound").to_string()))
            .collect();
        let dir = (storage == StorageKind::Disk).then(|| tempfile::tempdir().expect("temporary directory"));
        let (changes_tx, changes) = mpsc::channel(CHANGES_QUEUE_MAX);
        let n = n as usize;
        let mut cluster = Cluster {
            members,
            timeout,
            extensions,
            dir,
            nodes: vec![None; n],
            lives: vec![0; n],
            views: vec![None; n],
            changes_tx,
            changes,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            cluster.launch(i, Some(listener), rng.random()).await?;
        }
        Ok(cluster)
    }

    fn config(&self, i: usize, seed: u64) -> RaftConfig {
        let params = RaftParams {
            election_timeout: (Duration::from_millis(self.timeout.min_ms), self.timeout.max()),
            heartbeat_interval: self.timeout.heartbeat(),
            seed: Some(seed),
            cluster_id: Some(CLUSTER_ID),
            pre_vote: self.extensions.0,
            check_quorum: self.extensions.1,
            ..RaftParams::default()
        };
        let data_dir = self.dir.as_ref().map(|d| d.path().join(format!("n{}", i + 1)));
        RaftConfig::with_ids(self.members.clone(), NodeId(i as u64 + 1), params, data_dir)
    }

    /// Starts node `i` (on a pre-bound listener, or binding its address
    /// again after a kill), drains its committed entries as an application
    /// would, and forwards its leader changes to the main task.
    async fn launch(&mut self, i: usize, listener: Option<std::net::TcpListener>, seed: u64) -> Result<(), StartError> {
        let (handle, mut entries) = match listener {
            Some(l) => Raft::start(self.config(i, seed).with_listener(l)).await?,
            None => self.start_on_own_address(i, seed).await?,
        };
        tokio::spawn(async move { while entries.recv_committed().await.is_some() {} });
        self.lives[i] += 1;
        let life = self.lives[i];
        let mut watch = handle.watch_leader();
        let tx = self.changes_tx.clone();
        tokio::spawn(async move {
            // The first value is sent at once, so no change between the
            // start and the subscription is missed.
            loop {
                let info = *watch.borrow_and_update();
                if tx.send(Change { node: i, life, at: Instant::now(), info }).await.is_err() {
                    return;
                }
                // Err: the node stopped and its loop dropped the sender.
                if watch.changed().await.is_err() {
                    return;
                }
            }
        });
        self.views[i] = None;
        self.nodes[i] = Some(handle);
        Ok(())
    }

    async fn start_on_own_address(
        &self,
        i: usize,
        seed: u64,
    ) -> Result<(RaftHandle, raft_tokio::EntryReceiver), StartError> {
        let mut attempt = 1;
        loop {
            match Raft::start(self.config(i, seed)).await {
                Err(StartError::Bind { .. }) if attempt < BIND_ATTEMPTS_MAX => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                result => return result,
            }
        }
    }

    async fn kill(&mut self, i: usize) {
        let handle = self.nodes[i].take().expect("a running node");
        self.views[i] = None;
        if let Err(e) = handle.shutdown().await {
            eprintln!("node {} had failed before it was killed: {e}", i + 1);
        }
    }

    fn apply(&mut self, change: Change) {
        if self.nodes[change.node].is_some() && self.lives[change.node] == change.life {
            self.views[change.node] = Some(View { at: change.at, info: change.info });
        }
    }

    /// The next leader change of any node, or `None` at `deadline`.
    async fn next_change(&mut self, deadline: Instant) -> Option<Change> {
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::time::timeout_at(deadline, self.changes.recv()).await.ok().flatten()
    }

    /// Applies every change until `deadline`.
    async fn follow_until(&mut self, deadline: Instant) {
        while let Some(change) = self.next_change(deadline).await {
            self.apply(change);
        }
    }

    /// The leader and term every running node agrees on, and when the last
    /// of them learned it.
    fn agreement(&self) -> Option<(NodeId, Term, Instant)> {
        let mut running = self.nodes.iter().zip(&self.views).filter(|(n, _)| n.is_some()).map(|(_, v)| *v);
        let first = running.next()??;
        let leader = first.info.leader?;
        let mut last = first.at;
        for view in running {
            let view = view?;
            if view.info.leader != Some(leader) || view.info.term != first.info.term {
                return None;
            }
            last = last.max(view.at);
        }
        Some((leader, first.info.term, last))
    }

    /// Waits until every running node has agreed on one leader and term
    /// for `settle`; returns the leader's index and the term.
    async fn wait_stable(&mut self, settle: Duration) -> Result<(usize, Term), String> {
        let give_up = Instant::now() + STABLE_WAIT_MAX;
        let mut agreed: Option<((NodeId, Term), Instant)> = None;
        loop {
            let now = Instant::now();
            let current = self.agreement().map(|(l, t, _)| (l, t));
            match (current, agreed) {
                (Some(c), Some((a, since))) if c == a => {
                    if now >= since + settle {
                        return Ok(((c.0 .0 - 1) as usize, c.1));
                    }
                }
                (Some(c), _) => agreed = Some((c, now)),
                (None, _) => agreed = None,
            }
            if now >= give_up {
                return Err(format!("the cluster was not stable within {STABLE_WAIT_MAX:?}"));
            }
            let wake = agreed.map_or(give_up, |(_, since)| (since + settle).min(give_up));
            if let Some(change) = self.next_change(wake).await {
                self.apply(change);
            }
        }
    }

    /// Kills the leader at a random moment within one heartbeat interval of
    /// a stable moment and measures until every survivor knows a new leader.
    /// A stable leader and term, at a random phase of its heartbeats.
    async fn stable_moment(&mut self, rng: &mut ChaCha8Rng) -> Result<(usize, Term), String> {
        let settle = self.timeout.max();
        let heartbeat_micros = self.timeout.heartbeat().as_micros() as u64;
        loop {
            let (leader, term) = self.wait_stable(settle).await?;
            let delay = Duration::from_micros(rng.random_range(0..heartbeat_micros));
            self.follow_until(Instant::now() + delay).await;
            if self.agreement().map(|(l, t, _)| (l, t)) == Some((NodeId(leader as u64 + 1), term)) {
                return Ok((leader, term));
            }
        }
    }

    /// Waits until `done` holds of the views, or `deadline`: the outcome
    /// measured from `from`.
    async fn measure(
        &mut self,
        from: Instant,
        deadline: Instant,
        done: impl Fn(&Cluster) -> Option<Instant>,
    ) -> Outcome {
        loop {
            if let Some(at) = done(self) {
                return Outcome::Elected(at.saturating_duration_since(from));
            }
            match self.next_change(deadline).await {
                Some(change) => self.apply(change),
                None => return Outcome::Censored(deadline - from),
            }
        }
    }

    /// `isolate-leader`: stops a majority, measures until the leader stops
    /// saying it leads, restarts them.
    async fn isolate_leader(&mut self, rng: &mut ChaCha8Rng, limit: Duration) -> Result<Trial, String> {
        let (leader, term) = self.stable_moment(rng).await?;
        let n = self.nodes.len();
        let stopped: Vec<usize> = (1..=n / 2 + 1).map(|k| (leader + k) % n).collect();
        let at = Instant::now();
        for &i in &stopped {
            self.kill(i).await;
        }
        let outcome = self
            .measure(at, at + limit, |c| c.views[leader].filter(|v| v.info.role != RoleKind::Leader).map(|v| v.at))
            .await;
        for &i in &stopped {
            self.launch(i, None, rng.random()).await.map_err(|e| e.to_string())?;
        }
        Ok(Trial { outcome, killed: leader, old_term: term, new_term: term })
    }

    /// `transfer`: hands the leadership to a random follower, measures
    /// until every node knows it as leader.
    async fn transfer(&mut self, rng: &mut ChaCha8Rng, limit: Duration) -> Result<Trial, String> {
        let (leader, term) = self.stable_moment(rng).await?;
        let n = self.nodes.len();
        let target = (leader + rng.random_range(1..n)) % n;
        let target_id = NodeId(target as u64 + 1);
        let handle = self.nodes[leader].clone().expect("running");
        let at = Instant::now();
        let call = tokio::spawn(async move { handle.transfer_leadership(target_id).await });
        let outcome = self
            .measure(at, at + limit, |c| c.agreement().filter(|(l, t, _)| *l == target_id && *t > term).map(|a| a.2))
            .await;
        if let Ok(Err(e)) = call.await {
            eprintln!("the transfer to node {} failed: {e}", target + 1);
        }
        let new_term = self.agreement().map_or(term, |a| a.1);
        Ok(Trial { outcome, killed: target, old_term: term, new_term })
    }

    /// `restart-follower`: stops a follower for one maximum election
    /// timeout, restarts it, watches five more; the outcome is the time
    /// from the restart until every node agrees on a leader.
    async fn restart_follower(&mut self, rng: &mut ChaCha8Rng, limit: Duration) -> Result<Trial, String> {
        let (leader, term) = self.stable_moment(rng).await?;
        let n = self.nodes.len();
        let follower = (leader + rng.random_range(1..n)) % n;
        self.kill(follower).await;
        self.follow_until(Instant::now() + self.timeout.max()).await;
        self.launch(follower, None, rng.random()).await.map_err(|e| e.to_string())?;
        let at = Instant::now();
        let outcome = self.measure(at, at + limit, |c| c.agreement().map(|a| a.2)).await;
        self.follow_until(at + 5 * self.timeout.max()).await;
        let (_, new_term) = self.wait_stable(self.timeout.max()).await?;
        Ok(Trial { outcome, killed: follower, old_term: term, new_term })
    }

    async fn trial(&mut self, rng: &mut ChaCha8Rng, limit: Duration) -> Result<Trial, String> {
        let settle = self.timeout.max();
        let heartbeat_micros = self.timeout.heartbeat().as_micros() as u64;
        let (leader, term) = loop {
            let (leader, term) = self.wait_stable(settle).await?;
            let delay = Duration::from_micros(rng.random_range(0..heartbeat_micros));
            self.follow_until(Instant::now() + delay).await;
            // An election during the delay (rare) spoils the moment: wait again.
            if self.agreement().map(|(l, t, _)| (l, t)) == Some((NodeId(leader as u64 + 1), term)) {
                break (leader, term);
            }
        };
        let killed_at = Instant::now();
        self.kill(leader).await;
        let deadline = killed_at + limit;
        let outcome = loop {
            if let Some((_, t, at)) = self.agreement() {
                if t > term {
                    break (Outcome::Elected(at.saturating_duration_since(killed_at)), t);
                }
            }
            match self.next_change(deadline).await {
                Some(change) => self.apply(change),
                None => break (Outcome::Censored(limit), term),
            }
        };
        Ok(Trial { outcome: outcome.0, killed: leader, old_term: term, new_term: outcome.1 })
    }

    /// (durable writes, total microseconds spent on them) over running nodes.
    fn writes(&self) -> (u64, u64) {
        self.nodes
            .iter()
            .flatten()
            .map(|h| h.status())
            .fold((0, 0), |(w, m), s| (w + s.storage_writes, m + s.storage_write_micros))
    }

    async fn shutdown(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.kill(i).await;
            }
        }
    }
}

/// One trial's result and what preceded it.
struct Trial {
    outcome: Outcome,
    killed: usize,
    /// The killed leader's term.
    old_term: Term,
    /// The term of the leader every survivor agreed on (the old term when
    /// censored).
    new_term: Term,
}

/// Nearest-rank percentiles, as raft-check's simulator computes them.
struct Summary {
    trials: usize,
    censored: usize,
    sorted_ms: Vec<f64>,
}

impl Summary {
    fn of(outcomes: &[Outcome]) -> Summary {
        let mut sorted_ms: Vec<f64> = outcomes.iter().map(Outcome::ms).collect();
        sorted_ms.sort_by(f64::total_cmp);
        let censored = outcomes.iter().filter(|o| matches!(o, Outcome::Censored(_))).count();
        Summary { trials: outcomes.len(), censored, sorted_ms }
    }

    fn rank(&self, p: f64) -> f64 {
        let n = self.sorted_ms.len();
        self.sorted_ms[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1]
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = &self.sorted_ms;
        write!(
            f,
            "trials={} min={:.1} p10={:.1} p50={:.1} p90={:.1} p99={:.1} max={:.1} mean={:.1} ms",
            self.trials,
            ms[0],
            self.rank(10.0),
            self.rank(50.0),
            self.rank(90.0),
            self.rank(99.0),
            ms[ms.len() - 1],
            ms.iter().sum::<f64>() / ms.len() as f64
        )?;
        if self.censored > 0 {
            write!(f, " (censored={} at the limit)", self.censored)?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    if args.trials == 0 || args.nodes < 3 {
        eprintln!("need at least one trial and three nodes (a leader to kill and a majority left)");
        std::process::exit(2);
    }
    let limit = Duration::from_secs(args.limit_seconds);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let extensions = (args.pre_vote, args.check_quorum);
    let mut cluster = match Cluster::start(args.nodes, args.timeout, args.storage, extensions, &mut rng).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("the cluster cannot start: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    // Terms that began after a trial's new leader and before the next
    // trial's kill: elections while the killed node rejoined (it may time
    // out before the leader's connection to it is back up).
    let mut terms_while_rejoining = 0;
    let mut last_new_term = None;
    // Trials of `restart-follower` whose leader was deposed (a new term).
    let mut depositions = 0;
    for k in 0..args.trials {
        let trial = match args.scenario {
            Scenario::KillLeader => cluster.trial(&mut rng, limit).await,
            Scenario::IsolateLeader => cluster.isolate_leader(&mut rng, limit).await,
            Scenario::Transfer => cluster.transfer(&mut rng, limit).await,
            Scenario::RestartFollower => cluster.restart_follower(&mut rng, limit).await,
        };
        let trial = match trial {
            Ok(t) => t,
            Err(e) => {
                eprintln!("trial {}: {e}", k + 1);
                std::process::exit(1);
            }
        };
        if let Some(Term(t)) = last_new_term {
            terms_while_rejoining += trial.old_term.0 - t;
        }
        last_new_term = Some(trial.new_term);
        if args.verbose {
            eprintln!(
                "trial {:>3}: killed node {} (leader of term {}): {:.1} ms{}",
                k + 1,
                trial.killed + 1,
                trial.old_term,
                trial.outcome.ms(),
                if matches!(trial.outcome, Outcome::Censored(_)) { " (censored)" } else { "" }
            );
        }
        outcomes.push(trial.outcome);
        if args.scenario == Scenario::RestartFollower && trial.new_term > trial.old_term {
            depositions += 1;
        }
        if args.scenario != Scenario::KillLeader {
            continue;
        }
        let restarted = cluster.launch(trial.killed, None, rng.random()).await;
        if let Err(e) = restarted {
            eprintln!("node {} cannot restart: {e}", trial.killed + 1);
            std::process::exit(1);
        }
    }
    let (writes, write_micros) = cluster.writes();
    cluster.shutdown().await;
    let label = format!("{}-{}ms", args.timeout.min_ms, args.timeout.max_ms);
    let extensions = format!("pre_vote={} check_quorum={}", args.pre_vote, args.check_quorum);
    match args.scenario {
        Scenario::KillLeader => println!("timeout {label:>9}: {}", Summary::of(&outcomes)),
        Scenario::RestartFollower => println!(
            "restart-follower {label} {extensions}: {} depositions={depositions}/{}",
            Summary::of(&outcomes),
            args.trials
        ),
        s => println!("{s:?} {label} {extensions}: {}", Summary::of(&outcomes)),
    }
    if args.verbose {
        eprintln!(
            "storage={:?} nodes={} seconds={:.1} terms_while_rejoining={} write_mean={}us (current lives' durable writes)",
            args.storage,
            args.nodes,
            started.elapsed().as_secs_f64(),
            terms_while_rejoining,
            write_micros.checked_div(writes).unwrap_or(0),
        );
    }
}
