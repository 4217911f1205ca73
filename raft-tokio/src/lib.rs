//! # raft-tokio: raft-core deployed with tokio
//!
//! One task per node owns the [`raft_core::Node`]; it feeds it peer
//! messages, proposals and timer expiries, and executes its outputs in
//! order, making every `Persist` durable (one write and one fsync per batch
//! of inputs) before any later output runs. Nodes talk over TCP
//! (length-prefixed, versioned postcard frames, see [`wire`]); each node
//! keeps its term, vote and log in a redb file (or in memory, when asked).
//! No Raft rule lives here: they are all in raft-core.
//!
//! ## Embedding
//!
//! In raft-lite's shape (its `dinner` example runs unchanged but for its
//! `use` lines):
//!
//! ```no_run
//! use raft_tokio::{Raft, RaftConfig, RaftParams};
//! # async fn f() {
//! let peers = vec!["127.0.0.1:7001".to_string(), "127.0.0.1:7002".into(), "127.0.0.1:7003".into()];
//! let config = RaftConfig::new(peers.clone(), peers[0].clone(), RaftParams::default(), Some("data/n1".into()));
//! let mut raft = Raft::new(config);
//! let (proposals, mut committed) = raft.run();
//! proposals.send(b"hello".to_vec()).unwrap();        // fire and forget
//! let entry: Vec<u8> = committed.recv().await.unwrap(); // every entry, in log order
//! # }
//! ```
//!
//! Or with errors as values and the full handle:
//!
//! ```no_run
//! # use raft_tokio::{Raft, RaftConfig, RaftParams};
//! # async fn f(config: RaftConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let (node, mut committed) = Raft::start(config).await?;
//! let index = node.propose(b"x=1".to_vec()).await?; // resolves once committed
//! let mut leader = node.watch_leader();               // leader and role
//! leader.changed().await?;
//! println!("{:?}", node.status());                    // term, role, commit, applied, drops
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Proposals
//!
//! [`RaftHandle::propose`] (and [`ProposalSender::propose`]) resolves with
//! the entry's log index once it is committed and queued for the entry
//! receiver. A proposal made at a follower is forwarded to the leader; one
//! made while no leader is known waits at the node (boundedly) until one is.
//! The node proposes again by itself, up to `RaftParams::proposal_retries_max`
//! times, when that cannot duplicate the entry: when the node it reached had
//! just stopped being leader (`Rejection::NotLeader`), and when a new leader
//! overwrote the entry before it committed. So a proposal made during an
//! election is not silently lost. What cannot be known is reported, not
//! guessed: after `RaftParams::proposal_timeout` without an answer (a
//! message lost with a connection, a partition) the call fails with
//! [`ProposeError::Timeout`], and the entry may still commit.
//! [`ProposalSender::send`] is the fire-and-forget form; its failures are
//! only logged.
//!
//! ## Committed entries and restarts
//!
//! The [`EntryReceiver`] yields every committed command in log order, each
//! once per node lifetime (no-op entries are skipped, so indexes may jump).
//! The commit index is not stored, so after a restart the node learns it
//! again from the leader, and then delivers again every committed entry
//! after `RaftParams::applied_index`. With the default of 0 an application
//! sees the whole log again from index 1 after every restart (right for an
//! in-memory state machine, which is rebuilt). An application that keeps its
//! state durably records the last index it applied
//! ([`EntryReceiver::recv_committed`] gives it) and passes it back as
//! `applied_index` at start; entries up to it are not delivered again. A
//! restarted node delivers nothing until a leader is elected and has
//! committed an entry of its own term.
//!
//! The node writes no more than the application reads: when the receiver's
//! queue (`RaftParams::delivery_queue_max` batches) is full, the node waits.
//! An application that does not want the entries drops the receiver.
//!
//! ## Storage
//!
//! `data_dir: Some(dir)` keeps the node's state in `dir/raft.redb`. Each
//! batch of changes is one redb transaction committed with
//! `Durability::Immediate` (one fsync). Term and vote are one record;
//! appends and truncations of one batch commit together or not at all.
//! Every record carries a CRC-32C checked when it is read. A store that
//! cannot be read, fails a check, or belongs to another node stops the start
//! with an error naming the file and the problem; it is never reset. A write
//! that fails stops the node ([`NodeError`]). `data_dir: None` selects the
//! in-memory store (tests, benchmarks): a restart forgets everything.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod config;
mod driver;
#[cfg(feature = "kv")]
pub mod kv;
mod reads;
pub mod record;
mod storage;
mod transport;
mod waiters;
pub mod wire;

pub use api::{
    EntryReceiver, LeaderInfo, NodeError, NodeStatus, ProposalSender, ProposeError, Raft, RaftHandle, StartError,
    TransportDrops,
};
pub use config::{ConfigurationError, RaftConfig, RaftParams, FRAME_OVERHEAD_BYTES};
pub use raft_core::{Committed, DropCounters, LogIndex, NodeId, RoleKind, Term};
pub use reads::ReadError;
pub use storage::{StorageError, StorageProblem, StoreIdentity, STORE_FILE};
