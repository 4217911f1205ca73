//! The command line, compatible with raft-lite's checker: `-m check`,
//! `-m simulate`, `-m explore`. Each mode is one arm of [`run`], so that a
//! new mode is one variant of [`Mode`] and one function; `--replay FILE`
//! runs a counterexample's replay file instead. What the checking modes
//! print is [`crate::report`]'s.

use crate::actor::Switches;
use crate::model::{ModelConfig, ModelKind, NetworkKind, Proposals, RaftModel};
use crate::report::{self, Findings, Options, Progress, Scope};
use crate::symmetry;
use clap::{Parser, ValueEnum};
use raft_core::Fault;
use stateright::{Checker, HasDiscoveries, Model};
use std::io::Write;
use std::path::PathBuf;

/// What to do with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Model-check: breadth-first to `--depth`, or exhaustively within the bounds.
    Check,
    /// Random walks (`--seed`, `--runs`, `--steps`), for models too big to exhaust.
    Simulate,
    /// Serve the Raft explorer, with stateright's beside it, on `--addr`.
    Explore,
    /// Election timing (the Raft paper's Figure 16) on a timed simulator
    /// over raft-core: `--timeout`, `--trials`, `--seed`, `--sweep paper`.
    Election,
    /// Run every check profile CI runs (or `--profile NAME`, or the deep
    /// one) on the correct core: exit 1 on any counterexample or a
    /// Sometimes without an example.
    Profiles,
    /// The mutation harness: every fault of raft-core (or `--fault NAME`)
    /// against the CI profiles, in order; exit 1 if one escapes them all.
    Mutants,
}

/// Whether to apply symmetry reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Symmetry {
    /// On for exhaustive checks and simulations of servers-only models.
    Auto,
    /// Never.
    Off,
}

/// A deliberate bug in the adapter, to watch the checker catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bug {
    /// A restarted server forgets the vote it persisted (stateright's own
    /// Raft example has this bug): Election Safety fails.
    ForgetVoteOnRecovery,
    /// kv model: reads are answered from the local state machine instead of
    /// through the log: Linearizable fails.
    ReadsBypassLog,
}

/// Model-check raft-core with stateright.
#[derive(Parser, Debug)]
#[command(name = "raft-check", version, about, long_about = None)]
pub struct Args {
    /// Mode.
    #[arg(short = 'm', long, value_enum, default_value = "check")]
    pub mode: Mode,
    /// Which model: raft (the paper's properties) or kv (plus linearizability).
    #[arg(long, value_enum, default_value = "raft")]
    pub model: ModelKind,
    /// Check breadth-first to this depth: every execution of at most N-2
    /// steps. Stateright counts the initial state as depth 1, so depth N
    /// reaches paths of N-1 actions: states of depth N are generated and
    /// counted in `unique` but neither checked nor expanded; properties are
    /// checked on every state of depth N-1 or less (at most N-2 actions).
    /// --depth 1 checks nothing. Without --depth: exhaustive within the
    /// bounds, depth-first.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Number of Raft servers.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Network semantics.
    #[arg(long, value_enum, default_value = "unordered_nonduplicating")]
    pub network: NetworkKind,
    /// The network may also lose messages.
    #[arg(long)]
    pub lossy: bool,
    /// How many actors may be down at once: servers recover from their
    /// storage; model clients (stateright crashes them too) give up their
    /// operation in flight.
    #[arg(long, default_value_t = 1)]
    pub crashes: usize,
    /// Where commands come from in the raft model (the kv model always has clients).
    #[arg(long, value_enum, default_value = "start")]
    pub proposals: Proposals,
    /// Number of model clients (kv model, or --proposals clients).
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Bound: states where a server's term exceeds this are not explored.
    #[arg(long, default_value_t = 2)]
    pub max_term: u64,
    /// Bound: states where a server's log holds more entries are not explored.
    #[arg(long, default_value_t = 3)]
    pub max_log: usize,
    /// Whether leaders' heartbeat timers fire (they carry the commit index
    /// to followers and retry lost appends).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub heartbeats: bool,
    /// Background writes (thesis §10.2.1): a write's completion is a step
    /// of its own, interleaved with sends, deliveries and crashes.
    #[arg(long)]
    pub background_writes: bool,
    /// Checker threads (default: the cores available).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Symmetry reduction (servers are interchangeable). Stateright applies
    /// it only to depth-first checks and simulations.
    #[arg(long, value_enum, default_value = "auto")]
    pub symmetry: Symmetry,
    /// Simulate: the seed of the first walk.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulate: how many walks.
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Simulate: the most actions per walk.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Simulate: relative weights of a delivery, a timeout, a crash or
    /// recovery, a delivery to the walk's slow server, and (optional; the
    /// timeout's weight when left out) an operator's membership change.
    #[arg(long, value_parser = parse_weights, default_value = "1,1,1,1")]
    pub weights: crate::simulate::Weights,
    /// Explore: the address to serve on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub addr: String,
    /// Break the adapter on purpose, to see a counterexample (demonstration only).
    #[arg(long, value_enum)]
    pub bug: Option<Bug>,
    /// Break one rule of raft-core on purpose (see `-m mutants` for the
    /// list), to see the checker catch it.
    #[arg(long, value_parser = parse_fault)]
    pub fault: Option<Fault>,
    /// Leaders send one entry per AppendEntries, one in flight per follower.
    #[arg(long)]
    pub split_appends: bool,
    /// Pre-vote on (thesis §9.6): a node asks whether it could win before
    /// it changes its term.
    #[arg(long)]
    pub pre_vote: bool,
    /// Check-quorum on (thesis §6.2): a leader that has not heard from a
    /// majority steps down; a node that hears from a live leader ignores
    /// vote requests of higher terms.
    #[arg(long)]
    pub check_quorum: bool,
    /// Snapshots: each server's application may take up to N snapshots, each
    /// at any index past its last one (raft-core refuses an index it has
    /// not applied); logs are compacted with no trailing entries, and a
    /// follower that lags behind a leader's snapshot gets an InstallSnapshot
    /// carrying the data. 0: no snapshots (the default model).
    #[arg(long, default_value_t = 0)]
    pub snapshots: u8,
    /// How many of the servers start as voters (0: all); the others start
    /// as learners.
    #[arg(long, default_value_t = 0)]
    pub voters: usize,
    /// Membership changes (thesis §4): the operator asks any leader, at any
    /// moment, to add a learner, promote one or remove a member, while the
    /// leader's log holds fewer than N configuration entries. 0: none.
    #[arg(long, default_value_t = 0)]
    pub max_changes: u8,
    /// Profiles: run only this profile (`deep` for the deep one).
    #[arg(long)]
    pub profile: Option<String>,
    /// Also fail (exit 1) when a Sometimes property has no example.
    #[arg(long)]
    pub require_examples: bool,
    /// Also print the example found for each Sometimes property, as a
    /// numbered trace (counterexamples are always printed).
    #[arg(long)]
    pub examples: bool,
    /// Where to write each counterexample's replay file
    /// (`counterexample-<property>.json`, which `--replay` runs back).
    #[arg(long, value_name = "DIR", default_value = "target/raft-check")]
    pub replay_dir: PathBuf,
    /// Run a replay file written for a counterexample on raft-core alone
    /// (no model checker), printing each step with its node's state after
    /// it; the model's flags are the file's own.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub election: crate::timing::sweep::ElectionArgs,
}

impl Args {
    /// The model these arguments describe, or why they describe none.
    pub fn model_config(&self) -> Result<ModelConfig, String> {
        if self.nodes == 0 || self.nodes > 26 {
            return Err(format!("--nodes must be between 1 and 26, not {}", self.nodes));
        }
        if self.crashes > self.nodes {
            return Err(format!("--crashes {} exceeds --nodes {}", self.crashes, self.nodes));
        }
        let needs_clients = self.model == ModelKind::Kv || self.proposals == Proposals::Clients;
        if needs_clients && self.clients == 0 {
            return Err("this model needs --clients of at least 1".to_string());
        }
        if self.voters > self.nodes {
            return Err(format!("--voters {} exceeds --nodes {}", self.voters, self.nodes));
        }
        if self.depth == Some(0) {
            return Err("--depth must be at least 1 (the initial state)".to_string());
        }
        Ok(ModelConfig {
            kind: self.model,
            servers: self.nodes,
            proposals: self.proposals,
            clients: self.clients,
            network: self.network,
            lossy: self.lossy,
            crashes: self.crashes,
            max_term: self.max_term,
            max_log: self.max_log,
            heartbeats: self.heartbeats,
            background_writes: self.background_writes,
            split_appends: self.split_appends,
            pre_vote: self.pre_vote,
            check_quorum: self.check_quorum,
            snapshots: self.snapshots,
            voters: self.voters,
            max_changes: self.max_changes,
            fault: self.fault,
            switches: Switches {
                forget_vote_on_recovery: self.bug == Some(Bug::ForgetVoteOnRecovery),
                reads_bypass_log: self.bug == Some(Bug::ReadsBypassLog),
                ..Switches::default()
            },
            ..ModelConfig::default()
        })
    }

    /// The checker threads to use.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The flags that make the model these arguments describe, as given on
    /// the command line: those that differ from the defaults, in a fixed
    /// order (for replay files and the explorer command).
    pub fn model_flags(&self) -> Vec<String> {
        let d = Args::parse_from(["raft-check"]);
        let mut flags = Vec::new();
        let mut value = |name: &str, differs: bool, value: String| {
            if differs {
                flags.push(format!("--{name}"));
                flags.push(value);
            }
        };
        value("model", self.model != d.model, name_of(self.model));
        value("nodes", self.nodes != d.nodes, self.nodes.to_string());
        value("network", self.network != d.network, name_of(self.network));
        value("crashes", self.crashes != d.crashes, self.crashes.to_string());
        value("proposals", self.proposals != d.proposals, name_of(self.proposals));
        value("clients", self.clients != d.clients, self.clients.to_string());
        value("max-term", self.max_term != d.max_term, self.max_term.to_string());
        value("max-log", self.max_log != d.max_log, self.max_log.to_string());
        value("heartbeats", self.heartbeats != d.heartbeats, self.heartbeats.to_string());
        value("snapshots", self.snapshots != d.snapshots, self.snapshots.to_string());
        value("voters", self.voters != d.voters, self.voters.to_string());
        value("max-changes", self.max_changes != d.max_changes, self.max_changes.to_string());
        value("bug", self.bug.is_some(), self.bug.map(name_of).unwrap_or_default());
        value("fault", self.fault.is_some(), self.fault.map(|f| f.name().to_string()).unwrap_or_default());
        for (name, on) in [
            ("lossy", self.lossy),
            ("split-appends", self.split_appends),
            ("pre-vote", self.pre_vote),
            ("check-quorum", self.check_quorum),
        ] {
            if on {
                flags.push(format!("--{name}"));
            }
        }
        flags
    }
}

/// The command-line name of a value of a `ValueEnum`.
fn name_of(value: impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
}

/// Parses the process arguments and runs; returns the exit status: 0 when
/// every Always holds, 1 when one fails (or, with --require-examples, a
/// Sometimes has no example), 2 for bad arguments.
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let config = match args.model_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return 2;
        }
    };
    if matches!(args.mode, Mode::Check | Mode::Simulate | Mode::Profiles | Mode::Mutants) {
        crate::actor::print_first_panic_only();
    }
    run(&args, config, &mut std::io::stdout())
}

/// Runs the mode of `args` on the model of `config`, writing the report to `out`.
pub fn run(args: &Args, config: ModelConfig, out: &mut (impl Write + Send)) -> i32 {
    if let Some(file) = &args.replay {
        return report::replay_file(file, out);
    }
    match args.mode {
        Mode::Check => check(args, config, out),
        Mode::Simulate => simulate(args, config, out),
        Mode::Explore => explore(args, config, out),
        Mode::Profiles => crate::profiles::report_profiles(args.profile.as_deref(), args.threads(), out),
        Mode::Mutants => crate::profiles::report_mutants(args.fault, args.threads(), out),
        Mode::Election => match crate::timing::sweep::run(
            args.nodes as u64,
            args.seed,
            &args.election,
            (args.pre_vote, args.check_quorum),
        ) {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("error: {message}");
                2
            }
        },
    }
}

fn check(args: &Args, config: ModelConfig, out: &mut (impl Write + Send)) -> i32 {
    let symmetric = config.servers_only() && args.symmetry == Symmetry::Auto && args.depth.is_none();
    let builder = config.into_model().checker().threads(args.threads());
    let scope = args.depth.map_or(Scope::Bounds, Scope::Depth);
    let _ = writeln!(out, "{}", scope.explain(symmetric));
    let _ = out.flush();
    report::catch_interrupts();
    match args.depth {
        Some(depth) => watch(builder.target_max_depth(depth).spawn_bfs(), scope, args, out),
        None if symmetric => {
            watch(builder.symmetry_fn(symmetry::representative_for(args.fault)).spawn_dfs(), scope, args, out)
        }
        None => watch(builder.spawn_dfs(), scope, args, out),
    }
}

/// Waits for the checker, printing progress, until it is done or Ctrl-C
/// is pressed; then prints what it found (so far) and returns the exit status.
fn watch(checker: impl Checker<RaftModel>, scope: Scope, args: &Args, out: &mut impl Write) -> i32 {
    /// How often the checker is polled: short, so that Ctrl-C and the end
    /// of a short run are answered at once.
    const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
    let mut progress = Progress::start();
    let mut interrupted = false;
    while !checker.is_done() {
        if report::interrupted() {
            interrupted = true;
            break;
        }
        progress.tick(checker.state_count(), checker.unique_state_count(), checker.max_depth());
        std::thread::sleep(POLL_INTERVAL);
    }
    let checker = if interrupted { checker } else { checker.join() };
    progress.finish();
    let found = Findings {
        scope,
        interrupted,
        states: checker.state_count(),
        unique: checker.unique_state_count(),
        depth: checker.max_depth(),
        elapsed: progress.elapsed(),
        discoveries: checker.discoveries().into_iter().collect(),
    };
    let verdicts = report::print(checker.model(), &found, &options(args), out);
    verdicts.exit_status(args.require_examples, interrupted)
}

fn options(args: &Args) -> Options<'_> {
    Options { examples: args.examples, replay_dir: &args.replay_dir, flags: args.model_flags(), addr: &args.addr }
}

fn simulate(args: &Args, config: ModelConfig, out: &mut (impl Write + Send)) -> i32 {
    let model = config.into_model();
    let _ = writeln!(
        out,
        "Simulating {} random walks of at most {} actions from seed {}.",
        args.runs, args.steps, args.seed
    );
    let every = (args.runs / 10).max(1);
    let outcome = crate::simulate::simulate(
        &model,
        args.seed,
        args.runs,
        args.steps,
        args.weights,
        false,
        |run, states, unique| {
            if run % every == 0 {
                let _ = writeln!(out, "Simulating. runs={run}, states={states}, unique={unique}");
            }
        },
    );
    let found = Findings {
        scope: Scope::Walks(args.runs),
        interrupted: false,
        states: outcome.states,
        unique: outcome.unique,
        depth: outcome.depth,
        elapsed: std::time::Duration::from_secs(outcome.seconds),
        discoveries: outcome.discoveries,
    };
    let verdicts = report::print(&model, &found, &options(args), out);
    verdicts.exit_status(args.require_examples, false)
}

fn explore(args: &Args, config: ModelConfig, out: &mut (impl Write + Send)) -> i32 {
    let explorer = match crate::explorer::Explorer::bind(config, &args.addr, args.threads()) {
        Ok(explorer) => explorer,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let addr = explorer.addr();
    let _ =
        writeln!(out, "Serving the Raft explorer on http://{addr}/ (stateright's explorer: http://{addr}/stateright/)");
    let _ =
        writeln!(out, "A path the checker printed opens at http://{addr}/#/steps/PATH?property=NAME; Ctrl-C stops.");
    let _ = out.flush();
    explorer.run();
    0
}

fn parse_weights(text: &str) -> Result<crate::simulate::Weights, String> {
    let numbers: Result<Vec<u64>, _> = text.split(',').map(|n| n.trim().parse::<u64>()).collect();
    match numbers.as_deref() {
        Ok(&[deliver, timeout, crash, slow]) if deliver + timeout > 0 => {
            Ok(crate::simulate::Weights { deliver, timeout, crash, slow, operator: timeout })
        }
        Ok(&[deliver, timeout, crash, slow, operator]) if deliver + timeout > 0 => {
            Ok(crate::simulate::Weights { deliver, timeout, crash, slow, operator })
        }
        _ => Err(format!(
            "expected four or five weights DELIVER,TIMEOUT,CRASH,SLOW[,OPERATOR] (not all zero), not {text:?}"
        )),
    }
}

fn parse_fault(name: &str) -> Result<Fault, String> {
    Fault::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        format!("no fault named {name:?}; the faults are: {}", names.join(", "))
    })
}

/// Stops a check as soon as one of `names` is discovered (for tests that
/// look for one counterexample).
pub fn until_any(names: &[&'static str]) -> HasDiscoveries {
    HasDiscoveries::AnyOf(names.iter().copied().collect())
}
