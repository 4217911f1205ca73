//! The notation of the checker's output: node states, messages and timers
//! as raft-core's and the adapter's `Debug` print them (the explorer's
//! state text, the counterexample traces), in one table.
//!
//! [`NOTATION`] is the table; the README's checker section shows it as
//! [`markdown_table`] renders it, and a test checks that every marker the
//! formatters produce on the states of several models appears in its
//! left-hand column ([`markers`] says what a marker is).

use std::collections::BTreeSet;

/// Every notation the checker's output uses: (notation, meaning), the
/// notation's forms separated by `; `. Numbers are examples; `...` stands
/// for more of the same.
pub const NOTATION: &[(&str, &str)] = &[
    ("n1", "a server (raft-core's node id, from 1, as in raft-tokio)"),
    ("t2", "a term"),
    ("i3; i3@t2", "a log index; the index and the term of the entry there"),
    (
        "1:noop; 1:\"a\"; <9 bytes>",
        "a log entry: its term, then the no-op a new leader appends, or a command (`\"a\"`: the value n1 proposes at \
         start, `\"b\"` n2's; `\"w3=3\"`: client 3 writes 3; other data by its size)",
    ),
    ("log [1:noop, 1:\"a\"]", "a log, from index 1"),
    ("log [..i2@t1] [2:\"b\"]", "a log whose entries through i2 are compacted into a snapshot"),
    ("t1/vote n2; t1/no vote", "the current term and the vote cast in it (both persisted)"),
    ("commit 2", "the commit index: the entries through index 2 are known committed"),
    ("F", "follower"),
    ("P{n1, n2}", "pre-candidate (thesis §9.6) and the nodes that would vote for it, itself included"),
    ("C{n1, n3}", "candidate and the votes it has, its own included once it is durable"),
    (
        "L[n2:1/2* n3:0/1] transfer to n2",
        "leader, and per follower its match index / next index (`*`: heard from since the last check-quorum \
         round); a leadership transfer to n2 under way",
    ),
    (
        "follower; pre-candidate; candidate; leader; votes {n1, n3}; pre-votes {n1}; match/next n2:1/2*",
        "the same roles, spelled out, in a counterexample's trace",
    ),
    ("vote n2; no vote", "the vote, in a trace"),
    (
        "down; commit -; (its storage)",
        "a crashed node, in a trace: what its storage holds (its commit index is volatile)",
    ),
    ("leader n2", "the leader this node knows of in its term"),
    ("pending 1", "proposals a node holds until it knows a leader to forward them to"),
    (
        "vote writing; durable 2; writing 1",
        "background writes (thesis §10.2.1, `--background-writes`): a candidate's term and vote are being written; \
         the log is known durable only through i2 (a leader's later entries are being written); the adapter holds \
         one write not yet durable",
    ),
    ("snapshot i2@t1", "the node's snapshot: it covers the entries through i2, whose term is t1"),
    ("data i2@t1 [1:\"a\", 1:noop]", "a snapshot's data, kept by the adapter: the entries it covers"),
    (
        "reads(round 1, waiting 0, applying 0)",
        "ReadIndex reads: the leader's round, reads waiting for it, reads waiting to be applied",
    ),
    ("reg 3 awaiting {3}", "kv model: the register at this server, and the clients it owes an answer"),
    ("client at op 1", "kv model: a client waiting for the answer to its operation 1 (from 0)"),
    ("BROKEN {...}", "the adapter saw a step of this node break a rule no single state shows (the flags set)"),
    (
        "RequestVote(t2, last i1@t1, transfer)",
        "a vote request: the candidate's term, the index and term of its last entry (and, from a leadership \
         transfer, `transfer`)",
    ),
    ("Vote(t2, granted); Vote(t2, refused)", "the answer to a vote request"),
    ("PreVote(t2, last i1@t1); PreVoteAnswer(t2, granted)", "a pre-vote, which changes no term, and its answer"),
    (
        "Append(t1, prev i1@t1, [1:\"a\"], commit i1)",
        "AppendEntries: the leader's term, the index and term of the entry before those sent, the entries, the \
         leader's commit index",
    ),
    (
        "AppendOk(t1, match i2); AppendConflict(t1, at i3, last i4, Some((t1, i2))); AppendConflict(t1, at i3, \
         last i2, None)",
        "the answer: the follower's log matches the leader's through i2; or it refused the append whose previous \
         entry is i3: its last index is i4 and (`Some`) its entry at i3 has another term, t1, held from i2 on, or \
         (`None`) it has no entry at i3",
    ),
    ("InstallSnapshot(t2, snapshot i2@t1) data [...]", "a leader sends its snapshot, the data with it"),
    (
        "Check(t1, round 2); CheckOk(t1, round 2)",
        "a leader asks its followers whether it still leads (reads, check-quorum), and the answer",
    ),
    (
        "Forward(t1, [p1]); ForwardResponse(t1, ...)",
        "a follower forwards proposals (p1: a proposal id) to its leader; the answer (Rust's Debug of raft-core's \
         Placement per proposal)",
    ),
    (
        "ReadIndex(t1, [r3]); ReadIndexResponse(t1, ...)",
        "a follower asks its leader for the read index of reads (r3: a read id); the answer (Rust's Debug of \
         raft-core's ReadIndexResult per read)",
    ),
    ("TimeoutNow(t2)", "a leader hands over its leadership: the receiver starts an election at once"),
    (
        "Put(3); PutOk; Get; GetOk(3 at i2)",
        "kv model: a client writes 3, the write is done; a read, and its answer: 3, read at index i2",
    ),
    ("TransferLeadership(to n2)", "an operator asks a node to hand its leadership to n2"),
    (
        "Election; Heartbeat; CheckQuorum; Transfer; TakeSnapshot(i2); Written",
        "timers: the election timeout; a leader's heartbeat, check-quorum and transfer timers; the application \
         takes a snapshot at i2; the disk makes the oldest background write durable",
    ),
];

/// The markers of a text: each word (letters, with `-` or `_` inside:
/// `pre-votes`), and each other character that is not a digit or a space.
/// Quoted text (a command's bytes: `"a"`, `"w3=3"`) counts as one `"`.
pub fn markers(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if quoted {
            quoted = c != '"';
            continue;
        }
        if c.is_ascii_alphabetic() || (!word.is_empty() && (c == '-' || c == '_')) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            found.insert(std::mem::take(&mut word));
        }
        if c == '"' {
            quoted = true;
            found.insert("\"".to_string());
        } else if !c.is_ascii_digit() && !c.is_whitespace() {
            found.insert(c.to_string());
        }
    }
    if !word.is_empty() {
        found.insert(word);
    }
    found
}

/// Every marker of the table's left-hand column.
pub fn table_markers() -> BTreeSet<String> {
    NOTATION.iter().flat_map(|(notation, _)| markers(notation)).collect()
}

/// The table as the README shows it: `| notation | meaning |`, the
/// notation as code.
pub fn markdown_table() -> String {
    let mut table = String::from("| notation | meaning |\n|---|---|\n");
    for (notation, meaning) in NOTATION {
        let cells: Vec<String> = notation.split("; ").map(|n| format!("`{n}`")).collect();
        table.push_str(&format!("| {} | {meaning} |\n", cells.join(", ")));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_words_and_punctuation_without_numbers_or_quoted_text() {
        let m = markers("L[n2:1/2*] t1/vote n2 log [1:\"w3=3\", 2:noop] pre-votes {n1}");
        let expected =
            ["L", "[", "n", ":", "/", "*", "]", "t", "vote", "log", "\"", ",", "noop", "pre-votes", "{", "}"];
        assert_eq!(m, expected.iter().map(|s| s.to_string()).collect());
    }
}
