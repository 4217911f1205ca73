//! The replicated register of the `kv` model: model clients that write and
//! read one register through the Raft log, and the commands they put in it.
//!
//! Each client runs its operations one after the other, sending operation
//! `k` to server `(client + k) % servers`, so that a client's read goes to a
//! different server than its write: the case where a read served from a
//! lagging server's local state would be stale.

use crate::actor::{Durable, Msg, Node};
use stateright::actor::{Id, Out};
use std::fmt;

/// A register value. 0 is the initial value; client `c` writes `c`
/// (clients come after the servers, so `c` is never 0).
pub type Value = u8;

/// A command in the replicated log, encoded as short ASCII so that the
/// explorer shows it as text: `w3=3` (client 3 writes 3), `r3` (client 3 reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Write `value` for `client`.
    Write {
        /// The client's actor index.
        client: u8,
        /// The value written.
        value: Value,
    },
    /// Read for `client`.
    Read {
        /// The client's actor index.
        client: u8,
    },
}

impl Command {
    /// The log bytes of this command.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Command::Write { client, value } => format!("w{client}={value}").into_bytes(),
            Command::Read { client } => format!("r{client}").into_bytes(),
        }
    }

    /// Parses log bytes; `None` for anything that is not a kv command (the
    /// raft model's start proposals, for example).
    pub fn decode(data: &[u8]) -> Option<Command> {
        let text = std::str::from_utf8(data).ok()?;
        if let Some(rest) = text.strip_prefix('w') {
            let (client, value) = rest.split_once('=')?;
            Some(Command::Write { client: client.parse().ok()?, value: value.parse().ok()? })
        } else if let Some(rest) = text.strip_prefix('r') {
            Some(Command::Read { client: rest.parse().ok()? })
        } else {
            None
        }
    }
}

/// One operation a client performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Write the client's own value.
    Write,
    /// Read the register.
    Read,
}

/// A model client: its operations, in order, and the number of servers.
#[derive(Clone, Debug)]
pub struct Client {
    /// The operations, performed one at a time.
    pub ops: Vec<Op>,
    /// How many servers there are (actors `0..servers`).
    pub servers: usize,
}

/// How far a client has got: the index of the operation in flight (or
/// `ops.len()` when done).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientState {
    /// The operation awaiting its answer.
    pub next: u8,
}

impl fmt::Debug for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client at op {}", self.next)
    }
}

impl Client {
    /// A client starts its first operation. Clients keep no durable state;
    /// one that crashes and restarts gives up (its operation in flight stays
    /// incomplete, which linearizability allows), because starting over
    /// would invoke a second operation while the first is pending. The empty
    /// storage saved at start is what tells a restart from a start.
    pub(crate) fn start(&self, id: Id, restarted: bool, o: &mut Out<Node>) -> ClientState {
        if restarted {
            return ClientState { next: u8::MAX };
        }
        o.save(std::sync::Arc::new(Durable::new()));
        self.send_op(id, 0, o);
        ClientState { next: 0 }
    }

    pub(crate) fn on_msg(&self, id: Id, state: &ClientState, msg: Msg, o: &mut Out<Node>) -> Option<ClientState> {
        let expected = self.ops.get(usize::from(state.next))?;
        let answers = matches!((expected, &msg), (Op::Write, Msg::PutOk) | (Op::Read, Msg::GetOk(..)));
        if !answers {
            return None;
        }
        let next = state.next + 1;
        self.send_op(id, next, o);
        Some(ClientState { next })
    }

    fn send_op(&self, id: Id, k: u8, o: &mut Out<Node>) {
        let Some(op) = self.ops.get(usize::from(k)) else { return };
        let server = Id::from((usize::from(id) + usize::from(k)) % self.servers);
        let msg = match op {
            Op::Write => Msg::Put(usize::from(id) as Value),
            Op::Read => Msg::Get,
        };
        o.send(server, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_other_bytes_are_not_commands() {
        for c in [Command::Write { client: 3, value: 3 }, Command::Read { client: 4 }] {
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        assert_eq!(Command::decode(b"w3=3"), Some(Command::Write { client: 3, value: 3 }));
        assert_eq!(Command::decode(b"a"), None);
        assert_eq!(Command::decode(b"wx=1"), None);
    }
}
