//! Election timing: a discrete-event simulator over `raft_core` with virtual
//! time, and the experiment of the Raft paper's Figure 16 (§9.3 of the
//! extended paper) run on it.
//!
//! Nothing here reads a clock or an operating-system random source: every
//! latency, disk delay and timer duration comes from one seeded ChaCha RNG,
//! so a seed replays a run bit for bit.

pub mod election;
pub mod plot;
pub mod sim;
pub mod sweep;

pub use election::{run_trials, ElectionParams, Summary, TrialOutcome};
pub use sim::{Event, Latency, Micros, NetworkConfig, Sim};

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Config, Input, NodeId, Proposal, ProposalId};

    fn lossy_run(seed: u64) -> (u64, u64) {
        let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let configs = ids.iter().map(|&id| Config::new(id)).collect();
        let net = NetworkConfig { loss: 0.1, ..NetworkConfig::paper() };
        let mut sim = Sim::new(configs, net, seed);
        let mut proposals = 0;
        while sim.now() < 10_000_000 {
            let Some(event) = sim.pop() else { break };
            sim.apply(event);
            if sim.events().is_multiple_of(50) {
                proposals += 1;
                let id = NodeId(1 + proposals % 3);
                sim.input(id, Input::Propose(vec![Proposal { id: ProposalId(proposals), data: vec![1] }]));
            }
            if sim.events() == 300 {
                sim.crash(NodeId(2));
            }
            if sim.events() == 600 {
                sim.restart(NodeId(2));
            }
        }
        (sim.trace_hash(), sim.events())
    }

    #[test]
    fn same_seed_same_run_bit_for_bit() {
        let a = lossy_run(7);
        assert_eq!(a, lossy_run(7));
        assert!(a.1 > 700, "the run did something: {} events", a.1);
        assert_ne!(a.0, lossy_run(8).0, "a different seed gives a different run");
    }

    #[test]
    fn election_trials_are_reproducible() {
        let params = ElectionParams::paper((150, 300), 20, 3);
        assert_eq!(run_trials(&params), run_trials(&params));
    }

    /// Pins one small run by seed, so that any change in election behaviour
    /// (the core's rules, the simulator's timing, the experiment's setup)
    /// shows up here. Update the numbers only for a change that is meant.
    #[test]
    fn pinned_small_run() {
        let params = ElectionParams::paper((150, 300), 8, 1);
        let times: Vec<u64> = run_trials(&params).iter().map(|o| o.micros()).collect();
        assert_eq!(times, PINNED);
    }

    // Re-pinned when a new node's first output became the persist of its
    // membership: that bootstrap write draws one disk latency from the
    // seeded RNG, which shifts every later draw. With that write left
    // undrawn the old figures came back exactly. Re-pinned again when a
    // candidate's vote came to be written in the background (thesis
    // §10.2.1): each election now ends about 10 ms sooner (the trials were
    // 200457, 150761, 155504, 164045, 205376, 196736, 186692, 149388).
    const PINNED: [u64; 8] = [190741, 140201, 145259, 154246, 195842, 186936, 176313, 138486];

    #[test]
    fn no_randomness_livelocks_for_seconds() {
        // §9.3: without randomness, split votes keep the cluster leaderless
        // for seconds; a little randomness fixes it.
        let fixed = Summary::of(&run_trials(&ElectionParams::paper((150, 150), 10, 1)));
        let random = Summary::of(&run_trials(&ElectionParams::paper((150, 300), 10, 1)));
        assert!(fixed.p50 > 2_000.0, "150-150: {fixed}");
        assert!(random.p50 < 500.0, "150-300: {random}");
    }

    #[test]
    fn ranges_parse_with_reasons() {
        assert_eq!(sweep::parse_range("150-300"), Ok((150, 300)));
        assert!(sweep::parse_range("300-150").unwrap_err().contains("not above"));
        assert!(sweep::parse_range("150").unwrap_err().contains("not a range"));
        assert!(sweep::parse_range("1-5").unwrap_err().contains("at least 2"));
    }
}
