//! Deliberately broken rules, one switch per rule, for the mutation harness.
//!
//! A checker that never fails on a broken rule is a vacuous test. Each
//! [`Fault`] breaks exactly one rule of the paper's Figure 2, of persistence,
//! of ReadIndex (thesis §6.4) or of delivery, with a one-to-three-line change
//! at the place the rule is written; raft-check's profiles and raft-core's
//! simulator must each report a violation for every one of them.
//!
//! The type is public only with the `fault-injection` feature. Without it,
//! [`Config::breaks`](crate::Config) is a constant `false` and every switch
//! compiles away. With a fault injected, the core skips its own end-of-step
//! invariant assertions (debug builds), so that the fault must be caught by
//! the properties of the checker or the simulator and not by the core's
//! self-check.

use serde::{Deserialize, Serialize};

macro_rules! faults {
    ($( $(#[doc = $doc:literal])* $name:ident => $kebab:literal, $section:literal, $rule:literal; )*) => {
        /// A deliberately broken rule (see the module documentation).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
        pub enum Fault {
            $( $(#[doc = $doc])* $name, )*
        }

        #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
        impl Fault {
            /// Every fault, in the order of the table in the README.
            pub const ALL: &'static [Fault] = &[$(Fault::$name),*];

            /// The fault's command-line name (kebab case).
            pub fn name(self) -> &'static str {
                match self { $(Fault::$name => $kebab,)* }
            }

            /// The section of the paper (or thesis) whose rule it breaks.
            pub fn section(self) -> &'static str {
                match self { $(Fault::$name => $section,)* }
            }

            /// The rule it breaks, in a few words.
            pub fn rule(self) -> &'static str {
                match self { $(Fault::$name => $rule,)* }
            }

            /// The fault named `name` (as [`Fault::name`] spells it).
            pub fn from_name(name: &str) -> Option<Fault> {
                Fault::ALL.iter().copied().find(|f| f.name() == name)
            }
        }
    };
}

faults! {
    /// A follower grants a vote although it voted for another candidate in
    /// this term (candidates and leaders keep their own vote).
    GrantSecondVote => "grant-second-vote", "§5.2", "one vote per term";
    /// A voter grants its vote without the up-to-date check.
    SkipUpToDateCheck => "skip-up-to-date-check", "§5.4.1", "vote only for an up-to-date log";
    /// The up-to-date check compares log lengths only, not last terms first.
    UpToDateByLengthOnly => "up-to-date-by-length-only", "§5.4.1", "up-to-date compares last terms first";
    /// A candidate counts refused votes as granted.
    CountRefusedVotes => "count-refused-votes", "§5.2", "count granted votes only";
    /// A candidate counts granted votes from an earlier term of its own.
    CountStaleVotes => "count-stale-votes", "§5.1", "ignore responses of older terms";
    /// A voter does not persist the vote it grants.
    VoteNotPersisted => "vote-not-persisted", "Fig. 2", "persist votedFor before answering";
    /// A node that adopts a higher term does not persist it.
    TermNotPersisted => "term-not-persisted", "Fig. 2", "persist currentTerm before answering";
    /// A node that sees a higher term while leader keeps leading in its old
    /// term instead of stepping down.
    NoStepDownOnHigherTerm => "no-step-down-on-higher-term", "§5.1", "a higher term makes a node follower";
    /// A follower accepts an AppendEntries of an older term.
    AcceptStaleAppend => "accept-stale-append", "Fig. 2 AE 1", "reject appends of older terms";
    /// The consistency check only asks that the previous index be held, not
    /// that its term match.
    ConsistencyCheckIgnoresTerm => "consistency-check-ignores-term", "Fig. 2 AE 2", "prevLogTerm must match";
    /// A follower keeps an existing entry that conflicts with a new one (same
    /// index, other term) and acknowledges as if it matched.
    KeepConflictingEntry => "keep-conflicting-entry", "Fig. 2 AE 3", "delete a conflicting entry and all after it";
    /// A follower drops every entry after the append's last one even when
    /// nothing conflicts (a late, shorter append then erases entries).
    TruncateWithoutConflict => "truncate-without-conflict", "Fig. 2 AE 3", "truncate only on a conflict";
    /// A follower takes the leader's commit index bounded by its own last
    /// index, not by the last entry the append matched.
    FollowerCommitToLastIndex => "follower-commit-to-last-index", "Fig. 2 AE 5", "commit at most the last new entry";
    /// A follower acknowledges its whole log as matching, not just what the
    /// append covered.
    MatchIndexFromLastIndex => "match-index-from-last-index", "§5.3", "acknowledge only what the append matched";
    /// A leader commits an entry of an earlier term by counting replicas
    /// (Figure 8).
    CommitPreviousTermByCount => "commit-previous-term-by-count", "§5.4.2", "commit only entries of the current term by counting";
    /// A leader commits an index held by one server fewer than a majority.
    CommitWithoutMajority => "commit-without-majority", "§5.3", "commit what a majority holds";
    /// A leader takes acknowledgements of its own earlier terms as current.
    AcceptStaleAppendResponse => "accept-stale-append-response", "§5.1", "ignore acknowledgements of older terms";
    /// A follower sends its acknowledgement before it persists the entries.
    AckBeforePersist => "ack-before-persist", "Fig. 2", "persist entries before acknowledging";
    /// A leader counts its own entries towards the commit index as soon as
    /// it appends them, before the driver reports them durable.
    LeaderCountsUndurableEntries => "leader-counts-undurable-entries", "thesis §10.2.1", "count the leader's own entries once durable";
    /// A leader answers reads without confirming its leadership with a majority.
    ServeReadsWithoutQuorum => "serve-reads-without-quorum", "thesis §6.4", "confirm leadership with a majority";
    /// A leader fixes a read index before it has committed an entry of its term.
    ReadIndexBeforeTermCommit => "read-index-before-term-commit", "thesis §6.4", "first commit an entry of the term";
    /// A read is confirmed by a leadership round sent before the read arrived.
    ReadRoundNotFresh => "read-round-not-fresh", "thesis §6.4", "confirm with a round sent after the read";
    /// A read is served before the node has applied up to its read index.
    ServeBeforeApplied => "serve-before-applied", "thesis §6.4", "apply up to the read index first";
    /// Entries are delivered up to the log's end, not the commit index.
    DeliverUncommitted => "deliver-uncommitted", "§5.3", "deliver committed entries only";
    /// Each commit delivers again every entry from the start of the log.
    DeliverTwice => "deliver-twice", "§5.3", "deliver each entry once, in log order";
    /// A node that receives a pre-vote of a higher term adopts (and
    /// persists) that term, as if it were a vote request.
    PreVoteAdoptsTerm => "pre-vote-adopts-term", "thesis §9.6", "a pre-vote changes no one's term";
    /// A node whose election timer fires increments its term when it starts
    /// a pre-vote, not only when the pre-vote wins.
    PreCandidateBumpsTerm => "pre-candidate-bumps-term", "thesis §9.6", "a pre-candidate keeps its term";
    /// A node that wins a pre-vote starts its election in its current term
    /// (voting for itself again) instead of the next one.
    ElectionKeepsTerm => "election-keeps-term", "thesis §9.6", "an election after a pre-vote takes a new term";
    /// A follower installing a snapshot discards the log suffix that
    /// matches the snapshot's last entry, and acknowledges the entries it
    /// held before, which it no longer holds.
    InstallDiscardsMatchingSuffix => "install-discards-matching-suffix", "§7", "keep the suffix that follows a matching snapshot entry";
    /// A node takes a snapshot of, and compacts, entries it does not know
    /// committed (up to its last index, not its applied index).
    CompactPastCommit => "compact-past-commit", "§7", "compact only committed, applied entries";
    /// A leader takes a membership change before it has committed an entry
    /// of its own term (the raft-dev bug of 2015: two changes across a
    /// change of leader can form majorities that do not overlap).
    ChangeBeforeTermCommit => "change-before-term-commit", "thesis §4.2", "change membership only after committing an entry of the term";
}
