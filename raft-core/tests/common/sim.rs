//! A seeded, deterministic simulator of a whole cluster over raft-core's
//! `step`, with no tokio and no clock.
//!
//! Everything that happens is an event on a virtual clock (microseconds), in
//! one queue ordered by time and then by the order events were scheduled:
//! a message arriving, a timer firing, a node crashing or restarting, a
//! partition starting or healing, a client proposing. One ChaCha8 generator,
//! seeded from the run's seed, draws every random choice (timer durations
//! from the ranges the core asks for, message delays, losses, duplicates,
//! crashes), so a seed replays exactly.
//!
//! The driver executes each output list in order, as the step contract
//! says: `Persist` goes to the node's disk (a [`MemoryStore`], which
//! refuses a persist that breaks the contract), `Send` to the network,
//! timers to the node's timer table (`SetTimer` replaces that kind's
//! deadline; `CancelTimer` removes it), `Deliver` to the node's
//! application, which applies the commands and, a moment later, reports
//! them applied (`Input::Applied`), so that the core's delivery window
//! moves on. A crash may strike in the middle of an output list: what was
//! executed stays, what was not is lost. A crashed node keeps only its disk
//! and restarts through `State::recover`.
//!
//! In half the runs the applications take snapshots now and then (§7), at
//! their applied index or, playing a buggy driver, at any index up to the
//! log's end (which the core must refuse), with few trailing entries kept,
//! so that nodes that were down or cut off are caught up by
//! `InstallSnapshot`. The snapshot data is the prefix of the log it covers;
//! the simulator's driver moves it with the message (keyed by the
//! snapshot's index and term) and restores the application from it. Every
//! property is checked over what a node holds, its snapshot included.
//!
//! After every step the simulator checks the paper's safety properties
//! (Figure 3) over the whole history: Election Safety, Leader Append-Only,
//! Log Matching, Leader Completeness and State Machine Safety; linearizable
//! reads; the rules of Figure 2 that a step shows from outside (stale terms
//! rejected, the AppendEntries receiver's rules, commitment on a majority
//! and of the leader's own term only); persistence (memory matching disk,
//! the disk backing every vote and acknowledgement sent); delivery (only
//! committed entries, in order, once each); and the rest of the step
//! contract (drops changing nothing). Each [`Property`] names the rule it
//! checks. A panic of the core is reported as [`Property::Panic`], which
//! ends the run without counting as a property's violation.
//!
//! A run has two phases. In the safety phase the network loses, duplicates,
//! delays and reorders messages (now and then holding one back for longer
//! than an election takes), partitions the cluster (a minority cut off, or
//! a partial partition: one link cut, both ways or one way only), nodes
//! crash and restart, and an operator now and then asks the leader to hand
//! its leadership over. In the liveness phase every fault stops and every
//! node is up; within a bounded number of steps one leader must be elected,
//! every client proposal of the phase must be committed, and every member
//! must hold the same log and have delivered all of it.
//!
//! Membership changes (thesis §4): beside the 3 or 5 voters a run starts
//! with, machines started empty (`Membership::joining`) wait to join, up
//! to six machines in all. An operator asks the leader of the newest term,
//! at random moments and often just after an election (before the new
//! leader has committed an entry of its term, when it must refuse), for
//! one change that keeps 3 to 5 voters: add an idle machine as a learner,
//! promote a learner, remove a voter (the leader itself, at times) or a
//! learner; a leader that took one is at times crashed or cut off before it
//! commits. A machine whose removal commits is shut down for good a while
//! later (at once in the liveness phase); a wiped one comes back as a new
//! machine with a new id, since a wiped disk under an old id would have
//! forgotten votes. The properties are checked across configurations:
//! CommitOnMajority holds each index to the voters that committed it, and
//! the liveness phase waits for the members of the leader's membership
//! only.
//!
//! Scenario tests drive a run by hand instead: with `Options::chaos` off no
//! random fault strikes (clients still propose), and the test advances the
//! clock ([`Sim::run_for`]), cuts and heals links ([`Sim::isolate`],
//! [`Sim::cut`], [`Sim::heal`]), feeds inputs ([`Sim::input`]), looks at
//! the nodes and at the history of who led when ([`Sim::leadership`]), and
//! ends with the liveness phase ([`Sim::finish`]). Every property is checked
//! after every step all the same.

use raft_core::{
    AppendResult, Change, ChangeRejection, Config, Entry, Fault, Input, Log, LogIndex, Membership, MemoryStore,
    Message, NodeId, Output, Payload, Persist, Proposal, ProposalId, ReadId, Rejection, SnapshotMeta, State, Term,
    Timer,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How long a liveness-phase client waits for its command to be delivered
/// before proposing it again: several election timeouts, so that a retry
/// is rare while the cluster is healthy.
const CLIENT_RETRY_US: u64 = 1_000_000;

thread_local! {
    /// Set while this thread runs the core under [`catch_panic`]: the panic
    /// hook then keeps the panic's message for the violation instead of
    /// printing it.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `f`, turning a panic into its message (with its location). The
/// panic hook is wrapped once per process; panics outside `catch_panic`, or
/// on other threads, still reach the previous hook.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static WRAP_HOOK: std::sync::Once = std::sync::Once::new();
    WRAP_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.get() {
                CAUGHT.set(info.to_string());
            } else {
                previous(info);
            }
        }));
    });
    let outer = CATCHING.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(outer);
    result.map_err(|_| CAUGHT.take())
}

/// The longest an application takes to apply what was delivered to it and
/// report it applied: a fraction of a heartbeat, so that delivery windows
/// fill now and then without slowing the cluster down.
const APPLY_DELAY_MAX_US: u64 = 5_000;

/// The longest a background write (`Output::PersistAsync`) takes to become
/// durable: beyond a message's usual delay, so that a leader's followers
/// acknowledge entries before its own disk has them, and a candidate
/// collects votes before its own is written.
const WRITE_DELAY_MAX_US: u64 = 4_000;

/// The delivery windows a run may draw (`Config::unapplied_entries_max`,
/// `Config::unapplied_bytes_max`): from one entry, or 4 bytes (below the
/// liveness phase's 6-byte commands, which then go alone), to the defaults.
const UNAPPLIED_ENTRIES_CHOICES: [u64; 4] = [1, 3, 64, 4096];
const UNAPPLIED_BYTES_CHOICES: [u64; 3] = [4, 8, 64 << 20];

/// The longest a straggling message is held back: several election
/// timeouts (150 to 300 ms by default), so that a node can lose and regain
/// leadership while the message is on its way.
const STRAGGLER_DELAY_MAX_US: u64 = 2_000_000;

/// The most machines up or able to come up at once in a run that changes
/// membership: the voters it starts with, and joiners, started empty, for
/// the operator to add.
const MACHINES_MAX: usize = 6;

/// The most machines a run may ever start: a removed machine is shut down
/// for good, and may come back wiped as a new one, with a new id. (A wiped
/// machine under its old id would have forgotten its votes and
/// acknowledgements, which Raft's safety rests on; operators give it a new
/// identity.)
const MACHINES_EVER_MAX: usize = 16;

/// The voters the operator keeps a cluster between (thesis §4: one server
/// at a time; four voters are needed for the raft-dev 2015 bug, where two
/// changes from four voters can leave majorities that do not meet).
const VOTERS_MIN: usize = 3;
const VOTERS_MAX: usize = 5;

/// Mean time between two membership changes the operator asks for, besides
/// those it asks of a newly elected leader.
const OPERATOR_EVERY_US: u64 = 150_000;

/// Chance that the operator asks a newly elected leader for a change
/// within a message delay of its election: before the leader has committed
/// an entry of its term, which it must refuse (the 2015 fix).
const OPERATOR_AFTER_ELECTION: f64 = 0.6;

/// Chance that a leader which took a change is crashed or cut off soon
/// after, before the change commits: then the next leader may lack it, and
/// a change it takes at once makes the 2015 bug.
const DEPOSE_AFTER_CHANGE: f64 = 0.3;

/// The longest a removed machine keeps running before it is shut down (in
/// the safety phase): meanwhile it may not know it was removed and stand
/// for election in its old configuration.
const RETIRE_DELAY_MAX_US: u64 = 1_000_000;

/// A property the simulator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// At most one leader per term, over the whole run.
    ElectionSafety,
    /// A leader never overwrites or deletes entries in its log.
    LeaderAppendOnly,
    /// Two logs with an entry of the same index and term agree up to it.
    LogMatching,
    /// An entry committed in a term is in the log of every leader of a
    /// later term.
    LeaderCompleteness,
    /// No two nodes deliver different commands at the same index.
    StateMachineSafety,
    /// A read (ReadIndex) is served at an index that covers every entry
    /// committed anywhere before the read was issued, by a node that has
    /// delivered every command up to that index.
    LinearizableReads,
    /// Figure 2's persistent state: after every step, the node's store
    /// (built from its `Persist` outputs, in order) holds the current term,
    /// the vote, the membership and the log that the node holds in memory;
    /// and it can be recovered from.
    PersistedState,
    /// Figure 2, "updated on stable storage before responding to RPCs": a
    /// vote request, a vote or an acknowledgement is backed by what was
    /// persisted before it in the output list (and in earlier steps), and
    /// no `Persist` follows a `Send` in one output list.
    PersistBeforeSend,
    /// §5.1, "if a server receives a request with a stale term number, it
    /// rejects the request", and answers of an older term are ignored: a
    /// RequestVote, AppendEntries or LeadershipCheck, or an answer to one,
    /// whose term is below the receiver's changes nothing and is granted or
    /// acknowledged nothing.
    StaleTermRejected,
    /// Figure 2, AppendEntries "success": an acknowledgement of term T up to
    /// index i says the sender's log matches the log of T's leader up to i.
    AckMatchesLeader,
    /// Figure 2, AppendEntries results: a success answer acknowledges at
    /// most what the append it answers covered (its previous index plus its
    /// entries), whatever else the follower's log holds.
    AckOnlyMatched,
    /// Figure 2, AppendEntries receiver rule 2: an append is acknowledged
    /// only if the follower held an entry at prevLogIndex of term
    /// prevLogTerm.
    ConsistencyCheck,
    /// Figure 2, AppendEntries receiver rules 3 and 4: an append that is
    /// acknowledged deletes an existing entry only where it conflicts with a
    /// new one (same index, other term), with all that follow it, and
    /// appends the new entries not already held; nothing else changes.
    AppendMergesLog,
    /// Figure 2, AppendEntries receiver rule 5: an append raises the
    /// follower's commit index to at most min(leaderCommit, index of the
    /// last new entry).
    FollowerCommitBound,
    /// §5.4.2, "only log entries from the leader's current term are
    /// committed by counting replicas": a leader raises its commit index
    /// only to an entry of its own term (earlier ones commit with it).
    CommitCurrentTermOnly,
    /// §5.3, "committed once the leader ... has replicated it on a
    /// majority": every entry of the committed prefix is stored on a
    /// majority of the disks of the voters of the membership the node that
    /// committed it used (the latest in its log, thesis §4.1), from when it
    /// is committed on.
    CommitOnMajority,
    /// §5.3, "apply committed entries": a node delivers only entries of its
    /// log that it and the cluster know committed.
    DeliverCommittedOnly,
    /// The delivery contract: in one lifetime a node delivers the commands
    /// of its log in log order, each once, skipping none.
    DeliverOnceInOrder,
    /// Thesis §9.6: a pre-vote changes no term and no vote, neither the
    /// pre-candidate's (when it starts one) nor its voters' (when they
    /// answer one).
    PreVoteChangesNothing,
    /// The rest of the step contract between the core and its driver: a
    /// dropped input changes nothing, each read is answered once, an
    /// accepted proposal ends where it was said to be.
    Contract,
    /// After faults stop, one leader that every live node follows: all in
    /// its term, all naming it, and it alone in the leader role.
    LeaderAgreement,
    /// After faults stop, the cluster converges: one log everywhere, all of
    /// it committed and delivered, every client proposal among it.
    Liveness,
    /// The core (or the simulator) panicked. Reported so that a run does
    /// not abort, but it is no property: a mutation that only makes the
    /// core panic is not caught by the simulator.
    Panic,
}

/// A property that failed, and where.
#[derive(Debug)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// The number of steps taken when it was seen.
    pub step: u64,
    /// The virtual time, in microseconds.
    pub time_us: u64,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} violated at step {} (t={}us): {}", self.property, self.step, self.time_us, self.detail)
    }
}

/// What one run is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster size.
    pub nodes: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// How long the faulty safety phase lasts, in virtual microseconds.
    pub safety_us: u64,
    /// The most steps the liveness phase may take to converge.
    pub liveness_steps_max: u64,
    /// How many proposals clients make in the liveness phase.
    pub liveness_proposals: usize,
    /// A rule every node breaks on purpose, to show the checks catch it.
    pub fault: Option<Fault>,
    /// Print every step (for replaying one seed).
    pub trace: bool,
    /// Random faults in the safety phase (losses, delays, crashes,
    /// partitions, transfers). Off for scenario tests, which make their own.
    pub chaos: bool,
    /// Pre-vote on or off for every node; `None` draws it from the seed.
    pub pre_vote: Option<bool>,
    /// Check-quorum on or off for every node; `None` draws it from the seed.
    pub check_quorum: Option<bool>,
    /// Snapshots taken by the applications, with this many trailing
    /// entries kept; `None` draws it from the seed (off in half the runs,
    /// and in runs without chaos).
    pub snapshots: Option<Option<u64>>,
    /// With chaos, an operator changes the membership now and then, with
    /// joiners started empty beside the voters, up to [`MACHINES_MAX`].
    pub membership_changes: bool,
}

impl Options {
    /// The defaults for a cluster of `nodes` and one seed.
    pub fn new(nodes: u64, seed: u64) -> Options {
        Options {
            nodes,
            seed,
            safety_us: 5_000_000,
            liveness_steps_max: 20_000,
            liveness_proposals: 5,
            fault: None,
            trace: false,
            chaos: true,
            pre_vote: None,
            check_quorum: None,
            snapshots: None,
            membership_changes: true,
        }
    }
}

/// What a run did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Steps taken in all.
    pub steps: u64,
    /// Steps taken in the liveness phase.
    pub liveness_steps: u64,
    /// Terms that had a leader.
    pub leader_terms: usize,
    /// Crashes injected.
    pub crashes: u64,
    /// Commands committed (the highest index delivered anywhere).
    pub committed_index: u64,
    /// Proposals accepted by a leader.
    pub accepted: u64,
    /// Reads served (ReadReady).
    pub reads_served: u64,
    /// Deliveries held back by a full window and made when the
    /// application reported progress (`Input::Applied`).
    pub deliveries_after_applied: u64,
    /// `Output::FollowerRegressed` seen (no disk is ever wiped here: each is
    /// a duplicated or late rejection).
    pub regressions_reported: u64,
    /// Partial partitions made: one link cut, one way or both.
    pub partial_partitions: u64,
    /// Leadership transfers asked of a leader.
    pub transfers: u64,
    /// Snapshots the applications took (and the core recorded).
    pub snapshots_taken: u64,
    /// Snapshots a follower installed from its leader.
    pub snapshots_installed: u64,
    /// Restarts that began by restoring a snapshot.
    pub recoveries_from_snapshot: u64,
    /// TimeoutNow messages sent (transfers that reached their target's turn).
    pub timeouts_now: u64,
    /// Background writes asked for (`Output::PersistAsync`).
    pub background_writes: u64,
    /// Background writes reported after a later persist had flushed them
    /// (the core must not count anything new for them).
    pub late_write_reports: u64,
    /// Background writes lost in a crash before they were durable.
    pub writes_lost: u64,
    /// Membership changes the operator asked for.
    pub changes_asked: u64,
    /// Membership changes a leader accepted (appended).
    pub changes_accepted: u64,
    /// Configuration entries committed (in the cluster's committed prefix).
    pub changes_committed: u64,
    /// Membership changes refused, by reason.
    pub changes_rejected: BTreeMap<&'static str, u64>,
    /// Committed changes that added a learner.
    pub learners_added: u64,
    /// Committed changes that made a learner a voter.
    pub learners_promoted: u64,
    /// Committed changes that removed a voter.
    pub voters_removed: u64,
    /// Committed changes that removed a learner.
    pub learners_removed: u64,
    /// Leaders that stepped down once their own removal committed.
    pub leaders_removed_themselves: u64,
    /// Machines started empty to join (at the start, and wiped ones back
    /// under a new id).
    pub joiners_started: u64,
}

/// A node took or left the leader role: the history scenario tests read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeadershipChange {
    /// The virtual time, in microseconds.
    pub time_us: u64,
    /// The node (0-based).
    pub node: usize,
    /// The term it leads, or led.
    pub term: Term,
    /// It became leader (true) or stopped leading: stepped down or crashed.
    pub leads: bool,
}

/// The faults in force; all zero in the liveness phase.
#[derive(Clone, Copy, Debug)]
struct Faults {
    loss: f64,
    duplicate: f64,
    delay_max_us: u64,
    /// Mean time between two chaos events (a crash or a partition).
    chaos_every_us: u64,
    /// Chance that a crash strikes in the middle of an output list.
    mid_step_crash: f64,
    /// Chance that a message is held back for up to `STRAGGLER_DELAY_MAX_US`,
    /// longer than an election takes, as in a queue behind a broken link:
    /// then answers of an older term reach a node that has since been
    /// elected again, and §5.1's rule to ignore them is put to the test.
    straggler: f64,
}

impl Faults {
    const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        delay_max_us: 5_000,
        chaos_every_us: 0,
        mid_step_crash: 0.0,
        straggler: 0.0,
    };

    /// Fault rates for one seed, from mild to harsh, so that the seeds
    /// together cover many mixes.
    fn draw(rng: &mut ChaCha8Rng) -> Faults {
        Faults {
            loss: [0.0, 0.02, 0.1, 0.25][rng.random_range(0..4usize)],
            duplicate: [0.0, 0.05, 0.2][rng.random_range(0..3usize)],
            delay_max_us: [2_000, 20_000, 120_000][rng.random_range(0..3usize)],
            chaos_every_us: [40_000, 150_000, 500_000][rng.random_range(0..3usize)],
            mid_step_crash: [0.0, 0.002, 0.01][rng.random_range(0..3usize)],
            straggler: [0.0, 0.01, 0.05][rng.random_range(0..3usize)],
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    Arrive {
        from: NodeId,
        to: NodeId,
        message: Message,
    },
    Timer {
        node: usize,
        timer: Timer,
        generation: u64,
    },
    Chaos,
    Restart {
        node: usize,
    },
    Heal,
    Propose {
        node: usize,
    },
    Retry {
        data: Vec<u8>,
    },
    /// The application of `node`, in its lifetime `lifetime`, reports what
    /// it has applied.
    Applied {
        node: usize,
        lifetime: u64,
    },
    /// The oldest background write of `node`, in its lifetime `lifetime`,
    /// is durable: its completion is reported.
    Written {
        node: usize,
        lifetime: u64,
    },
    /// The operator asks a leader for a membership change: `node`, if it
    /// still leads, or the newest leader; then, if `again`, schedules its
    /// next one.
    Operator {
        node: Option<usize>,
        again: bool,
    },
    /// A leader that took a change is crashed or cut off, if it still leads.
    Depose {
        node: usize,
    },
    /// A machine whose removal committed is shut down for good.
    Retire {
        node: usize,
    },
}

/// A background write (`Output::PersistAsync`) the disk has not reported:
/// on the disk already if a later `Persist` flushed it, and lost in a
/// crash if not.
struct Write {
    persist: Persist,
    on_disk: bool,
    report: Input,
}

/// One simulated machine: the core's state while it is up, its disk
/// always.
struct Machine {
    config: Config,
    /// The membership it starts with when its disk is empty: the cluster's
    /// for the first voters, `Membership::joining` for a joiner.
    initial: Membership,
    /// Removed, and shut down for good (or about to be: `retiring`).
    retired: bool,
    retiring: bool,
    state: Option<State>,
    disk: MemoryStore,
    /// How many times the node has started: an application's report of a
    /// lifetime that ended is lost with it.
    lifetime: u64,
    /// The armed timers: kind -> generation of the live deadline.
    timers: BTreeMap<Timer, u64>,
    /// Commands delivered in this lifetime, in order.
    applied: Vec<(u64, Term, Vec<u8>)>,
    /// Background writes not yet reported, oldest first.
    writes: VecDeque<Write>,
    /// Leader Completeness bookkeeping: the term this node leads and how
    /// many committed entries have been found in its log.
    verified: (Term, usize),
}

impl Machine {
    fn new(config: Config, initial: Membership) -> Machine {
        Machine {
            config,
            initial,
            retired: false,
            retiring: false,
            state: None,
            disk: MemoryStore::new(),
            lifetime: 0,
            timers: BTreeMap::new(),
            applied: Vec::new(),
            writes: VecDeque::new(),
            verified: (Term(0), 0),
        }
    }
}

/// The id of the machine at `node` (0-based).
fn node_id(node: usize) -> NodeId {
    NodeId(node as u64 + 1)
}

/// Why a change was refused, as the report counts it.
fn rejection_name(reason: &ChangeRejection) -> &'static str {
    match reason {
        ChangeRejection::NotLeader { .. } => "not-leader",
        ChangeRejection::LeaderNotReady => "leader-not-ready",
        ChangeRejection::ChangeInProgress { .. } => "change-in-progress",
        ChangeRejection::Transferring { .. } => "transferring",
        ChangeRejection::AlreadyMember => "already-member",
        ChangeRejection::NotLearner => "not-learner",
        ChangeRejection::NotMember => "not-member",
        ChangeRejection::LastVoter => "last-voter",
    }
}

/// `template`'s parameters, for node `id`.
fn config_like(template: &Config, id: NodeId) -> Config {
    let (min, max) = template.election_timeout();
    let mut config = Config::new(id)
        .with_timing(min, max, template.heartbeat_interval())
        .and_then(|c| c.with_entries_per_append_max(template.entries_per_append_max()))
        .and_then(|c| c.with_inflight_entries_max(template.inflight_entries_max()))
        .and_then(|c| c.with_unapplied_entries_max(template.unapplied_entries_max()))
        .and_then(|c| c.with_unapplied_bytes_max(template.unapplied_bytes_max()))
        .expect("valid")
        .with_pre_vote(template.pre_vote())
        .with_check_quorum(template.check_quorum())
        .with_trailing_entries(template.trailing_entries());
    if let Some(fault) = template.fault() {
        config = config.with_fault(fault);
    }
    config
}

/// The simulator: the machines, the network, the clients, and the record
/// of history that the properties are checked against.
pub struct Sim {
    options: Options,
    rng: ChaCha8Rng,
    now_us: u64,
    sequence: u64,
    events: BTreeMap<(u64, u64), Event>,
    machines: Vec<Machine>,
    faults: Faults,
    liveness: bool,
    /// The directed links cut, as (from, to): a message on one is lost
    /// when it arrives. Empty when healed.
    blocked: BTreeSet<(usize, usize)>,
    /// The safety phase has begun (the nodes are started).
    begun: bool,
    /// Who led when.
    leadership: Vec<LeadershipChange>,
    /// How each proposal was answered at the node it was made at.
    answers: BTreeMap<ProposalId, Result<(Term, LogIndex), Rejection>>,
    timer_generation: u64,
    outcome: Outcome,
    // History, for the properties.
    leaders: BTreeMap<Term, NodeId>,
    /// Every (index, term) seen in any log: the term before it and the entry.
    entries_seen: BTreeMap<(u64, Term), (Term, Entry)>,
    /// The committed prefix, and for each index the lowest term of any
    /// node that knew it committed (non-decreasing along the log) and the
    /// membership the node that first knew it committed counted with.
    committed: Vec<(Entry, Term, Membership)>,
    /// The membership of the committed prefix (its latest configuration
    /// entry, or the initial one).
    committed_membership: Membership,
    /// The operator's changes, by id.
    changes: BTreeMap<ProposalId, Change>,
    /// How each change was answered: accepted at an index, or refused.
    change_answers: BTreeMap<ProposalId, Result<LogIndex, ChangeRejection>>,
    /// Commands delivered anywhere, by index.
    delivered: BTreeMap<u64, (Term, Vec<u8>)>,
    delivered_data: BTreeSet<Vec<u8>>,
    /// How much of the committed prefix has been found on a majority of
    /// disks (CommitOnMajority): every index after it is checked when it
    /// becomes committed, and again whenever a disk changes at or before it.
    on_majority: usize,
    // Clients.
    next_proposal: u64,
    proposals: BTreeMap<ProposalId, Vec<u8>>,
    accepted: Vec<(Vec<u8>, Term, LogIndex)>,
    liveness_data: Vec<Vec<u8>>,
    /// Reads issued and not yet answered: the committed prefix's length
    /// when each was issued.
    reads: BTreeMap<ReadId, u64>,
    next_read: u64,
    // Snapshots.
    /// The trailing entries kept when snapshots are on.
    snapshots: Option<u64>,
    /// Draws the snapshot choices, apart from the main generator, so that
    /// a run without snapshots draws exactly what it drew before them.
    snapshot_rng: ChaCha8Rng,
    /// The data of every snapshot taken, by (index, term): the entries it
    /// covers. Log Matching makes the name unique.
    snapshot_data: BTreeMap<(LogIndex, Term), Vec<Entry>>,
}

type Checked = Result<(), Violation>;

impl Sim {
    /// A cluster of `options.nodes` fresh nodes.
    pub fn new(options: Options) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let drawn = Faults::draw(&mut rng);
        let faults = if options.chaos { drawn } else { Faults::NONE };
        // Small batches and windows split what a leader sends into many
        // messages, which makes more interleavings reachable (Figure 8's
        // needs an earlier-term entry to travel without the leader's no-op).
        let entries_per_append = [1, 2, 64][rng.random_range(0..3usize)];
        let inflight = [1, 4, 4096][rng.random_range(0..3usize)];
        // Small delivery windows hand a backlog (a restarted node's whole
        // committed log) to the application in many pieces, each after the
        // application reported the previous one applied.
        let unapplied_entries = UNAPPLIED_ENTRIES_CHOICES[rng.random_range(0..UNAPPLIED_ENTRIES_CHOICES.len())];
        let unapplied_bytes = UNAPPLIED_BYTES_CHOICES[rng.random_range(0..UNAPPLIED_BYTES_CHOICES.len())];
        // Pre-vote and check-quorum (raft-core's defaults) on or off, each
        // in half the runs: with them some §5 rules hide behind them (a
        // pre-vote checks the log too), so both ways are checked.
        let pre_vote = rng.random_bool(0.5);
        let check_quorum = rng.random_bool(0.5);
        let pre_vote = options.pre_vote.unwrap_or(pre_vote);
        let check_quorum = options.check_quorum.unwrap_or(check_quorum);
        let mut snapshot_rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x5eed_5a95);
        let drawn = snapshot_rng.random_bool(0.5).then(|| [0, 1, 4, 16][snapshot_rng.random_range(0..4usize)]);
        let snapshots = options.snapshots.unwrap_or(if options.chaos { drawn } else { None });
        let ids: Vec<NodeId> = (1..=options.nodes).map(NodeId).collect();
        let membership = Membership::new(ids.clone()).expect("valid");
        let mut template = Config::new(NodeId(1))
            .with_pre_vote(pre_vote)
            .with_check_quorum(check_quorum)
            .with_entries_per_append_max(entries_per_append)
            .and_then(|c| c.with_inflight_entries_max(inflight))
            .and_then(|c| c.with_unapplied_entries_max(unapplied_entries))
            .and_then(|c| c.with_unapplied_bytes_max(unapplied_bytes))
            .expect("valid")
            .with_trailing_entries(snapshots.unwrap_or(0));
        if let Some(fault) = options.fault {
            template = template.with_fault(fault);
        }
        let mut machines: Vec<Machine> =
            ids.iter().map(|&id| Machine::new(config_like(&template, id), membership.clone())).collect();
        // Joiners, started empty, for the operator to add.
        let changes = options.chaos && options.membership_changes;
        while changes && machines.len() < MACHINES_MAX.max(options.nodes as usize) {
            let id = NodeId(machines.len() as u64 + 1);
            machines.push(Machine::new(config_like(&template, id), Membership::joining(id)));
        }
        Sim {
            options,
            committed_membership: membership,
            changes: BTreeMap::new(),
            change_answers: BTreeMap::new(),
            rng,
            now_us: 0,
            sequence: 0,
            events: BTreeMap::new(),
            machines,
            faults,
            liveness: false,
            blocked: BTreeSet::new(),
            begun: false,
            leadership: Vec::new(),
            answers: BTreeMap::new(),
            timer_generation: 0,
            outcome: Outcome::default(),
            leaders: BTreeMap::new(),
            entries_seen: BTreeMap::new(),
            committed: Vec::new(),
            delivered: BTreeMap::new(),
            delivered_data: BTreeSet::new(),
            on_majority: 0,
            next_proposal: 1,
            proposals: BTreeMap::new(),
            accepted: Vec::new(),
            liveness_data: Vec::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            snapshots,
            snapshot_rng,
            snapshot_data: BTreeMap::new(),
        }
    }

    /// Runs both phases; the first violation ends the run. A panic, in the
    /// core or in the simulator, ends it as a [`Property::Panic`].
    pub fn run(mut self) -> Result<Outcome, Violation> {
        match catch_panic(|| self.run_phases()) {
            Ok(result) => result,
            Err(message) => Err(self.violation(Property::Panic, format!("the simulator panicked: {message}"))),
        }
    }

    fn run_phases(&mut self) -> Result<Outcome, Violation> {
        self.advance_to(self.options.safety_us)?;
        self.converge()
    }

    /// Starts every node and schedules the first client proposal (and,
    /// with chaos, the first fault), once.
    fn begin(&mut self) -> Checked {
        if self.begun {
            return Ok(());
        }
        self.begun = true;
        if self.options.trace {
            let c = &self.machines[0].config;
            println!(
                "seed {}: faults {:?}, entries per append {}, in flight {}, unapplied {} entries / {} bytes, pre-vote {}, check-quorum {}, snapshots {:?}",
                self.options.seed,
                self.faults,
                c.entries_per_append_max(),
                c.inflight_entries_max(),
                c.unapplied_entries_max(),
                c.unapplied_bytes_max(),
                c.pre_vote(),
                c.check_quorum(),
                self.snapshots
            );
        }
        for node in 0..self.machines.len() {
            self.start(node)?;
        }
        self.outcome.joiners_started = (self.machines.len() as u64).saturating_sub(self.options.nodes);
        if self.options.chaos {
            let chaos = self.chaos_delay();
            self.schedule(chaos, Event::Chaos);
        }
        if self.changes_on() {
            let delay = self.rng.random_range(1..=2 * OPERATOR_EVERY_US);
            self.schedule(delay, Event::Operator { node: None, again: true });
        }
        let first_proposal = self.rng.random_range(1_000..50_000);
        self.schedule(first_proposal, Event::Propose { node: 0 });
        Ok(())
    }

    /// Handles every event due up to `time_us`, then sets the clock there.
    fn advance_to(&mut self, time_us: u64) -> Checked {
        self.begin()?;
        while self.events.first_key_value().is_some_and(|(&(time, _), _)| time <= time_us) {
            let ((time, _), event) = self.events.pop_first().expect("an event is due");
            self.now_us = time;
            self.handle(event)?;
        }
        self.now_us = self.now_us.max(time_us);
        Ok(())
    }

    /// The liveness phase: every fault ends, and the cluster must converge
    /// within `liveness_steps_max` steps.
    fn converge(&mut self) -> Result<Outcome, Violation> {
        self.start_liveness()?;
        let start = self.outcome.steps;
        while let Some(((time, _), event)) = self.events.pop_first() {
            self.now_us = time;
            self.handle(event)?;
            self.outcome.liveness_steps = self.outcome.steps - start;
            if self.outcome.liveness_steps.is_multiple_of(16) && self.converged() {
                self.outcome.leader_terms = self.leaders.len();
                self.outcome.committed_index = self.delivered.keys().next_back().copied().unwrap_or(0);
                self.check_final()?;
                return Ok(self.outcome.clone());
            }
            if self.outcome.liveness_steps > self.options.liveness_steps_max {
                break;
            }
        }
        Err(self.liveness_failure())
    }

    /// Scenario tests: runs the safety phase (with whatever faults the
    /// options and the test made) for `duration_us` more of virtual time.
    pub fn run_for(&mut self, duration_us: u64) -> Checked {
        let until = self.now_us + duration_us;
        self.guarded(|sim| sim.advance_to(until))
    }

    /// Scenario tests: ends the run with the liveness phase.
    pub fn finish(mut self) -> Result<Outcome, Violation> {
        self.guarded(|sim| sim.converge())
    }

    /// Scenario tests: feeds `input` to `node` (0-based) now.
    pub fn input(&mut self, node: usize, input: Input) -> Checked {
        self.guarded(|sim| {
            sim.begin()?;
            sim.step(node, input)
        })
    }

    /// Scenario tests: a client proposes `data` at `node` now. The answer,
    /// when it comes, is in [`Sim::answer`].
    pub fn propose(&mut self, node: usize, data: &[u8]) -> Result<ProposalId, Violation> {
        let proposal = self.new_proposal(Some(data.to_vec()));
        let id = proposal.id;
        self.input(node, Input::Propose(vec![proposal]))?;
        Ok(id)
    }

    /// Scenario tests: an operator asks `node` for a membership change now.
    /// The answer, when it comes, is in [`Sim::change_answer`].
    pub fn change(&mut self, node: usize, change: Change) -> Result<ProposalId, Violation> {
        let id = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        self.changes.insert(id, change.clone());
        self.input(node, Input::ChangeMembership { id, change })?;
        Ok(id)
    }

    /// How change `id` was answered so far: accepted at an index, or refused.
    pub fn change_answer(&self, id: ProposalId) -> Option<Result<LogIndex, ChangeRejection>> {
        self.change_answers.get(&id).copied()
    }

    /// How proposal `id` was answered so far: accepted at (term, index), or
    /// refused and why.
    pub fn answer(&self, id: ProposalId) -> Option<Result<(Term, LogIndex), Rejection>> {
        self.answers.get(&id).copied()
    }

    /// Scenario tests: cuts `node` off from every other node, both ways.
    pub fn isolate(&mut self, node: usize) {
        self.partition(&[node]);
    }

    /// Scenario tests: cuts every link between `side` and the other nodes,
    /// both ways.
    pub fn partition(&mut self, side: &[usize]) {
        for &a in side {
            for b in (0..self.machines.len()).filter(|b| !side.contains(b)) {
                self.cut(a, b);
                self.cut(b, a);
            }
        }
    }

    /// Scenario tests: cuts the link from `from` to `to` (one way).
    pub fn cut(&mut self, from: usize, to: usize) {
        if self.options.trace {
            println!("{:>9}us cut n{} -> n{}", self.now_us, from + 1, to + 1);
        }
        self.blocked.insert((from, to));
    }

    /// Scenario tests: heals every cut link.
    pub fn heal(&mut self) {
        if self.options.trace {
            println!("{:>9}us heal", self.now_us);
        }
        self.blocked.clear();
    }

    /// The virtual time, in microseconds.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The state of `node` (0-based), if it is up.
    pub fn state(&self, node: usize) -> Option<&State> {
        self.machines[node].state.as_ref()
    }

    /// Node 0's configuration (every node's, but for its id).
    pub fn config(&self) -> &Config {
        &self.machines[0].config
    }

    /// The one leader that every live node follows, and its term, if any.
    pub fn agreed_leader(&self) -> Option<(usize, Term)> {
        let (node, leader) = self.leader_agreement().ok()?;
        Some((node, leader.term()))
    }

    /// Every change of who leads, in order.
    pub fn leadership(&self) -> &[LeadershipChange] {
        &self.leadership
    }

    /// Runs `f`, turning a panic into a [`Property::Panic`] violation.
    fn guarded<T>(&mut self, f: impl FnOnce(&mut Sim) -> Result<T, Violation>) -> Result<T, Violation> {
        match catch_panic(|| f(self)) {
            Ok(result) => result,
            Err(message) => Err(self.violation(Property::Panic, format!("the simulator panicked: {message}"))),
        }
    }

    /// Why the liveness phase did not converge in time. The leader comes
    /// first: a cluster that does not agree on one cannot converge.
    fn liveness_failure(&self) -> Violation {
        let within = format!("within {} steps without faults", self.options.liveness_steps_max);
        if let Err(why) = self.leader_agreement() {
            return self.violation(
                Property::LeaderAgreement,
                format!("no leader that every live node follows {within}: {why}"),
            );
        }
        let pending: Vec<&Vec<u8>> = self.liveness_data.iter().filter(|d| !self.delivered_data.contains(*d)).collect();
        let status: Vec<String> = self.machines.iter().map(|m| format!("{:?}", m.state)).collect();
        let detail = format!("no convergence {within}; proposals pending {pending:?}; nodes {status:#?}");
        self.violation(Property::Liveness, detail)
    }

    fn violation(&self, property: Property, detail: String) -> Violation {
        Violation { property, step: self.outcome.steps, time_us: self.now_us, detail }
    }

    fn schedule(&mut self, delay_us: u64, event: Event) {
        self.sequence += 1;
        self.events.insert((self.now_us + delay_us, self.sequence), event);
    }

    /// Whether the operator changes the membership in this run.
    fn changes_on(&self) -> bool {
        self.options.chaos && self.options.membership_changes
    }

    /// The machines not shut down for good, in order.
    fn in_service(&self) -> Vec<usize> {
        (0..self.machines.len()).filter(|&n| !self.machines[n].retired).collect()
    }

    /// A machine in service, at random.
    fn random_in_service(&mut self) -> usize {
        let nodes = self.in_service();
        nodes[self.rng.random_range(0..nodes.len())]
    }

    /// The latest machine in the leader role that is up, if any.
    fn latest_leader(&self) -> Option<usize> {
        self.machines.iter().rposition(|m| m.state.as_ref().is_some_and(State::is_leader))
    }

    /// The machine up in the leader role of the highest term, if any: the
    /// one an operator reaches (an older one may lead on, cut off).
    fn newest_leader(&self) -> Option<usize> {
        let leaders = (0..self.machines.len()).filter_map(|n| Some((n, self.machines[n].state.as_ref()?)));
        leaders.filter(|(_, s)| s.is_leader()).max_by_key(|(_, s)| s.term()).map(|(n, _)| n)
    }

    fn chaos_delay(&mut self) -> u64 {
        self.rng.random_range(1..=2 * self.faults.chaos_every_us.max(1))
    }

    /// Ends every fault: heals the network, restarts every node, and has
    /// clients propose the phase's commands.
    fn start_liveness(&mut self) -> Checked {
        self.liveness = true;
        self.faults = Faults::NONE;
        self.blocked.clear();
        for node in 0..self.machines.len() {
            if self.machines[node].retiring {
                self.retire(node);
            }
        }
        for node in self.in_service() {
            if self.machines[node].state.is_none() {
                self.start(node)?;
            }
        }
        for k in 0..self.options.liveness_proposals {
            let data = format!("live-{k}").into_bytes();
            self.liveness_data.push(data.clone());
            let delay = self.rng.random_range(1_000..500_000);
            self.schedule(delay, Event::Retry { data });
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Checked {
        match event {
            Event::Arrive { from, to, message } => {
                let node = (to.0 - 1) as usize;
                let from_index = (from.0 - 1) as usize;
                if self.blocked.contains(&(from_index, node)) {
                    return Ok(());
                }
                self.step(node, Input::Receive { from, message })
            }
            Event::Timer { node, timer, generation } => {
                if self.machines[node].timers.get(&timer) != Some(&generation) {
                    return Ok(()); // re-armed or cancelled since
                }
                self.machines[node].timers.remove(&timer);
                self.step(node, Input::Timeout(timer))
            }
            Event::Chaos => {
                if !self.liveness {
                    self.chaos()?;
                    let delay = self.chaos_delay();
                    self.schedule(delay, Event::Chaos);
                }
                Ok(())
            }
            Event::Restart { node } => {
                if self.machines[node].state.is_none() && !self.liveness && !self.machines[node].retired {
                    self.start(node)?;
                }
                Ok(())
            }
            Event::Heal => {
                if !self.liveness {
                    self.blocked.clear();
                }
                Ok(())
            }
            Event::Propose { node } => {
                if self.liveness {
                    return Ok(());
                }
                let count = self.rng.random_range(1..=3);
                let proposals = (0..count).map(|_| self.new_proposal(None)).collect();
                self.step(node, Input::Propose(proposals))?;
                if self.rng.random_bool(0.5) {
                    let reader = self.random_in_service();
                    let id = ReadId(self.next_read);
                    self.next_read += 1;
                    self.reads.insert(id, self.committed.len() as u64);
                    self.step(reader, Input::Read(vec![id]))?;
                }
                let next = self.random_in_service();
                let delay = self.rng.random_range(5_000..80_000);
                self.schedule(delay, Event::Propose { node: next });
                Ok(())
            }
            Event::Applied { node, lifetime } => self.report_applied(node, lifetime),
            Event::Written { node, lifetime } => self.report_written(node, lifetime),
            Event::Operator { node, again } => {
                if self.liveness {
                    return Ok(());
                }
                let leads = |n: &usize| self.machines[*n].state.as_ref().is_some_and(State::is_leader);
                if let Some(leader) = node.filter(leads).or_else(|| self.newest_leader()) {
                    self.operate(leader)?;
                }
                if again {
                    let delay = self.rng.random_range(1..=2 * OPERATOR_EVERY_US);
                    self.schedule(delay, Event::Operator { node: None, again: true });
                }
                Ok(())
            }
            Event::Depose { node } => {
                let leads = self.machines[node].state.as_ref().is_some_and(State::is_leader);
                if leads && !self.liveness {
                    if self.rng.random_bool(0.5) {
                        self.crash(node);
                        let downtime = self.rng.random_range(10_000..1_000_000);
                        self.schedule(downtime, Event::Restart { node });
                    } else {
                        // Cut off alone, or with one other machine (one that
                        // took the change, perhaps, and may vote for it).
                        let mut side = vec![node];
                        if self.rng.random_bool(0.5) {
                            let other = self.random_in_service();
                            if other != node {
                                side.push(other);
                            }
                        }
                        self.partition(&side);
                        let duration = self.rng.random_range(50_000..1_500_000);
                        self.schedule(duration, Event::Heal);
                    }
                }
                Ok(())
            }
            Event::Retire { node } => {
                if self.machines[node].retiring {
                    self.retire(node);
                }
                Ok(())
            }
            Event::Retry { data } => {
                // A liveness-phase client: proposes its command at a random
                // node, and again after a client timeout until it is
                // delivered somewhere (a lost or refused proposal is retried).
                if self.delivered_data.contains(&data) {
                    return Ok(());
                }
                let node = self.random_in_service();
                let proposal = self.new_proposal(Some(data.clone()));
                self.step(node, Input::Propose(vec![proposal]))?;
                self.schedule(CLIENT_RETRY_US, Event::Retry { data });
                Ok(())
            }
        }
    }

    fn new_proposal(&mut self, data: Option<Vec<u8>>) -> Proposal {
        let id = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        let data = data.unwrap_or_else(|| format!("p{}", id.0).into_bytes());
        self.proposals.insert(id, data.clone());
        Proposal { id, data }
    }

    /// A crash (and a later restart), a partition (and a later heal), or
    /// an operator's leadership transfer.
    fn chaos(&mut self) -> Checked {
        let roll = self.rng.random_range(0..20);
        if roll < 9 {
            // Leaders are the most interesting nodes to lose: half of the
            // crashes strike the latest leader that is up, if any.
            let leader = self.latest_leader();
            let node = match leader {
                Some(leader) if self.rng.random_bool(0.5) => leader,
                _ => self.random_in_service(),
            };
            if self.machines[node].state.is_some() {
                self.crash(node);
                let downtime = self.rng.random_range(10_000..1_000_000);
                self.schedule(downtime, Event::Restart { node });
            }
        } else if roll < 18 {
            if self.blocked.is_empty() {
                self.random_partition();
                let duration = self.rng.random_range(50_000..1_500_000);
                self.schedule(duration, Event::Heal);
            }
        } else {
            // Thesis §3.10: the latest leader is asked to hand its leadership
            // to any node, itself included (which it refuses).
            if let Some(leader) = self.latest_leader() {
                let target = NodeId(self.random_in_service() as u64 + 1);
                self.outcome.transfers += 1;
                self.step(leader, Input::TransferLeadership(target))?;
            }
        }
        Ok(())
    }

    /// The operator asks `leader` for one membership
    /// change, drawn among those that keep 3 to 5 voters by that leader's
    /// membership: add an idle machine as a learner (a new one, started
    /// empty, if there is room), promote a learner, remove a voter (the
    /// leader itself included) or a learner. The leader refuses it if it is
    /// not ready, or a change is under way.
    fn operate(&mut self, leader: usize) -> Checked {
        let m = self.machines[leader].state.as_ref().expect("up").membership().clone();
        let voters: Vec<NodeId> = m.voters().iter().copied().collect();
        let learners: Vec<NodeId> = m.learners().iter().copied().collect();
        let idle = self.in_service().into_iter().find(|&n| !self.machines[n].retiring && !m.contains(node_id(n)));
        let room = self.in_service().len() < MACHINES_MAX && self.machines.len() < MACHINES_EVER_MAX;
        let mut choices: Vec<Change> = Vec::new();
        if idle.is_some() || room {
            choices.push(Change::AddLearner { id: NodeId(0), address: String::new() });
        }
        if voters.len() < VOTERS_MAX {
            choices.extend(learners.iter().map(|&l| Change::Promote(l)));
        }
        if voters.len() > VOTERS_MIN {
            choices.extend(voters.iter().map(|&v| Change::Remove(v)));
        }
        choices.extend(learners.iter().map(|&l| Change::Remove(l)));
        if choices.is_empty() {
            return Ok(());
        }
        let mut change = choices.swap_remove(self.rng.random_range(0..choices.len()));
        if let Change::AddLearner { id, address } = &mut change {
            let node = match idle {
                Some(node) => node,
                None => self.start_joiner()?,
            };
            *id = node_id(node);
            *address = format!("n{}", node + 1);
        }
        self.outcome.changes_asked += 1;
        let id = ProposalId(self.next_proposal);
        self.next_proposal += 1;
        self.changes.insert(id, change.clone());
        self.step(leader, Input::ChangeMembership { id, change })
    }

    /// A new machine, with a new id, started empty to join the cluster (a
    /// removed one, wiped, under a new identity).
    fn start_joiner(&mut self) -> Result<usize, Violation> {
        let node = self.machines.len();
        let id = node_id(node);
        let config = config_like(&self.machines[0].config, id);
        self.machines.push(Machine::new(config, Membership::joining(id)));
        self.outcome.joiners_started += 1;
        self.start(node)?;
        Ok(node)
    }

    /// Half the time a minority (sometimes a lone node, sometimes two) is
    /// cut off; the other half, a partial partition: one link is cut, both
    /// ways or one way only, so that some nodes hear others that they
    /// cannot answer, or that cannot hear one another but share a
    /// neighbour. The leader is as likely as anyone to be on the cut side,
    /// or at an end of the cut link.
    fn random_partition(&mut self) {
        let nodes = self.in_service();
        let n = nodes.len();
        let leader = nodes.iter().position(|&k| self.machines[k].state.as_ref().is_some_and(State::is_leader));
        let leader = leader.filter(|_| self.rng.random_bool(0.5));
        match self.rng.random_range(0..4) {
            0 | 1 => {
                let size = self.rng.random_range(1..=(n - 1) / 2);
                let mut side: BTreeSet<usize> = leader.into_iter().collect();
                while side.len() < size {
                    side.insert(self.rng.random_range(0..n));
                }
                self.partition(&side.into_iter().map(|k| nodes[k]).collect::<Vec<_>>());
            }
            kind => {
                let a = leader.unwrap_or_else(|| self.rng.random_range(0..n));
                let b = (a + self.rng.random_range(1..n)) % n;
                let (a, b) = (nodes[a], nodes[b]);
                let (from, to) = if self.rng.random_bool(0.5) { (a, b) } else { (b, a) };
                self.cut(from, to);
                if kind == 2 {
                    self.cut(to, from);
                }
                self.outcome.partial_partitions += 1;
            }
        }
    }

    fn crash(&mut self, node: usize) {
        if self.options.trace {
            println!("{:>9}us crash n{}", self.now_us, node + 1);
        }
        self.shut_down(node);
        self.outcome.crashes += 1;
    }

    /// Shuts a removed machine down for good. Its disk stays as it was (it
    /// counts for nothing any more): a wiped machine comes back as a new
    /// one, with a new id.
    fn retire(&mut self, node: usize) {
        if self.options.trace {
            println!("{:>9}us retire n{}", self.now_us, node + 1);
        }
        if self.machines[node].state.is_some() {
            self.shut_down(node);
        }
        let m = &mut self.machines[node];
        (m.retired, m.retiring) = (true, false);
    }

    /// The machine stops: its memory and its unwritten writes are lost.
    fn shut_down(&mut self, node: usize) {
        if let Some(state) = self.machines[node].state.as_ref().filter(|s| s.is_leader()) {
            let change = LeadershipChange { time_us: self.now_us, node, term: state.term(), leads: false };
            self.leadership.push(change);
        }
        let m = &mut self.machines[node];
        m.state = None;
        m.timers.clear();
        m.applied.clear();
        // What the disk had not written is lost with the machine.
        self.outcome.writes_lost += m.writes.iter().filter(|w| !w.on_disk).count() as u64;
        m.writes.clear();
        m.verified = (Term(0), 0);
    }

    /// Notes in the history a node that took or left the leader role.
    fn record_leadership(&mut self, node: usize, before: &State, after: &State) {
        let led = before.is_leader().then(|| before.term());
        let leads = after.is_leader().then(|| after.term());
        if led == leads {
            return;
        }
        let time_us = self.now_us;
        if let Some(term) = led {
            self.leadership.push(LeadershipChange { time_us, node, term, leads: false });
        }
        if let Some(term) = leads {
            self.leadership.push(LeadershipChange { time_us, node, term, leads: true });
            // The 2015 bug needs a change taken by a leader that has not yet
            // committed an entry of its term: the operator is quick, often.
            if self.changes_on() && !self.liveness && self.rng.random_bool(OPERATOR_AFTER_ELECTION) {
                let delay = self.rng.random_range(0..=self.faults.delay_max_us / 4);
                self.schedule(delay, Event::Operator { node: Some(node), again: false });
            }
        }
        let me = NodeId(node as u64 + 1);
        if led == Some(after.term()) && !after.committed_membership().is_voter(me) {
            self.outcome.leaders_removed_themselves += 1;
        }
    }

    /// Starts (or restarts) a node from its disk alone.
    fn start(&mut self, node: usize) -> Checked {
        let m = &mut self.machines[node];
        m.lifetime += 1;
        let (state, outputs) = if m.disk == MemoryStore::new() {
            State::new(&m.config, m.initial.clone())
        } else {
            State::recover(&m.config, m.disk.clone(), LogIndex(0)).map_err(|e| Violation {
                property: Property::PersistedState,
                step: self.outcome.steps,
                time_us: self.now_us,
                detail: format!("n{} cannot recover from its disk: {e}", node + 1),
            })?
        };
        if self.options.trace {
            println!("{:>9}us start n{} {state:?}", self.now_us, node + 1);
        }
        m.state = Some(state);
        let entries = held(&self.snapshot_data, &m.disk.log, m.disk.snapshot.as_ref()).into_owned();
        if outputs.iter().any(|o| matches!(o, Output::RestoreSnapshot(_))) {
            self.outcome.recoveries_from_snapshot += 1;
        }
        self.check_log_matching(&entries, 0)?;
        self.execute(node, outputs, None)?;
        Ok(())
    }

    /// Feeds one input to a node that is up, executes its outputs (perhaps
    /// crashing part-way), and checks every property.
    fn step(&mut self, node: usize, input: Input) -> Checked {
        let machine = &mut self.machines[node];
        let Some(state) = machine.state.as_mut() else { return Ok(()) };
        let before = state.clone();
        let mut outputs = Vec::new();
        if self.options.trace {
            println!("{:>9}us n{} <- {input:?}", self.now_us, node + 1);
        }
        let stepped = catch_panic(|| state.step(&machine.config, input.clone(), &mut outputs));
        self.outcome.steps += 1;
        if let Err(message) = stepped {
            let detail = format!("n{} panicked on {input:?}: {message}", node + 1);
            return Err(self.violation(Property::Panic, detail));
        }
        let after = self.machines[node].state.clone().expect("up");
        if self.options.trace {
            println!("{:>13}{after:?}\n{:>13}{outputs:?}", "", "");
        }
        self.record_leadership(node, &before, &after);
        let crash_at = if self.rng.random_bool(self.faults.mid_step_crash) && !outputs.is_empty() {
            Some(self.rng.random_range(0..outputs.len()))
        } else {
            None
        };
        // What the node now knows committed is recorded before its outputs
        // run, so that its deliveries are checked against it.
        if after.commit_index() > before.commit_index() {
            self.record_commit(node, &after)?;
        }
        let touched = first_touched(&outputs);
        if matches!(input, Input::Applied(_)) && outputs.iter().any(|o| matches!(o, Output::Deliver(_))) {
            self.outcome.deliveries_after_applied += 1;
        }
        self.execute(node, outputs.clone(), crash_at)?;
        self.check_step(node, &before, &after, &outputs)?;
        self.check_stale_term_rejected(node, &input, &before, &after, &outputs)?;
        self.check_pre_vote_changes_nothing(node, &input, &before, &after)?;
        self.check_append_receiver(node, &input, &before, &after, &outputs)?;
        self.check_commit_current_term_only(node, &before, &after)?;
        if let Some(first) = touched {
            let entries = held(&self.snapshot_data, after.log(), after.snapshot());
            self.check_log_matching(&entries, first as usize - 1)?;
        }
        if matches!(input, Input::Receive { message: Message::InstallSnapshot(_), .. })
            && outputs.iter().any(|o| matches!(o, Output::RestoreSnapshot(_)))
        {
            self.outcome.snapshots_installed += 1;
        }
        if matches!(input, Input::SnapshotTaken(_)) && after.snapshot() != before.snapshot() {
            self.outcome.snapshots_taken += 1;
        }
        self.check_commit_on_majority(touched)?;
        self.check_leader_completeness()
    }

    /// Executes an output list in order, as a driver must; with `crash_at`,
    /// the node dies just before executing that output.
    fn execute(&mut self, node: usize, outputs: Vec<Output>, crash_at: Option<usize>) -> Checked {
        let me = NodeId(node as u64 + 1);
        for (k, output) in outputs.into_iter().enumerate() {
            if crash_at == Some(k) {
                self.crash(node);
                let downtime = self.rng.random_range(10_000..500_000);
                self.schedule(downtime, Event::Restart { node });
                return Ok(());
            }
            match output {
                Output::Persist(p) => {
                    // Writes reach the disk in order: the background ones
                    // before this one are durable once it is.
                    self.flush_writes(node)?;
                    self.write(node, &p)?;
                }
                Output::PersistAsync { persist, term, index } => {
                    self.outcome.background_writes += 1;
                    let report = Input::Persisted { term, index };
                    self.machines[node].writes.push_back(Write { persist, on_disk: false, report });
                    let lifetime = self.machines[node].lifetime;
                    let delay = self.rng.random_range(0..=WRITE_DELAY_MAX_US);
                    self.schedule(delay, Event::Written { node, lifetime });
                }
                Output::Send { to, message } => {
                    self.check_backed_by_disk(node, to, &message)?;
                    if matches!(message, Message::TimeoutNow(_)) {
                        self.outcome.timeouts_now += 1;
                    }
                    self.check_ack_matches_leader(node, to, &message)?;
                    self.transmit(me, to, message);
                }
                Output::SetTimer { timer, min, max } => {
                    self.timer_generation += 1;
                    let generation = self.timer_generation;
                    self.machines[node].timers.insert(timer, generation);
                    let delay = self.rng.random_range(min.as_micros() as u64..=max.as_micros() as u64);
                    self.schedule(delay, Event::Timer { node, timer, generation });
                }
                Output::CancelTimer(timer) => {
                    self.machines[node].timers.remove(&timer);
                }
                Output::Deliver(commands) => {
                    for c in commands {
                        self.check_delivery(node, c.index.0, c.term, c.data)?;
                    }
                    let lifetime = self.machines[node].lifetime;
                    let delay = self.rng.random_range(0..=APPLY_DELAY_MAX_US);
                    self.schedule(delay, Event::Applied { node, lifetime });
                }
                Output::ProposalAccepted { id, term, index } => {
                    self.answers.insert(id, Ok((term, index)));
                    let data = self.proposals[&id].clone();
                    self.accepted.push((data, term, index));
                    self.outcome.accepted += 1;
                }
                Output::ReadReady { id, index } => self.check_read(node, id, index)?,
                Output::ReadRejected { id, .. } => {
                    self.reads.remove(&id);
                }
                Output::ProposalRejected { id, reason } => {
                    self.answers.insert(id, Err(reason));
                }
                Output::LeaderChanged { .. } | Output::TransferRejected { .. } | Output::Dropped(_) => {}
                Output::ChangeAccepted { id, index, .. } => {
                    if !self.changes.contains_key(&id) || self.change_answers.insert(id, Ok(index)).is_some() {
                        let detail = format!("n{} accepted change {id:?}, not asked or answered already", node + 1);
                        return Err(self.violation(Property::Contract, detail));
                    }
                    self.outcome.changes_accepted += 1;
                    if self.changes_on() && self.rng.random_bool(DEPOSE_AFTER_CHANGE) {
                        let delay = self.rng.random_range(0..=self.faults.delay_max_us);
                        self.schedule(delay, Event::Depose { node });
                    }
                }
                Output::ChangeRejected { id, reason } => {
                    self.change_answers.insert(id, Err(reason));
                    *self.outcome.changes_rejected.entry(rejection_name(&reason)).or_default() += 1;
                }
                // Checked against the cluster's committed prefix, as
                // deliveries are.
                Output::MembershipCommitted { index, term, membership } => {
                    let entry = Entry { term, payload: Payload::Membership(membership) };
                    let known = self.committed.get((index.0 as usize).wrapping_sub(1)).map(|(e, _, _)| e);
                    if known != Some(&entry) {
                        let detail = format!(
                            "n{} reported {entry:?} committed at {index:?}, not in the committed prefix",
                            node + 1
                        );
                        return Err(self.violation(Property::DeliverCommittedOnly, detail));
                    }
                }
                // A duplicated old rejection looks like a regressed follower
                // (see the core's replication.rs): harmless, counted.
                Output::FollowerRegressed { .. } => self.outcome.regressions_reported += 1,
                Output::RestoreSnapshot(meta) => {
                    // The application replaces its state by the snapshot's.
                    let Some(data) = self.snapshot_data.get(&(meta.index, meta.term)) else {
                        let detail = format!("n{} was told to restore {meta:?}, which nobody took", node + 1);
                        return Err(self.violation(Property::PersistedState, detail));
                    };
                    self.machines[node].applied = commands_of(data);
                }
            }
        }
        Ok(())
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, message: Message) {
        if self.rng.random_bool(self.faults.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay_max = if self.rng.random_bool(self.faults.straggler) {
                STRAGGLER_DELAY_MAX_US
            } else {
                self.faults.delay_max_us
            };
            let delay = self.rng.random_range(1..=delay_max);
            self.schedule(delay, Event::Arrive { from, to, message: message.clone() });
        }
    }

    /// A read served at `index` by `node`: issued here and not answered
    /// yet; its index covers what was committed when it was issued; and the
    /// node has delivered, in this lifetime, every command committed up to
    /// the index, so that its state machine reflects them.
    fn check_read(&mut self, node: usize, id: ReadId, index: LogIndex) -> Checked {
        let who = format!("n{}", node + 1);
        let Some(committed_at_issue) = self.reads.remove(&id) else {
            return Err(self.violation(Property::Contract, format!("{who} served {id:?}, not issued or answered")));
        };
        if index.0 < committed_at_issue {
            let detail = format!(
                "{who} served read {id:?} at {index:?}, but {committed_at_issue} entries were committed when it was issued"
            );
            return Err(self.violation(Property::LinearizableReads, detail));
        }
        let Some(known) = self.committed.get(..index.0 as usize) else {
            let detail =
                format!("{who} served read {id:?} at {index:?}, beyond the {} entries committed", self.committed.len());
            return Err(self.violation(Property::LinearizableReads, detail));
        };
        let commands = known.iter().filter(|(e, _, _)| matches!(e.payload, Payload::Command(_))).count();
        let applied = self.machines[node].applied.iter().filter(|(i, _, _)| *i <= index.0).count();
        if applied < commands {
            let detail = format!(
                "{who} served read {id:?} at {index:?} having delivered {applied} of the {commands} commands up to it"
            );
            return Err(self.violation(Property::LinearizableReads, detail));
        }
        self.outcome.reads_served += 1;
        Ok(())
    }

    /// The application of `node` reports every command it was delivered in
    /// this lifetime as applied, as a real one would: up to the index of the
    /// last command it applied. A report of an earlier lifetime is lost.
    fn write(&mut self, node: usize, p: &Persist) -> Checked {
        if let Err(refused) = self.machines[node].disk.apply(p) {
            let detail = format!("n{}'s store cannot execute {p:?}: {refused}", node + 1);
            return Err(self.violation(Property::PersistedState, detail));
        }
        Ok(())
    }

    /// Puts every background write of `node` on its disk (their reports
    /// still come, late).
    fn flush_writes(&mut self, node: usize) -> Checked {
        for k in 0..self.machines[node].writes.len() {
            if !self.machines[node].writes[k].on_disk {
                let p = self.machines[node].writes[k].persist.clone();
                self.write(node, &p)?;
                self.machines[node].writes[k].on_disk = true;
            }
        }
        Ok(())
    }

    /// The oldest background write of `node` is durable: it is put on the
    /// disk if a later persist did not flush it, and reported.
    fn report_written(&mut self, node: usize, lifetime: u64) -> Checked {
        let m = &mut self.machines[node];
        if m.lifetime != lifetime || m.state.is_none() {
            return Ok(());
        }
        let Some(write) = m.writes.pop_front() else { return Ok(()) };
        if write.on_disk {
            self.outcome.late_write_reports += 1;
        } else {
            self.write(node, &write.persist)?;
        }
        self.step(node, write.report)
    }

    /// The disk of `node` with its background writes done: what the node's
    /// memory must equal.
    fn disk_with_writes(&self, node: usize) -> Cow<'_, MemoryStore> {
        let m = &self.machines[node];
        if m.writes.iter().all(|w| w.on_disk) {
            return Cow::Borrowed(&m.disk);
        }
        let mut disk = m.disk.clone();
        for w in m.writes.iter().filter(|w| !w.on_disk) {
            disk.apply(&w.persist).expect("checked when written");
        }
        Cow::Owned(disk)
    }

    fn report_applied(&mut self, node: usize, lifetime: u64) -> Checked {
        let m = &self.machines[node];
        let Some(state) = m.state.as_ref().filter(|_| m.lifetime == lifetime) else { return Ok(()) };
        let Some(&(index, _, _)) = m.applied.last() else { return Ok(()) };
        if LogIndex(index) <= state.applied_index() {
            return Ok(()); // reported already
        }
        self.step(node, Input::Applied(LogIndex(index)))?;
        self.maybe_take_snapshot(node)
    }

    /// Now and then, with snapshots on, the application of `node` takes a
    /// snapshot at its applied index; now and then, playing a buggy driver,
    /// at an index up to its log's end, which the core must refuse.
    fn maybe_take_snapshot(&mut self, node: usize) -> Checked {
        if self.snapshots.is_none() || !self.snapshot_rng.random_bool(0.2) {
            return Ok(());
        }
        let Some(state) = self.machines[node].state.as_ref() else { return Ok(()) };
        let (applied, last) = (state.applied_index().0, state.log().last_index().0);
        let index =
            if self.snapshot_rng.random_bool(0.8) { applied } else { self.snapshot_rng.random_range(applied..=last) };
        let entries = held(&self.snapshot_data, state.log(), state.snapshot());
        let (Some(entry), true) =
            (entries.get((index as usize).wrapping_sub(1)), index > state.log().compacted_index().0)
        else {
            return Ok(());
        };
        let data = entries[..index as usize].to_vec();
        self.snapshot_data.entry((LogIndex(index), entry.term)).or_insert(data);
        self.step(node, Input::SnapshotTaken(LogIndex(index)))
    }

    /// Persist-before-send, checked where it matters: when a vote request,
    /// a vote or an acknowledgement leaves, the disk already says so.
    /// DurableClaims: what the core counts as durable (its log through
    /// `durable_index`, its vote when `hard_state_is_durable`) is on the
    /// disk, not merely being written: a leader counts itself, and a
    /// candidate its vote, only for that (thesis §10.2.1).
    fn check_durable_claims(&self, node: usize, state: &State) -> Checked {
        let disk = &self.machines[node].disk;
        let durable = state.durable_index();
        let on_disk = disk.log.last_index() >= durable
            && (state.log().first_index().0..=durable.0)
                .all(|i| disk.log.get(LogIndex(i)) == state.log().get(LogIndex(i)));
        let vote = !state.hard_state_is_durable() || disk.hard == state.hard_state();
        if on_disk && vote {
            return Ok(());
        }
        let detail = format!(
            "n{} counts its log through {durable} and its vote ({}) as durable; its disk holds {:?}",
            node + 1,
            state.hard_state_is_durable(),
            disk
        );
        Err(self.violation(Property::PersistBeforeSend, detail))
    }

    /// PersistBeforeSend: a message says nothing its sender's disk does not
    /// back. A vote request may leave while its vote is being written (it
    /// follows the write); a leader's messages carry a term and vote that
    /// are durable (it won only once its own vote was).
    fn check_backed_by_disk(&self, node: usize, to: NodeId, message: &Message) -> Checked {
        let disk = &self.machines[node].disk;
        let me = NodeId(node as u64 + 1);
        let writing = |term: Term| {
            self.machines[node]
                .writes
                .iter()
                .any(|w| matches!(w.persist, Persist::HardState(h) if h.term == term && h.voted_for == Some(me)))
        };
        // A candidate's refusals may carry its term while that is written:
        // they grant nothing.
        let refusal_backed = |term: Term| disk.hard.term >= term || writing(term);
        let backed = match message {
            Message::RequestVote(m) => (disk.hard.term == m.term && disk.hard.voted_for == Some(me)) || writing(m.term),
            Message::AppendEntries(_)
            | Message::InstallSnapshot(_)
            | Message::LeadershipCheck(_)
            | Message::TimeoutNow(_) => disk.hard.term == message.term() && disk.hard.voted_for == Some(me),
            Message::RequestVoteResponse(m) if m.granted => disk.hard.term == m.term && disk.hard.voted_for == Some(to),
            Message::AppendEntriesResponse(m) => match m.result {
                AppendResult::Success { match_index } => {
                    disk.hard.term == m.term && disk.log.last_index() >= match_index
                }
                AppendResult::Conflict { .. } => disk.hard.term == m.term || writing(m.term),
            },
            // Thesis §9.6: a pre-vote asks about the term after the stored
            // one, and a granted answer echoes a term its sender never took.
            Message::PreVote(m) => disk.hard.term.next() == m.term,
            Message::PreVoteResponse(m) if m.granted => disk.hard.term < m.term,
            other => refusal_backed(other.term()),
        };
        if backed {
            Ok(())
        } else {
            Err(self.violation(
                Property::PersistBeforeSend,
                format!("n{} sent {message:?} to {to:?} before its disk ({:?}) backed it", node + 1, disk.hard),
            ))
        }
    }

    /// One command delivered by `node`. DeliverOnceInOrder: it is the next
    /// command of the node's log after the last it delivered in this
    /// lifetime. DeliverCommittedOnly: it is the node's log entry there,
    /// within the node's commit index and within the prefix the cluster
    /// knows committed. StateMachineSafety: any other node delivered the
    /// same command at that index.
    /// AckMatchesLeader: an acknowledgement of term T up to index i, sent to
    /// T's leader while that leader still leads T (its log is then a
    /// superset, append-only, of the one it sent from), says that the
    /// sender's stored log equals the leader's log up to i. Comparing entry
    /// i suffices: Log Matching, checked on every log, makes two logs that
    /// agree at i agree up to it.
    fn check_ack_matches_leader(&self, node: usize, to: NodeId, message: &Message) -> Checked {
        let Message::AppendEntriesResponse(m) = message else { return Ok(()) };
        let AppendResult::Success { match_index } = m.result else { return Ok(()) };
        if self.leaders.get(&m.term) != Some(&to) {
            return Ok(());
        }
        let Some(leader) = self.machines[(to.0 - 1) as usize].state.as_ref() else { return Ok(()) };
        if !leader.is_leader() || leader.term() != m.term {
            return Ok(());
        }
        let claimed = match_index.0 as usize;
        let disk = &self.machines[node].disk;
        let ours = held(&self.snapshot_data, &disk.log, disk.snapshot.as_ref());
        let theirs = held(&self.snapshot_data, leader.log(), leader.snapshot());
        if claimed > 0 && (theirs.len() < claimed || ours.len() < claimed || ours[claimed - 1] != theirs[claimed - 1]) {
            let same = ours.iter().zip(theirs.iter()).take_while(|(a, b)| a == b).count();
            let detail = format!(
                "n{} acknowledged {message:?} to {to:?}, whose log of {} entries matches its stored {} only up to {same}",
                node + 1,
                theirs.len(),
                ours.len()
            );
            return Err(self.violation(Property::AckMatchesLeader, detail));
        }
        Ok(())
    }

    fn check_delivery(&mut self, node: usize, index: u64, term: Term, data: Vec<u8>) -> Checked {
        let m = &self.machines[node];
        let who = format!("n{}", node + 1);
        let state = m.state.as_ref().expect("up");
        let last = m.applied.last().map_or(0, |&(i, _, _)| i);
        if index <= last {
            let detail =
                format!("{who} delivered index {index} after {last} in one lifetime: not in order or not once");
            return Err(self.violation(Property::DeliverOnceInOrder, detail));
        }
        let entry = Entry { term, payload: Payload::Command(data.clone()) };
        let held = state.log().get(LogIndex(index));
        if held != Some(&entry) {
            let detail = format!("{who} delivered {index}@{term:?}, but its log holds {held:?} there");
            return Err(self.violation(Property::DeliverCommittedOnly, detail));
        }
        if LogIndex(index) > state.commit_index() {
            let detail = format!("{who} delivered {index}@{term:?} beyond its commit index {:?}", state.commit_index());
            return Err(self.violation(Property::DeliverCommittedOnly, detail));
        }
        if self.committed.get(index as usize - 1).map(|(e, _, _)| e) != Some(&entry) {
            let detail = format!(
                "{who} delivered {index}@{term:?}, not in the cluster's committed prefix of {} entries",
                self.committed.len()
            );
            return Err(self.violation(Property::DeliverCommittedOnly, detail));
        }
        let is_command =
            |i: u64| matches!(state.log().get(LogIndex(i)), Some(e) if matches!(e.payload, Payload::Command(_)));
        if let Some(skipped) = (last + 1..index).find(|&i| is_command(i)) {
            let detail = format!("{who} delivered index {index} after {last}, skipping the command at {skipped}");
            return Err(self.violation(Property::DeliverOnceInOrder, detail));
        }
        match self.delivered.get(&index) {
            Some((t, d)) if (*t, d) != (term, &data) => {
                return Err(self.violation(
                    Property::StateMachineSafety,
                    format!("{who} delivered {:?} at {index}, another node delivered {:?}", (term, &data), (t, d)),
                ));
            }
            Some(_) => {}
            None => {
                self.delivered.insert(index, (term, data.clone()));
            }
        }
        self.delivered_data.insert(data.clone());
        self.machines[node].applied.push((index, term, data));
        Ok(())
    }

    /// Log Matching, over all history: each (index, term) ever seen in any
    /// log names one entry and one preceding term. By induction along the
    /// log, two logs that share an (index, term) share everything before it.
    fn check_log_matching(&mut self, entries: &[Entry], from: usize) -> Checked {
        for i in from..entries.len() {
            let previous = if i == 0 { Term(0) } else { entries[i - 1].term };
            let key = (i as u64 + 1, entries[i].term);
            match self.entries_seen.get(&key) {
                Some((p, e)) if (*p, e) != (previous, &entries[i]) => {
                    return Err(self.violation(
                        Property::LogMatching,
                        format!(
                            "entry {key:?} is {:?} after term {previous:?}, elsewhere {e:?} after {p:?}",
                            entries[i]
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries_seen.insert(key, (previous, entries[i].clone()));
                }
            }
        }
        Ok(())
    }

    fn check_step(&mut self, node: usize, before: &State, after: &State, outputs: &[Output]) -> Checked {
        let who = format!("n{}", node + 1);
        if outputs.iter().any(|o| matches!(o, Output::Dropped(_))) && before != after {
            return Err(
                self.violation(Property::Contract, format!("{who}: an input reported dropped changed the state"))
            );
        }
        if let Some(first_send) = outputs.iter().position(|o| matches!(o, Output::Send { .. })) {
            let late =
                outputs[first_send..].iter().find(|o| matches!(o, Output::Persist(_) | Output::PersistAsync { .. }));
            if let Some(late) = late {
                let detail = format!("{who}: {late:?} follows {:?} in one output list", outputs[first_send]);
                return Err(self.violation(Property::PersistBeforeSend, detail));
            }
        }
        // After a crash part-way through the list, the disk holds less.
        let up = self.machines[node].state.is_some();
        if up {
            self.check_durable_claims(node, after)?;
        }
        let disk = self.disk_with_writes(node);
        let disk = disk.as_ref();
        if up && after.hard_state() != disk.hard {
            let detail = format!("{who} holds {:?} in memory, {:?} on disk", after.hard_state(), disk.hard);
            return Err(self.violation(Property::PersistedState, detail));
        }
        // The membership a restart begins from: the snapshot's, if any (a
        // crash may strike between a snapshot's persist and the membership
        // record's), else the record's.
        let disk_base = disk.snapshot.as_ref().map(|s| &s.membership).or(disk.membership.as_ref());
        if up && disk_base != Some(after.base_membership()) {
            let detail = format!("{who} holds {:?} in memory, {disk_base:?} on disk", after.base_membership());
            return Err(self.violation(Property::PersistedState, detail));
        }
        if up && after.snapshot() != disk.snapshot.as_ref() {
            let detail = format!("{who} holds {:?} in memory, {:?} on disk", after.snapshot(), disk.snapshot);
            return Err(self.violation(Property::PersistedState, detail));
        }
        if up && after.log() != &disk.log {
            let (memory, stored) = (after.log().entries().len(), disk.log.len());
            let same = after.log().entries().iter().zip(disk.log.entries()).take_while(|(a, b)| a == b).count();
            let detail = format!("{who} holds {memory} entries in memory, {stored} on disk, alike up to {same}");
            return Err(self.violation(Property::PersistedState, detail));
        }
        if after.is_leader() {
            let leader = *self.leaders.entry(after.term()).or_insert(NodeId(node as u64 + 1));
            if leader != NodeId(node as u64 + 1) {
                return Err(self.violation(
                    Property::ElectionSafety,
                    format!("{leader:?} and {who} are both leaders of {:?}", after.term()),
                ));
            }
            if before.is_leader() && before.term() == after.term() {
                let old = held(&self.snapshot_data, before.log(), before.snapshot());
                let new = held(&self.snapshot_data, after.log(), after.snapshot());
                if new.len() < old.len() || new[..old.len()] != old[..] {
                    return Err(self.violation(
                        Property::LeaderAppendOnly,
                        format!("leader {who} of {:?} changed its log from {old:?} to {new:?}", after.term()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// StaleTermRejected: a Raft request or answer of a term below the
    /// receiver's leaves the receiver as it was, and no vote is granted and
    /// no append acknowledged in answer to it. (Client traffic, Forward and
    /// ReadIndex messages, carries terms as hints only.)
    /// PreVoteChangesNothing, on one step.
    fn check_pre_vote_changes_nothing(&self, node: usize, input: &Input, before: &State, after: &State) -> Checked {
        let answers_pre_vote = matches!(input, Input::Receive { message: Message::PreVote(_), .. });
        let starts_pre_vote = after.role_kind() == raft_core::RoleKind::PreCandidate
            && before.role_kind() != raft_core::RoleKind::PreCandidate
            || matches!(input, Input::Timeout(raft_core::Timer::Election))
                && after.role_kind() == raft_core::RoleKind::PreCandidate;
        if (answers_pre_vote || starts_pre_vote) && before.hard_state() != after.hard_state() {
            let detail =
                format!("n{} went from {:?} to {:?} on {input:?}", node + 1, before.hard_state(), after.hard_state());
            return Err(self.violation(Property::PreVoteChangesNothing, detail));
        }
        Ok(())
    }

    fn check_stale_term_rejected(
        &self,
        node: usize,
        input: &Input,
        before: &State,
        after: &State,
        outputs: &[Output],
    ) -> Checked {
        let Input::Receive { from, message } = input else { return Ok(()) };
        let raft = message.is_term_checked();
        if !raft || message.term() >= before.term() {
            return Ok(());
        }
        let who = format!("n{} of {:?}", node + 1, before.term());
        let agreed = outputs.iter().find(|o| match o {
            Output::Send { message: Message::RequestVoteResponse(m), .. } => m.granted,
            Output::Send { message: Message::AppendEntriesResponse(m), .. } => {
                matches!(m.result, AppendResult::Success { .. })
            }
            _ => false,
        });
        if let Some(agreed) = agreed {
            let detail = format!("{who} answered {message:?} from {from:?} with {agreed:?}");
            return Err(self.violation(Property::StaleTermRejected, detail));
        }
        if before != after {
            let detail = format!("{who} changed its state on {message:?} from {from:?}: {before:?} became {after:?}");
            return Err(self.violation(Property::StaleTermRejected, detail));
        }
        Ok(())
    }

    /// ConsistencyCheck, AppendMergesLog, AckOnlyMatched and
    /// FollowerCommitBound, on the step that handled an AppendEntries.
    fn check_append_receiver(
        &self,
        node: usize,
        input: &Input,
        before: &State,
        after: &State,
        outputs: &[Output],
    ) -> Checked {
        let Input::Receive { from, message: Message::AppendEntries(m) } = input else { return Ok(()) };
        let who = format!("n{}", node + 1);
        let last_new = LogIndex(m.prev_log_index.0 + m.entries.len() as u64);
        let before_held = held(&self.snapshot_data, before.log(), before.snapshot());
        let after_held = held(&self.snapshot_data, after.log(), after.snapshot());
        for output in outputs {
            if let Output::Send { message: Message::AppendEntriesResponse(r), .. } = output {
                if let AppendResult::Success { match_index } = r.result {
                    let prev = m.prev_log_index.0 as usize;
                    let prev_term = if prev == 0 { Some(Term(0)) } else { before_held.get(prev - 1).map(|e| e.term) };
                    if prev_term != Some(m.prev_log_term) {
                        let detail = format!(
                            "{who} acknowledged {:?} from {from:?} holding {prev_term:?} at {:?}",
                            Message::AppendEntries(m.clone()),
                            m.prev_log_index
                        );
                        return Err(self.violation(Property::ConsistencyCheck, detail));
                    }
                    let (kept, appended) = merged(&before_held, m.prev_log_index, &m.entries);
                    let expected = || kept.iter().chain(appended);
                    if !after_held.iter().eq(expected()) {
                        let same = after_held.iter().zip(expected()).take_while(|(a, b)| a == b).count();
                        let detail = format!(
                            "{who} acknowledged {:?} from {from:?} holding {} entries, where merging it gives {}, alike up to {same}",
                            Message::AppendEntries(m.clone()),
                            after_held.len(),
                            kept.len() + appended.len()
                        );
                        return Err(self.violation(Property::AppendMergesLog, detail));
                    }
                    // An append that ends inside the compacted (committed)
                    // prefix is acknowledged up to its end.
                    if match_index > last_new.max(before.log().compacted_index()) {
                        let detail = format!(
                            "{who} acknowledged {match_index:?} for an append from {from:?} that ends at {last_new:?}"
                        );
                        return Err(self.violation(Property::AckOnlyMatched, detail));
                    }
                }
            }
        }
        let bound = before.commit_index().max(m.leader_commit.min(last_new));
        if after.commit_index() > bound {
            let detail = format!(
                "{who} raised its commit index from {:?} to {:?} on an append from {from:?} ending at {last_new:?} with leader commit {:?}",
                before.commit_index(),
                after.commit_index(),
                m.leader_commit
            );
            return Err(self.violation(Property::FollowerCommitBound, detail));
        }
        Ok(())
    }

    /// CommitCurrentTermOnly: when a leader raises its commit index, the
    /// entry there is of its term.
    fn check_commit_current_term_only(&self, node: usize, before: &State, after: &State) -> Checked {
        if !after.is_leader() || after.commit_index() <= before.commit_index() {
            return Ok(());
        }
        let term = after.log().term_at(after.commit_index());
        if term != Some(after.term()) {
            let detail = format!(
                "leader n{} of {:?} raised its commit index to {:?}, an entry of {term:?}",
                node + 1,
                after.term(),
                after.commit_index()
            );
            return Err(self.violation(Property::CommitCurrentTermOnly, detail));
        }
        Ok(())
    }

    /// CommitOnMajority: the committed entries not yet checked, and those at
    /// or after `touched` (where this step changed a disk), are each on a
    /// majority of the disks of the voters that committed them. (A majority
    /// of one membership need not be a majority of the next, which differs
    /// by one server; each index is held to the one it was committed in.)
    fn check_commit_on_majority(&mut self, touched: Option<u64>) -> Checked {
        let from = touched.map_or(self.on_majority, |t| (t as usize - 1).min(self.on_majority));
        let disks: Vec<Cow<[Entry]>> = if from < self.committed.len() {
            self.machines.iter().map(|m| held(&self.snapshot_data, &m.disk.log, m.disk.snapshot.as_ref())).collect()
        } else {
            Vec::new()
        };
        for index in from..self.committed.len() {
            let (entry, _, membership) = &self.committed[index];
            let voters = membership.voters();
            let holders: Vec<String> = voters
                .iter()
                .map(|v| (v.0 - 1) as usize)
                .filter(|&n| disks.get(n).and_then(|d| d.get(index)) == Some(entry))
                .map(|n| format!("n{}", n + 1))
                .collect();
            if holders.len() <= voters.len() / 2 {
                let detail = format!(
                    "committed entry {} {entry:?} is stored on {holders:?} only, not a majority of the voters {voters:?}",
                    index + 1,
                );
                return Err(self.violation(Property::CommitOnMajority, detail));
            }
        }
        self.on_majority = self.committed.len();
        Ok(())
    }

    /// Extends the committed prefix with what `node` now knows committed,
    /// and lowers the commit terms of earlier indexes to its term. Each
    /// index new to the prefix is held to the voters `node` counts (the
    /// membership latest in its log); each configuration entry new to it
    /// is counted, and shuts down the machines it removes.
    fn record_commit(&mut self, node: usize, state: &State) -> Checked {
        let commit = state.commit_index().0 as usize;
        let term = state.term();
        let entries = held(&self.snapshot_data, state.log(), state.snapshot()).into_owned();
        for index in 1..=commit {
            let entry = entries.get(index - 1).expect("committed entries are held").clone();
            match self.committed.get_mut(index - 1) {
                Some((e, t, _)) => {
                    if *e != entry {
                        let detail = format!("n{} committed {entry:?} at {index}, already committed {e:?}", node + 1);
                        return Err(self.violation(Property::StateMachineSafety, detail));
                    }
                    *t = (*t).min(term);
                }
                None => {
                    if let Payload::Membership(m) = &entry.payload {
                        self.membership_committed(m.clone());
                    }
                    self.committed.push((entry, term, state.membership().clone()));
                }
            }
        }
        Ok(())
    }

    /// A configuration entry joined the committed prefix: it is counted, and
    /// the machines it removes are shut down, at once in the liveness phase
    /// and a while later in the safety phase (meanwhile, not knowing they
    /// were removed, they may stand for election in their old membership).
    fn membership_committed(&mut self, new: Membership) {
        let old = std::mem::replace(&mut self.committed_membership, new.clone());
        self.outcome.changes_committed += 1;
        let added = new.learners().iter().filter(|&&l| !old.contains(l)).count();
        let promoted = new.voters().iter().filter(|&&v| old.is_learner(v)).count();
        let voters_removed = old.voters().iter().filter(|&&v| !new.contains(v)).count();
        let learners_removed = old.learners().iter().filter(|&&l| !new.contains(l)).count();
        self.outcome.learners_added += added as u64;
        self.outcome.learners_promoted += promoted as u64;
        self.outcome.voters_removed += voters_removed as u64;
        self.outcome.learners_removed += learners_removed as u64;
        let removed: Vec<usize> = old
            .voters()
            .iter()
            .chain(old.learners())
            .filter(|&&id| !new.contains(id))
            .map(|id| (id.0 - 1) as usize)
            .collect();
        for node in removed {
            let m = &mut self.machines[node];
            if m.retired || m.retiring {
                continue;
            }
            // Scenario tests shut nothing down before their liveness phase.
            m.retiring = true;
            if self.liveness || self.changes_on() {
                let delay = if self.liveness { 0 } else { self.rng.random_range(0..=RETIRE_DELAY_MAX_US) };
                self.schedule(delay, Event::Retire { node });
            }
        }
    }

    /// Leader Completeness: each leader of term T holds every entry known
    /// committed by a node of a term up to T. Incremental: each leader's
    /// log was checked up to `verified`, and Leader Append-Only keeps what
    /// was checked.
    fn check_leader_completeness(&mut self) -> Checked {
        for node in 0..self.machines.len() {
            let Some(state) = &self.machines[node].state else { continue };
            if !state.is_leader() {
                continue;
            }
            let (mut term, mut verified) = self.machines[node].verified;
            if term != state.term() {
                (term, verified) = (state.term(), 0);
            }
            let entries = held(&self.snapshot_data, state.log(), state.snapshot());
            while let Some((entry, commit_term, _)) = self.committed.get(verified) {
                if *commit_term > term {
                    break;
                }
                let held = entries.get(verified);
                if held != Some(entry) {
                    let detail = format!(
                        "leader n{} of {term:?} lacks committed entry {} {entry:?} (has {held:?})",
                        node + 1,
                        verified + 1
                    );
                    return Err(self.violation(Property::LeaderCompleteness, detail));
                }
                verified += 1;
            }
            self.machines[node].verified = (term, verified);
        }
        Ok(())
    }

    /// The one leader that every live member follows, or what stands in the
    /// way: exactly one live node in the leader role, and every live member
    /// of its membership (voter or learner) in its term naming it as leader.
    /// A machine that is no member of it (removed, or a joiner not added) is
    /// not asked to follow.
    fn leader_agreement(&self) -> Result<(usize, &State), String> {
        let live: Vec<(usize, &State)> =
            self.machines.iter().enumerate().filter_map(|(i, m)| Some((i, m.state.as_ref()?))).collect();
        let views = || {
            let views: Vec<String> = live
                .iter()
                .map(|(i, s)| format!("n{} is {:?} of {:?} naming {:?}", i + 1, s.role_kind(), s.term(), s.leader()))
                .collect();
            views.join("; ")
        };
        let leaders: Vec<&(usize, &State)> = live.iter().filter(|(_, s)| s.is_leader()).collect();
        let [&(leader, state)] = leaders[..] else {
            return Err(format!("{} live nodes in the leader role: {}", leaders.len(), views()));
        };
        let id = node_id(leader);
        let members = state.membership();
        let follows = |(i, s): &(usize, &State)| {
            !members.contains(node_id(*i)) || (s.term() == state.term() && s.leader() == Some(id))
        };
        if live.iter().all(follows) {
            Ok((leader, state))
        } else {
            Err(format!("n{} leads {:?} but not every live node follows it: {}", leader + 1, state.term(), views()))
        }
    }

    /// Whether the cluster has converged: one leader that every member
    /// follows (see [`Sim::leader_agreement`]), every member up with the
    /// leader's log, all of it committed and delivered, and every liveness
    /// proposal delivered. Machines that are no members are not waited for.
    fn converged(&self) -> bool {
        let Ok((_, leader)) = self.leader_agreement() else { return false };
        let last = leader.log().last_index();
        let leader_held = held(&self.snapshot_data, leader.log(), leader.snapshot());
        let members = leader.membership();
        let everyone_agrees =
            self.machines.iter().enumerate().filter(|(n, _)| members.contains(node_id(*n))).all(|(_, m)| {
                m.state.as_ref().is_some_and(|s| {
                    s.commit_index() == last
                        && s.delivered_index() == last
                        && s.log().last_index() == last
                        && held(&self.snapshot_data, s.log(), s.snapshot()) == leader_held
                })
            });
        everyone_agrees && self.liveness_data.iter().all(|d| self.delivered_data.contains(d))
    }

    /// At convergence: each member delivered, in this lifetime, exactly the
    /// commands of the common log; and every proposal that a leader accepted
    /// at (term, index) and that is in the final log there was committed
    /// with its own data.
    fn check_final(&self) -> Checked {
        let (_, state) = self.leader_agreement().expect("converged");
        let log = held(&self.snapshot_data, state.log(), state.snapshot());
        let commands = commands_of(&log);
        let members = state.membership();
        for (node, m) in self.machines.iter().enumerate().filter(|(n, _)| members.contains(node_id(*n))) {
            if m.applied != commands {
                let detail =
                    format!("n{} delivered {} commands, the log holds {}", node + 1, m.applied.len(), commands.len());
                return Err(self.violation(Property::Liveness, detail));
            }
        }
        for (data, term, index) in &self.accepted {
            if let Some(entry) = log.get((index.0 as usize).wrapping_sub(1)) {
                if entry.term == *term && entry.payload != Payload::Command(data.clone()) {
                    let detail = format!("proposal {data:?} accepted at {index:?}@{term:?}, which holds {entry:?}");
                    return Err(self.violation(Property::Contract, detail));
                }
            }
        }
        Ok(())
    }
}

/// The log that Figure 2's receiver rules 3 and 4 make of `log` and an
/// append of `entries` after `prev` (which `log` holds): entries already
/// held (same index and term) are kept, the first conflicting one is cut
/// with all that follow, and the rest is appended. Returned as the part of
/// `log` kept and the entries appended after it.
fn merged<'a>(log: &'a [Entry], prev: LogIndex, entries: &'a [Entry]) -> (&'a [Entry], &'a [Entry]) {
    let prev = prev.0 as usize;
    let new = (0..entries.len()).find(|&k| log.get(prev + k).is_none_or(|held| held.term != entries[k].term));
    match new {
        None => (log, &[]),
        Some(k) => (&log[..(prev + k).min(log.len())], &entries[k..]),
    }
}

/// The commands of a log held from index 1, as an application applies
/// them: (index, term, data), no-ops skipped.
fn commands_of(entries: &[Entry]) -> Vec<(u64, Term, Vec<u8>)> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.payload {
            Payload::Command(d) => Some((i as u64 + 1, e.term, d.clone())),
            Payload::Noop | Payload::Membership(_) => None,
        })
        .collect()
}

/// What a node holds, from index 1: its snapshot's data up to its log's
/// compaction point, then its log. Borrowed when nothing is compacted.
fn held<'l>(
    data: &BTreeMap<(LogIndex, Term), Vec<Entry>>,
    log: &'l Log,
    snapshot: Option<&SnapshotMeta>,
) -> Cow<'l, [Entry]> {
    let compacted = log.compacted_index().0 as usize;
    if compacted == 0 {
        return Cow::Borrowed(log.entries());
    }
    let s = snapshot.expect("a compacted log has a snapshot");
    let prefix = &data[&(s.index, s.term)][..compacted];
    Cow::Owned(prefix.iter().chain(log.entries()).cloned().collect())
}

/// The first log index an output list changes, if any.
fn first_touched(outputs: &[Output]) -> Option<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist(raft_core::Persist::Truncate { from }) => Some(from.0),
            Output::Persist(raft_core::Persist::Append { first, .. }) => Some(first.0),
            // An installed snapshot may replace what a node holds anywhere
            // before it (the data comes in where the log was).
            Output::Persist(raft_core::Persist::Compact { .. }) => Some(1),
            _ => None,
        })
        .min()
}

/// Runs one seed; on a violation (a panic included), prints the seed and
/// the command that replays it, then fails.
pub fn run_seed(options: Options) -> Outcome {
    let seed = options.seed;
    let nodes = options.nodes;
    let replay = format!(
        "replay: SIM_SEED={seed} SIM_TRACE=1 cargo test -p raft-core --test simulator nodes_{nodes} -- --nocapture"
    );
    match Sim::new(options).run() {
        Ok(outcome) => outcome,
        Err(violation) => panic!("simulator seed {seed} ({nodes} nodes): {violation}\n{replay}"),
    }
}
