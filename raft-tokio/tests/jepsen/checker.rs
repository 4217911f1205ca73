//! A linearizability checker for key-value histories: Wing and Gong's
//! search with Lowe's memoization (the algorithm behind Knossos and
//! Porcupine), applied to each key on its own (linearizability is
//! compositional, so a history is linearizable iff every key's is).
//!
//! Each operation has an invocation time and, if the client heard back, a
//! return time and result. An operation without an answer (a timeout) is
//! indeterminate: it may have taken effect at any moment after its
//! invocation, or never; it is given a return time after every other event
//! and accepts any result, which covers both.

use std::collections::{BTreeMap, HashSet};

/// A value: bytes, or absent.
pub type Value = Option<Vec<u8>>;

/// What a client asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Read the key.
    Get,
    /// Set the key (`None` deletes it).
    Put(Value),
    /// Set the key to `new` if it holds `expected`.
    Cas {
        /// The value required.
        expected: Value,
        /// The value to set.
        new: Value,
    },
}

/// What the client heard back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A read's value.
    Read(Value),
    /// A write was applied.
    Written,
    /// A compare-and-set swapped.
    Swapped,
    /// A compare-and-set did not swap: the key held this.
    NotSwapped(Value),
    /// No answer: the operation may or may not have taken effect.
    Unknown,
}

/// One operation in a history.
#[derive(Clone, Debug)]
pub struct Operation {
    /// The key.
    pub key: Vec<u8>,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub answer: Answer,
    /// When it was invoked (any monotonic unit).
    pub invoked: u64,
    /// When it returned; ignored for `Answer::Unknown`.
    pub returned: u64,
}

/// Applies `call` to the register `state`; `Some(next state)` when the
/// answer is one the call could give from that state.
fn step(state: &Value, call: &Call, answer: &Answer) -> Option<Value> {
    let unknown = *answer == Answer::Unknown;
    match call {
        Call::Get => (unknown || *answer == Answer::Read(state.clone())).then(|| state.clone()),
        Call::Put(v) => (unknown || *answer == Answer::Written).then(|| v.clone()),
        Call::Cas { expected, new } => {
            if state == expected {
                (unknown || *answer == Answer::Swapped).then(|| new.clone())
            } else {
                (unknown || *answer == Answer::NotSwapped(state.clone())).then(|| state.clone())
            }
        }
    }
}

/// The verdict on one key.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists; the operations of the longest prefix the search could
    /// not extend, for the report.
    NotLinearizable {
        /// The key.
        key: Vec<u8>,
        /// Indexes (into the key's operations, in history order) of the
        /// first few operations pending at the point of failure.
        stuck_at: Vec<usize>,
    },
}

/// Checks every key's history; the first key that fails is reported.
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if let Err(stuck_at) = check_key(&ops) {
            return Verdict::NotLinearizable { key: key.to_vec(), stuck_at };
        }
    }
    Verdict::Linearizable
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
    /// For a call: the index of its return event.
    matching: usize,
}

/// Wing & Gong with Lowe's cache, on a doubly linked list of call and
/// return events in time order. Index 0 is the list's head sentinel.
fn check_key(ops: &[&Operation]) -> Result<(), Vec<usize>> {
    let end = u64::MAX;
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        let returned = if op.answer == Answer::Unknown { end } else { op.returned.max(op.invoked) };
        // At equal times, returns sort before calls: an operation that
        // returned at t precedes one invoked at t.
        times.push((op.invoked, true, i));
        times.push((returned, false, i));
    }
    times.sort_by_key(|&(t, is_call, i)| (t, is_call, i));
    let mut events = vec![Event { op: usize::MAX, is_call: false, prev: 0, next: 1, matching: 0 }];
    let mut return_of = vec![0; ops.len()];
    for (k, &(_, is_call, op)) in times.iter().enumerate() {
        let index = k + 1;
        events.push(Event { op, is_call, prev: index - 1, next: index + 1, matching: 0 });
        if !is_call {
            return_of[op] = index;
        }
    }
    let last = events.len();
    events[last - 1].next = 0;
    for e in events.iter_mut().skip(1) {
        if e.is_call {
            e.matching = return_of[e.op];
        }
    }
    let lift = |events: &mut Vec<Event>, call: usize| {
        for i in [call, events[call].matching] {
            let (p, n) = (events[i].prev, events[i].next);
            events[p].next = n;
            if n != 0 {
                events[n].prev = p;
            }
        }
    };
    let unlift = |events: &mut Vec<Event>, call: usize| {
        for i in [events[call].matching, call] {
            let (p, n) = (events[i].prev, events[i].next);
            events[p].next = i;
            if n != 0 {
                events[n].prev = i;
            }
        }
    };
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Value = None;
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut entry = events[0].next;
    while events[0].next != 0 {
        let e = events[entry];
        if e.is_call {
            let op = ops[e.op];
            if let Some(next) = step(&state, &op.call, &op.answer) {
                let mut bits = linearized.clone();
                bits[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((bits.clone(), next.clone())) {
                    stack.push((entry, state));
                    state = next;
                    linearized = bits;
                    lift(&mut events, entry);
                    entry = events[0].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return with its call not yet linearized: backtrack.
            let Some((call, previous)) = stack.pop() else {
                let mut pending = Vec::new();
                let mut i = events[0].next;
                while i != 0 {
                    if events[i].is_call {
                        pending.push(events[i].op);
                    }
                    i = events[i].next;
                }
                // The first few are enough to start a diagnosis.
                pending.truncate(8);
                return Err(pending);
            };
            let op = events[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = previous;
            unlift(&mut events, call);
            entry = events[call].next;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, answer: Answer, invoked: u64, returned: u64) -> Operation {
        Operation { key: b"k".to_vec(), call, answer, invoked, returned }
    }
    fn v(s: &str) -> Value {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(Call::Put(v("1")), Answer::Written, 0, 1),
            op(Call::Get, Answer::Read(v("1")), 2, 3),
            op(Call::Cas { expected: v("1"), new: v("2") }, Answer::Swapped, 4, 5),
            op(Call::Cas { expected: v("1"), new: v("3") }, Answer::NotSwapped(v("2")), 6, 7),
            op(Call::Put(None), Answer::Written, 8, 9),
            op(Call::Get, Answer::Read(None), 10, 11),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            op(Call::Put(v("1")), Answer::Written, 0, 1),
            op(Call::Put(v("2")), Answer::Written, 2, 3),
            op(Call::Get, Answer::Read(v("1")), 4, 5),
        ];
        assert!(matches!(check(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = vec![
            op(Call::Put(v("1")), Answer::Written, 0, 10),
            op(Call::Put(v("2")), Answer::Written, 1, 9),
            op(Call::Get, Answer::Read(v("1")), 11, 12),
            op(Call::Get, Answer::Read(v("1")), 13, 14),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
        // ... but reads cannot flip back and forth between them.
        let mut flip = h.clone();
        flip.push(op(Call::Get, Answer::Read(v("2")), 15, 16));
        assert!(matches!(check(&flip), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn a_timed_out_write_may_or_may_not_have_happened() {
        let took_effect = vec![
            op(Call::Put(v("1")), Answer::Written, 0, 1),
            op(Call::Put(v("2")), Answer::Unknown, 2, 0),
            op(Call::Get, Answer::Read(v("2")), 10, 11),
        ];
        assert_eq!(check(&took_effect), Verdict::Linearizable);
        let did_not = vec![
            op(Call::Put(v("1")), Answer::Written, 0, 1),
            op(Call::Put(v("2")), Answer::Unknown, 2, 0),
            op(Call::Get, Answer::Read(v("1")), 10, 11),
        ];
        assert_eq!(check(&did_not), Verdict::Linearizable);
        // Once seen, it cannot be unseen.
        let mut unseen = took_effect.clone();
        unseen.push(op(Call::Get, Answer::Read(v("1")), 12, 13));
        assert!(matches!(check(&unseen), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn keys_are_independent() {
        let mut h = vec![op(Call::Put(v("1")), Answer::Written, 0, 1)];
        h.push(Operation { key: b"other".to_vec(), ..op(Call::Get, Answer::Read(None), 2, 3) });
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        // Acknowledged, then a later read does not see it.
        let h = vec![op(Call::Put(v("a")), Answer::Written, 0, 1), op(Call::Get, Answer::Read(None), 2, 3)];
        assert!(matches!(check(&h), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn many_concurrent_operations_stay_tractable() {
        // 8 clients, 200 operations, all consistent with one sequential run
        // of a register with overlapping windows.
        let mut h = Vec::new();
        let mut value: Value = None;
        for i in 0..200u64 {
            let (call, answer) = match i % 3 {
                0 => {
                    value = v(&i.to_string());
                    (Call::Put(value.clone()), Answer::Written)
                }
                1 => (Call::Get, Answer::Read(value.clone())),
                _ => (Call::Cas { expected: v("nope"), new: v("x") }, Answer::NotSwapped(value.clone())),
            };
            // Each op's window overlaps its neighbours' but it takes effect
            // at time 10 * i.
            h.push(op(call, answer, 10 * i - (i > 0) as u64 * 4, 10 * i + 4));
        }
        assert_eq!(check(&h), Verdict::Linearizable);
    }
}
