//! Check profiles, and the mutation harness that runs them against every
//! rule of raft-core broken on purpose.
//!
//! A profile is a model (its bounds) and a search (breadth-first to a depth,
//! exhaustive depth-first with symmetry reduction, or seeded random walks).
//! [`ci_profiles`] are the ones CI runs: `-m profiles` runs each on the
//! correct core and fails on any counterexample or on a `Sometimes` left
//! without an example; `-m mutants` runs them against every
//! [`Fault`], in order, until one profile finds a
//! counterexample, and fails if any fault escapes all of them. The checker
//! is only as good as the bugs it catches: each profile exists because some
//! rule is decided only within its bounds (see each profile's `why`).

use crate::model::{ModelConfig, ModelKind, Proposals, RaftModel, RaftState};
use crate::simulate::Weights;
use crate::symmetry;
use raft_core::Fault;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};
use std::time::{Duration, Instant};

/// How a profile searches its model.
#[derive(Clone, Copy, Debug)]
pub enum Search {
    /// Breadth-first to this depth (the initial state is depth 1).
    Bfs {
        /// The depth.
        depth: usize,
    },
    /// Exhaustive within the model's bounds, depth-first, with symmetry
    /// reduction, or until `states_max` states have been generated
    /// (stateright's time limit is not honoured by a single-threaded
    /// depth-first search, its state-count limit is).
    Exhaustive {
        /// The most states to generate.
        states_max: usize,
    },
    /// Seeded random walks (see [`crate::simulate`]).
    Walks {
        /// The seed of the first walk.
        seed: u64,
        /// How many walks.
        runs: usize,
        /// The most actions per walk.
        steps: usize,
        /// How likely each kind of action is.
        weights: Weights,
    },
}

/// One check profile.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Its name on the command line and in reports.
    pub name: &'static str,
    /// Why it exists: which rules only it decides.
    pub why: &'static str,
    /// The model.
    pub config: ModelConfig,
    /// The search.
    pub search: Search,
}

/// Walks deliver messages four times as often as timers fire, and crash
/// rarely: elections then finish and logs get replicated between them.
const WALK_WEIGHTS: Weights = Weights { deliver: 16, timeout: 4, crash: 1, slow: 1, operator: 4 };

/// The kv model's walks: a stale read needs a leader that has been deposed
/// without hearing of it while a client's write and read complete
/// elsewhere, so timers fire rarer still (measured: with these weights
/// each of the two read faults that need a deposed leader was caught by
/// every one of 4 seeds of 10,000 walks, against 1 to 5 of 8 with 16,1 or
/// 16,2).
const READ_WALK_WEIGHTS: Weights = Weights { deliver: 32, timeout: 1, crash: 1, slow: 1, operator: 1 };

/// The profiles CI runs, cheapest first.
pub fn ci_profiles() -> Vec<Profile> {
    let base = ModelConfig::default();
    let walks = Search::Walks { seed: 1, runs: 20_000, steps: 120, weights: WALK_WEIGHTS };
    vec![
        Profile {
            name: "depth10",
            why: "the main job: every execution of at most 8 steps, crashes included",
            config: base.clone(),
            search: Search::Bfs { depth: 10 },
        },
        Profile {
            name: "split-walks",
            why: "one entry per append, terms up to 4: a follower holds part of a log, so the Figure 8 \
                  rule, the follower's commit bound and the acknowledged match index decide",
            config: ModelConfig { split_appends: true, max_term: 4, max_log: 4, crashes: 0, ..base.clone() },
            search: walks,
        },
        Profile {
            name: "kv-walks",
            why: "a client's write and its read through ReadIndex at another server, terms up to 3: \
                  linearizability and the read rules",
            config: ModelConfig {
                kind: ModelKind::Kv,
                clients: 1,
                max_term: 3,
                max_log: 4,
                crashes: 0,
                ..base.clone()
            },
            search: Search::Walks { seed: 1, runs: 20_000, steps: 80, weights: READ_WALK_WEIGHTS },
        },
        Profile {
            name: "prevote-walks",
            why: "pre-vote, check-quorum and a leadership transfer per server, split appends, terms \
                  up to 4: the thesis's extensions keep every property, and a pre-vote changes no term",
            config: ModelConfig {
                split_appends: true,
                max_term: 4,
                max_log: 4,
                crashes: 0,
                pre_vote: true,
                check_quorum: true,
                transfers: true,
                ..base.clone()
            },
            search: walks,
        },
        Profile {
            name: "crash-walks",
            why: "split appends under a crash and recovery at terms up to 3, with background writes (thesis \
                  §10.2.1) that complete at any moment or are lost in the crash: what is persisted and recovered",
            config: ModelConfig {
                split_appends: true,
                max_term: 3,
                max_log: 4,
                crashes: 1,
                background_writes: true,
                ..base.clone()
            },
            search: walks,
        },
        Profile {
            name: "snapshot-walks",
            why: SNAPSHOT_WALKS_WHY,
            config: ModelConfig { snapshots: 1, max_term: 3, max_log: 4, crashes: 1, background_writes: true, ..base },
            search: Search::Walks { seed: 1, runs: SNAPSHOT_WALKS, steps: 100, weights: WALK_WEIGHTS },
        },
        Profile {
            name: "membership-walks",
            why: MEMBERSHIP_WALKS_WHY,
            config: membership_model(),
            search: Search::Walks { seed: 1, runs: MEMBERSHIP_WALKS, steps: 120, weights: MEMBERSHIP_WALK_WEIGHTS },
        },
    ]
}

/// Why `membership-walks` exists.
const MEMBERSHIP_WALKS_WHY: &str = "five servers, four of them voters and one a learner, and an operator \
     that asks any leader for up to two membership changes at any moment, terms up to 4: configurations \
     in effect when appended, learners, one change at a time, and the own-term commit rule (raft-dev, 2015)";

/// How many walks `membership-walks` takes.
const MEMBERSHIP_WALKS: usize = 5_000;

/// Walks in which the operator asks a leader for a change as soon as it
/// may: the 2015 bug needs a new leader's change before its no-op commits.
const MEMBERSHIP_WALK_WEIGHTS: Weights = Weights { operator: 64, ..WALK_WEIGHTS };

/// The membership model of `membership-walks` (and of the README's
/// commands): `--nodes 5 --voters 4 --max-changes 2 --crashes 0 --max-term 4 --max-log 8`.
/// Four voters, as in the raft-dev example of 2015: from three voters,
/// any two single changes give majorities that overlap (a majority of
/// four and one of two among four servers, or two of three among three),
/// so the bug needs three changes and walks almost never find it.
pub fn membership_model() -> ModelConfig {
    ModelConfig { servers: 5, voters: 4, max_changes: 2, crashes: 0, max_term: 4, max_log: 8, ..ModelConfig::default() }
}

/// Why `snapshot-walks` exists.
const SNAPSHOT_WALKS_WHY: &str = "one snapshot per server at any index, no trailing entries, a crash, \
     background writes, terms up to 3: compaction, InstallSnapshot racing appends, recovery from a snapshot, and every property over what a \
     node holds, its snapshot included";

/// How many walks `snapshot-walks` takes.
const SNAPSHOT_WALKS: usize = 5_000;

impl Profile {
    /// Whether this profile's model can run the code `fault` breaks. The
    /// two snapshot faults break rules that run only when an application
    /// takes a snapshot or a leader sends one, which a model without
    /// snapshots never does, and the membership fault a rule that runs only
    /// when a change is asked for: the harness does not spend a full search
    /// of each such profile on them.
    pub fn can_exercise(&self, fault: Fault) -> bool {
        let needs_snapshots = matches!(fault, Fault::InstallDiscardsMatchingSuffix | Fault::CompactPastCommit);
        let needs_changes = fault == Fault::ChangeBeforeTermCommit;
        (!needs_snapshots || self.config.snapshots > 0) && (!needs_changes || self.config.max_changes > 0)
    }
}

/// The deep profile's bound on generated states: about ten minutes on one
/// core of the machine the README's figures come from.
pub const DEEP_STATES_MAX: usize = 60_000_000;

/// The deep profile, for longer runs than CI's: split appends, terms up to
/// 3, one crash, exhaustive within its bounds.
pub fn deep_profile() -> Profile {
    Profile {
        name: "deep",
        why: "split appends, terms up to 3, one crash, exhaustive as far as 60 M states reach",
        config: ModelConfig {
            split_appends: true,
            max_term: 3,
            max_log: 3,
            proposals: Proposals::Start,
            ..ModelConfig::default()
        },
        search: Search::Exhaustive { states_max: DEEP_STATES_MAX },
    }
}

/// What one run of a profile found.
pub struct Outcome {
    /// States generated.
    pub states: usize,
    /// Distinct states.
    pub unique: usize,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// The `Always` properties with a counterexample, each with its path.
    pub counterexamples: Vec<(&'static str, Path<RaftState, <RaftModel as Model>::Action>)>,
    /// The `Sometimes` properties with no example.
    pub missing_examples: Vec<&'static str>,
    /// Whether the search covered its whole scope (false when stopped early).
    pub complete: bool,
}

/// Runs `profile` with `fault` injected (if any). With `stop_at_first`, the
/// search stops at the first counterexample.
pub fn run(profile: &Profile, fault: Option<Fault>, stop_at_first: bool, threads: usize) -> Outcome {
    let started = Instant::now();
    let config = ModelConfig { fault, ..profile.config.clone() };
    let symmetric = config.servers_only();
    let model = config.into_model();
    let always: Vec<&'static str> =
        model.properties().iter().filter(|p| p.expectation == Expectation::Always).map(|p| p.name).collect();
    let sometimes: Vec<&'static str> =
        model.properties().iter().filter(|p| p.expectation == Expectation::Sometimes).map(|p| p.name).collect();
    let (states, unique, found, complete): (usize, usize, Vec<_>, bool) = match profile.search {
        Search::Walks { seed, runs, steps, weights } => {
            let outcome = crate::simulate::simulate(&model, seed, runs, steps, weights, stop_at_first, |_, _, _| {});
            let complete = !stop_at_first || !outcome.discoveries.keys().any(|n| always.contains(n));
            (outcome.states, outcome.unique, outcome.discoveries.into_iter().collect(), complete)
        }
        Search::Bfs { .. } | Search::Exhaustive { .. } => {
            let mut builder = model.checker().threads(threads);
            if let Search::Exhaustive { states_max } = profile.search {
                builder = builder.target_state_count(states_max);
            }
            if stop_at_first {
                builder = builder.finish_when(HasDiscoveries::AnyOf(always.iter().copied().collect()));
            }
            let (states, unique, found, done) = match profile.search {
                Search::Bfs { depth } => summary(builder.target_max_depth(depth).spawn_bfs().join()),
                _ if symmetric => summary(builder.symmetry_fn(symmetry::representative_for(fault)).spawn_dfs().join()),
                _ => summary(builder.spawn_dfs().join()),
            };
            let stopped_early = stop_at_first && found.iter().any(|(n, _)| always.contains(n));
            // stateright reports a search stopped at its state limit as done.
            let limited = matches!(profile.search, Search::Exhaustive { states_max } if states >= states_max);
            (states, unique, found, done && !limited && !stopped_early)
        }
    };
    let mut counterexamples: Vec<_> = found.iter().filter(|(n, _)| always.contains(n)).cloned().collect();
    counterexamples.sort_by_key(|(name, path)| (path_len(path), *name));
    let missing_examples = sometimes.into_iter().filter(|n| !found.iter().any(|(f, _)| f == n)).collect();
    Outcome { states, unique, elapsed: started.elapsed(), counterexamples, missing_examples, complete }
}

type Found = Vec<(&'static str, Path<RaftState, <RaftModel as Model>::Action>)>;

fn summary(checker: impl Checker<RaftModel>) -> (usize, usize, Found, bool) {
    let found = checker.discoveries().into_iter().collect();
    (checker.state_count(), checker.unique_state_count(), found, checker.is_done())
}

/// The number of actions in a path.
pub fn path_len(path: &Path<RaftState, <RaftModel as Model>::Action>) -> usize {
    path.clone().into_actions().len()
}

/// What the mutation harness found for one fault.
pub struct Caught {
    /// The fault.
    pub fault: Fault,
    /// The profile that caught it, the property it broke, the counterexample's
    /// length, and that profile's run; `None` when every profile missed it.
    pub by: Option<(&'static str, &'static str, usize, Outcome)>,
    /// Time spent on this fault over every profile tried.
    pub elapsed: Duration,
}

/// Runs `profiles` against `fault`, in order, until one finds a
/// counterexample (skipping those that cannot exercise it, see
/// [`Profile::can_exercise`]).
pub fn catch(fault: Fault, profiles: &[Profile], threads: usize) -> Caught {
    let started = Instant::now();
    for profile in profiles.iter().filter(|p| p.can_exercise(fault)) {
        let outcome = run(profile, Some(fault), true, threads);
        if let Some((property, path)) = outcome.counterexamples.first() {
            let (property, steps) = (*property, path_len(path));
            return Caught { fault, by: Some((profile.name, property, steps, outcome)), elapsed: started.elapsed() };
        }
    }
    Caught { fault, by: None, elapsed: started.elapsed() }
}

/// `-m profiles`: runs the CI profiles (or the one named; `deep` for the
/// deep profile) on the correct core, one summary line each. Exit status 1
/// on a counterexample, or on a Sometimes without an example in a search
/// that finished; 2 for an unknown name.
pub fn report_profiles(only: Option<&str>, threads: usize, out: &mut impl std::io::Write) -> i32 {
    let mut profiles = ci_profiles();
    profiles.push(deep_profile());
    let chosen: Vec<Profile> = match only {
        Some(name) => profiles.into_iter().filter(|p| p.name == name).collect(),
        None => profiles.into_iter().filter(|p| p.name != "deep").collect(),
    };
    if chosen.is_empty() {
        let _ = writeln!(out, "error: no profile named {:?}", only.unwrap_or_default());
        return 2;
    }
    let mut failed = false;
    for profile in &chosen {
        let outcome = run(profile, None, false, threads);
        let verdict = match (outcome.counterexamples.first(), outcome.missing_examples.is_empty()) {
            (Some((name, path)), _) => format!("FAILS: {name} (counterexample of {} steps)", path_len(path)),
            (None, false) => {
                format!("every Always holds; no example of: {}", outcome.missing_examples.join(", "))
            }
            (None, true) => "every Always holds, every Sometimes has an example".to_string(),
        };
        let verdict = if outcome.complete { verdict } else { format!("{verdict} (stopped at its state limit)") };
        // A search stopped at its limit may not have reached a Sometimes
        // yet: that is reported, but only a finished search fails for it.
        failed |= !outcome.counterexamples.is_empty() || (outcome.complete && !outcome.missing_examples.is_empty());
        let _ = writeln!(
            out,
            "profile {:<12} {:>11} states {:>10} unique {:>7.1} s  {verdict}",
            profile.name,
            outcome.states,
            outcome.unique,
            outcome.elapsed.as_secs_f64()
        );
        for (name, path) in &outcome.counterexamples {
            let _ = writeln!(out, "  {name}: {}", path.encode(&profile.config.clone().into_model()));
        }
        let _ = out.flush();
    }
    i32::from(failed)
}

/// `-m mutants`: every fault (or the one given) against the CI profiles,
/// one table row each. Exit status 1 if a fault escapes every profile.
pub fn report_mutants(only: Option<Fault>, threads: usize, out: &mut impl std::io::Write) -> i32 {
    let profiles = ci_profiles();
    let faults: Vec<Fault> = match only {
        Some(fault) => vec![fault],
        None => Fault::ALL.to_vec(),
    };
    let _ = writeln!(out, "| fault | rule | caught by | property | steps | unique states | seconds |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut escaped = Vec::new();
    for &fault in &faults {
        let caught = catch(fault, &profiles, threads);
        let rule = format!("{}: {}", fault.section(), fault.rule());
        let seconds = caught.elapsed.as_secs_f64();
        match &caught.by {
            Some((profile, property, steps, outcome)) => {
                let _ = writeln!(
                    out,
                    "| `{}` | {rule} | {profile} | {property} | {steps} | {} | {seconds:.1} |",
                    fault.name(),
                    outcome.unique
                );
            }
            None => {
                escaped.push(fault.name());
                let _ = writeln!(out, "| `{}` | {rule} | ESCAPED | - | - | - | {seconds:.1} |", fault.name());
            }
        }
        let _ = out.flush();
    }
    let _ = writeln!(
        out,
        "{} of {} faults caught in {:.1} s",
        faults.len() - escaped.len(),
        faults.len(),
        started.elapsed().as_secs_f64()
    );
    if !escaped.is_empty() {
        let _ = writeln!(out, "escaped: {}", escaped.join(", "));
    }
    i32::from(!escaped.is_empty())
}
