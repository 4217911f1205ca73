//! The one seam between the node loop and the way messages travel: TCP
//! ([`crate::transport`]) or channels in one process ([`crate::inprocess`]).
//! The driver calls these methods and nothing else of either.

use crate::inprocess::InProcessTransport;
use crate::transport::Transport;
use raft_core::{InstallSnapshot, Membership, Message, NodeId};
use tokio::task::JoinHandle;

/// The transport a node runs on.
pub(crate) enum Network {
    /// Other processes, over TCP.
    Tcp(Transport),
    /// Other nodes of this process, over channels.
    InProcess(InProcessTransport),
}

impl Network {
    /// Sends `message` to `to`, or drops (and counts) it; never waits.
    pub fn send(&mut self, to: NodeId, message: Message) {
        match self {
            Network::Tcp(t) => t.send(to, message),
            Network::InProcess(t) => t.send(to, message),
        }
    }

    /// Starts moving the snapshot `message` names, with its data, to `to`.
    pub fn send_snapshot(&self, to: NodeId, message: InstallSnapshot) -> JoinHandle<()> {
        match self {
            Network::Tcp(t) => t.send_snapshot(to, message),
            Network::InProcess(t) => t.send_snapshot(to, message),
        }
    }

    /// Follows the membership in effect: reach its members, and no one
    /// removed. The in-process network reaches every node by its id, so
    /// only TCP has anything to do.
    pub fn set_members(&mut self, membership: &Membership) {
        if let Network::Tcp(t) = self {
            t.set_members(membership);
        }
    }

    /// Stops sending and receiving; peers see this node as gone.
    pub async fn stop(self) {
        match self {
            Network::Tcp(t) => t.stop().await,
            Network::InProcess(t) => t.stop(),
        }
    }
}
