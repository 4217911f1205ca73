//! Random walks through the model, for models too big to exhaust.
//!
//! Stateright's own simulation checker draws from an RNG that is not
//! reproducible across versions and has no run count, so this is a small
//! walker of our own: `runs` walks of at most `steps` actions each, every
//! choice drawn from one ChaCha RNG seeded with `seed`, every property
//! checked on every state. The same seed gives the same walks.

use crate::model::{RaftModel, RaftState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stateright::actor::Id;
use stateright::{Expectation, Model, Path};
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::time::Instant;

/// What a simulation found.
pub struct Outcome {
    /// States visited (with repeats).
    pub states: usize,
    /// Distinct states visited.
    pub unique: usize,
    /// The longest walk, in states (the initial state counts as 1, as in stateright).
    pub depth: usize,
    /// Seconds taken.
    pub seconds: u64,
    /// The first path found for each property that was discovered.
    pub discoveries: BTreeMap<&'static str, Path<RaftState, <RaftModel as Model>::Action>>,
}

/// How likely each kind of action is, relative to the others, when a walk
/// chooses its next action. Uniform weights make every enabled action
/// equally likely; since every follower's election timer is always armed,
/// walks then spend their length on elections. Weighting message deliveries
/// above timeouts and crashes lets a walk finish the rounds it starts,
/// which the scenarios behind the deeper bugs (Figure 8) need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// A message delivered (or dropped, on a lossy network).
    pub deliver: u64,
    /// A timer fires.
    pub timeout: u64,
    /// A crash or a recovery.
    pub crash: u64,
    /// A message delivered to the walk's slow server. Each walk but every
    /// fourth picks one server whose incoming messages take this weight
    /// instead of `deliver`: a server cut off for a while (a deposed leader
    /// that has not heard of the new term, a follower that lags), which
    /// uniformly drawn deliveries almost never produce.
    pub slow: u64,
    /// The model's operator asks a server for a membership change.
    pub operator: u64,
}

impl Weights {
    /// Every action equally likely.
    pub const UNIFORM: Weights = Weights { deliver: 1, timeout: 1, crash: 1, slow: 1, operator: 1 };

    fn of(&self, action: &<RaftModel as Model>::Action, slow: Option<Id>) -> u64 {
        use stateright::actor::ActorModelAction as A;
        match action {
            A::Deliver { dst, .. } if Some(*dst) == slow => self.slow,
            A::Deliver { .. } | A::Drop(_) | A::SelectRandom { .. } => self.deliver,
            A::Timeout(_, crate::actor::ModelTimer::Change(_)) => self.operator,
            A::Timeout(..) => self.timeout,
            A::Crash(_) | A::Recover(_) => self.crash,
        }
    }
}

/// Runs `runs` random walks of at most `steps` actions from `seed`,
/// calling `progress` after each run. With `stop_at_first`, stops after the
/// walk that finds the first counterexample of an `Always` property.
pub fn simulate(
    model: &RaftModel,
    seed: u64,
    runs: usize,
    steps: usize,
    weights: Weights,
    stop_at_first: bool,
    mut progress: impl FnMut(usize, usize, usize),
) -> Outcome {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let properties = model.properties();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut seen = HashSet::new();
    let mut discoveries = BTreeMap::new();
    let (mut states, mut depth) = (0, 0);
    let mut actions = Vec::new();
    for run in 0..runs {
        let mut state = model.init_states().remove(0);
        let mut path_actions = Vec::new();
        let servers = model.cfg.servers as u64;
        let slow = (run % 4 != 3).then(|| Id::from((rng.next_u64() % servers) as usize));
        for taken in 0..=steps {
            states += 1;
            seen.insert(hasher.hash_one(&state));
            for p in &properties {
                let holds = (p.condition)(model, &state);
                let found = match p.expectation {
                    Expectation::Sometimes => holds,
                    _ => !holds,
                };
                if found && !discoveries.contains_key(p.name) {
                    let init = model.init_states().remove(0);
                    let actions = match p.expectation {
                        Expectation::Sometimes => path_actions.clone(),
                        _ => shrink(model, &path_actions, |s| !(p.condition)(model, s)),
                    };
                    if let Some(path) = Path::from_actions(model, init, &actions) {
                        discoveries.insert(p.name, path);
                    }
                }
            }
            if taken == steps {
                break;
            }
            actions.clear();
            model.actions(&state, &mut actions);
            let next = loop {
                if actions.is_empty() {
                    break None;
                }
                let total: u64 = actions.iter().map(|a| weights.of(a, slow)).sum();
                let mut draw = rng.next_u64() % total.max(1);
                let k = actions
                    .iter()
                    .position(|a| {
                        let w = weights.of(a, slow);
                        if draw < w {
                            return true;
                        }
                        draw -= w;
                        false
                    })
                    .unwrap_or(0);
                let action = actions.swap_remove(k);
                if let Some(next) = model.next_state(&state, action.clone()).filter(|s| model.within_boundary(s)) {
                    break Some((action, next));
                }
            };
            let Some((action, next)) = next else { break };
            path_actions.push(action);
            state = next;
        }
        depth = depth.max(path_actions.len() + 1);
        progress(run + 1, states, seen.len());
        let counterexample =
            |name: &&str| properties.iter().any(|p| p.name == *name && p.expectation != Expectation::Sometimes);
        if stop_at_first && discoveries.keys().any(counterexample) {
            break;
        }
    }
    Outcome { states, unique: seen.len(), depth, seconds: start.elapsed().as_secs(), discoveries }
}

type Action = <RaftModel as Model>::Action;

/// A shorter walk that still reaches a state where `broken` holds: drops
/// one action at a time, from the last, keeping each drop after which
/// every remaining action is still enabled in its turn and some state
/// along the way is broken (the walk then ends at the first such state);
/// repeats until no action can be dropped. A random walk wanders, and its
/// counterexamples are several times longer than they need be.
fn shrink(model: &RaftModel, actions: &[Action], broken: impl Fn(&RaftState) -> bool) -> Vec<Action> {
    let mut best = actions.to_vec();
    loop {
        let mut dropped_one = false;
        for skip in (0..best.len()).rev() {
            let candidate: Vec<Action> =
                best.iter().enumerate().filter(|&(k, _)| k != skip).map(|(_, a)| a.clone()).collect();
            if let Some(n) = first_broken(model, &candidate, &broken) {
                best = candidate[..n].to_vec();
                dropped_one = true;
                break;
            }
        }
        if !dropped_one {
            return best;
        }
    }
}

/// How many of `actions` lead, each enabled in its turn and within the
/// model's boundary, to the first state where `broken` holds; `None` if
/// none does.
fn first_broken(model: &RaftModel, actions: &[Action], broken: &impl Fn(&RaftState) -> bool) -> Option<usize> {
    let mut state = model.init_states().remove(0);
    let mut enabled = Vec::new();
    for (k, action) in actions.iter().enumerate() {
        if broken(&state) {
            return Some(k);
        }
        enabled.clear();
        model.actions(&state, &mut enabled);
        if !enabled.contains(action) {
            return None;
        }
        state = model.next_state(&state, action.clone()).filter(|s| model.within_boundary(s))?;
    }
    broken(&state).then_some(actions.len())
}
