//! # raft-tokio: raft-core deployed with tokio
//!
//! One task per node owns the [`raft_core::Node`]; it feeds it peer
//! messages, proposals and timer expiries, and executes its outputs in
//! order, making every `Persist` durable (one write and one fsync per batch
//! of inputs) before any later output runs. Nodes talk over TCP
//! (length-prefixed, versioned postcard frames, see [`wire`]), or, when
//! they share a process (tests, benchmarks), over channels that carry
//! raft-core's messages as they are ([`inprocess`]); each node
//! keeps its term, vote and log in a write-ahead log file (or in memory, when asked),
//! and its snapshots as files beside it. No Raft rule lives here: they are
//! all in raft-core.
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
//! the entry's log index once it is committed and handed to the entry
//! receiver. A proposal made at a follower is forwarded to the leader; one
//! made while no leader is known waits at the node (boundedly) until one is.
//! The node proposes again by itself, up to `RaftParams::proposal_retries_max`
//! times, when that cannot duplicate the entry: when the node it reached had
//! just stopped being leader (`Rejection::NotLeader`), and when another
//! entry was committed at its index (raft-core's `ProposalFate::Lost`). So a
//! proposal made during an election is not silently lost.
//! [`ProposalSender::send`] is the fire-and-forget form; its failures are
//! only logged.
//!
//! ### Every proposal is answered by its deadline
//!
//! A proposal's deadline is `RaftParams::proposal_timeout` after the call.
//! raft-core does not answer every proposal: one forwarded to a leader that
//! dies, or whose `Forward` or answer is lost with a connection, gets no
//! output at all. The runtime answers it anyway, by the deadline (plus at
//! most one 100 ms sweep of the node loop). The outcomes:
//!
//! - `Ok(index)`: committed at `index`, and handed to the entry receiver.
//! - [`ProposeError::Busy`], [`ProposeError::NoLeader`],
//!   [`ProposeError::NotLeader`], [`ProposeError::Lost`],
//!   [`ProposeError::TooLarge`]: not committed, and it never will be (the
//!   node never handed it to raft-core, or the leader refused it, or another
//!   entry was committed at its index). Retrying cannot duplicate it.
//! - [`ProposeError::Timeout`]: **unknown**. The proposal may have been
//!   appended by a leader that then died or was cut off; it may or may not
//!   commit later, and if it does it is delivered like any other entry. A
//!   caller that must know reads it back, or makes its commands idempotent
//!   (as raft-kv's client sessions do) and retries.
//! - [`ProposeError::Stopped`]: the node stopped; unknown as for `Timeout`
//!   if the proposal had been taken.
//!
//! A proposal that waited in the node's queue until its deadline (the node
//! stops taking proposals while its application lags, below) is answered
//! `Busy` and never proposed.
//!
//! ## Pre-vote, check-quorum and leadership transfer
//!
//! Both of raft-core's extensions are on by default here
//! (`RaftParams::pre_vote`, `RaftParams::check_quorum`; raft-kv's cluster
//! file may switch them off). With pre-vote (Raft thesis §9.6), a node that
//! was paused, cut off or restarted asks before it changes its term, so it
//! does not depose a live leader when it comes back. With check-quorum
//! (§6.2), a leader that has not heard from a majority for an election
//! timeout steps down: a leader cut off in a minority stops saying it leads
//! within two election timeouts, and its callers learn that no leader is
//! known instead of waiting for their deadline.
//!
//! [`RaftHandle::transfer_leadership`] hands the leadership to another
//! voter (§3.10) and resolves once this node knows it as leader. While the
//! transfer runs (one election timeout at most) the leader takes no
//! proposals; the runtime proposes them again 100 ms later, at the new
//! leader, without counting an attempt.
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
//! ### A slow application never stalls the node
//!
//! The node loop never waits for the application. It hands over at most
//! `RaftParams::unapplied_entries_max` entries that the application has not
//! applied yet (raft-core's delivery window), and more as it applies them.
//! An entry counts as applied once the application asks the receiver for
//! the next one (or drops the receiver): so the usual loop
//! `while let Some(e) = entries.recv_committed().await { apply(e) }` reports
//! each entry once `apply` returned. While the application lags, the node
//! goes on with messages and timers (a leader keeps its followers), and
//! stops taking new proposals only while its commit index is more than two
//! windows ahead of the application; callers then wait in the bounded
//! proposal queue, until their deadline at most. An application that does
//! not want the entries drops the receiver: everything then counts as
//! applied.
//!
//! ## Snapshots
//!
//! An application whose log would grow without end takes snapshots of its
//! state machine; raft-core then compacts the log, keeping
//! `RaftParams::trailing_entries` entries (default 1024) before the
//! snapshot for followers that lag a little. It reads with
//! [`EntryReceiver::recv_event`], which yields [`Event::Entry`] for each
//! committed command and [`Event::Restore`] when it must replace its whole
//! state by a snapshot's:
//!
//! - at a restart, when the node holds a snapshot beyond
//!   `RaftParams::applied_index`: the restore comes before any entry, and
//!   the entries after the snapshot follow;
//! - when a leader sent its snapshot because this node lagged behind the
//!   leader's compacted log (after a long stop, a partition, a lost disk).
//!
//! [`RaftHandle::save_snapshot`]`(index, |w| ...)` takes one: the closure
//! writes the state at `index` (an index the application applied) as any
//! bytes it likes; the runtime writes them to a temporary file while it
//! computes their CRC-32, fsyncs, renames, fsyncs the directory, and only
//! then tells raft-core, which records the snapshot in the log's file.
//! [`RaftHandle::snapshot_writer`] is the same in two steps, for writing
//! from another thread. The [`SnapshotReader`] of a restore reads those
//! bytes back (blocking reads: use `spawn_blocking` for large ones); reading
//! to the end checks the checksum.
//!
//! A leader streams its snapshot to a follower that needs it on a
//! connection of its own, in checked chunks of 1 MiB, read from the file
//! and written to the follower's file one at a time: neither side holds the
//! snapshot in memory, and the node loops never wait for the transfer. A
//! broken transfer is retried by the next heartbeat, resuming where the
//! follower's partial file ends. Both sides log each transfer at INFO
//! (size, time) and a failure at WARN; [`NodeStatus`] counts them.
//!
//! Applications that never snapshot keep using [`EntryReceiver::recv`] or
//! [`EntryReceiver::recv_committed`]. If a leader's snapshot reaches such an
//! application (other nodes snapshot, and this one lagged), the node stops
//! with [`NodeError::RestoreNotHandled`] rather than let its state miss the
//! snapshot's entries.
//!
//! ```
//! use raft_tokio::{Event, LogIndex, NodeId, Raft, RaftConfig, RaftParams};
//! use std::io::{Read, Write};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let dir = std::env::temp_dir().join(format!("raft-tokio-doc-{}", std::process::id()));
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let members = vec![(NodeId(1), listener.local_addr()?.to_string())];
//! let config = |members| RaftConfig::with_ids(members, NodeId(1), RaftParams::default(), Some(dir.clone()));
//! let (node, mut events) = Raft::start(config(members.clone()).with_listener(listener)).await?;
//!
//! // The application: the sum of the numbers proposed.
//! let mut sum = 0u64;
//! for n in 1..=3u64 {
//!     node.propose(n.to_string().into_bytes()).await?;
//! }
//! let mut applied = LogIndex(0);
//! while sum < 6 {
//!     if let Some(Event::Entry(e)) = events.recv_event().await {
//!         sum += String::from_utf8(e.data)?.parse::<u64>()?;
//!         applied = e.index;
//!     }
//! }
//! node.save_snapshot(applied, |w| w.write_all(&sum.to_le_bytes())).await?;
//! node.shutdown().await?;
//!
//! // Restarted, the node hands the application its snapshot first.
//! let (node, mut events) = Raft::start(config(members)).await?;
//! let Some(Event::Restore(mut snapshot)) = events.recv_event().await else { panic!("a restore first") };
//! assert_eq!(snapshot.index(), applied);
//! let mut bytes = Vec::new();
//! snapshot.read_to_end(&mut bytes)?; // small: no need for spawn_blocking
//! sum = u64::from_le_bytes(bytes.as_slice().try_into()?);
//! assert_eq!(sum, 6);
//! node.shutdown().await?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! ## Membership changes
//!
//! The members are a [`Membership`] of voters and learners, each with the
//! address it was added with; it lives in the log (raft-core's
//! configuration entries), not in the configuration, which gives only the
//! initial members. At the leader, [`RaftHandle::add_learner`],
//! [`RaftHandle::promote`] and [`RaftHandle::remove_member`] each return
//! the new membership once the change is committed, or a
//! [`ChangeError`] (see [`members`] for how a change's fate is known); a
//! refusal for a passing reason (the leader has not committed an entry of
//! its term yet, another change is not committed yet) is asked again every
//! 100 ms until the deadline. [`RaftHandle::membership`] is the one in
//! effect (the latest in the log, which raft-core uses as soon as it is
//! appended), [`RaftHandle::committed_membership`] the committed one.
//!
//! The TCP transport follows the membership in effect: it connects to each
//! member added at the address recorded for it and stops sending to each
//! member removed (see the transport's module documentation). A node
//! started empty with [`RaftConfig::joining`] knows only itself, as a
//! learner; the leader that adds it sends it the log, or its snapshot when
//! the entries it needs are compacted. With `RaftParams::promote_learners`
//! (the default), the leader promotes a learner to voter once its log is
//! within [`PROMOTE_LAG_MAX`] entries of the leader's: operator policy,
//! in the runtime; raft-core decides only whether a change may be made.
//! Each change is logged at INFO where it is proposed, when it takes
//! effect on each node (members added, removed, promoted) and when it
//! commits.
//!
//! Replacing a dead node: start the new one empty with `joining`, add it
//! as a learner, let it be promoted, remove the dead one (raft-kv's README
//! section shows the three commands).
//!
//! ## A node that lost its disk
//!
//! A node whose data directory was wiped must not come back as a voter: it
//! would vote and acknowledge as if it had never promised anything, and
//! committed entries could be lost. `RaftParams::initial_cluster_state`
//! says whether the cluster is [`ClusterState::New`] (the default, which
//! every first start needs) or [`ClusterState::Existing`], with which an
//! empty store stops the start with
//! [`StartError::EmptyStoreInExistingCluster`] naming the data directory.
//! Restart nodes with `Existing` once the cluster has formed. A leader that
//! sees a follower's log end before what it had acknowledged logs it at
//! WARN and counts it (`NodeStatus::followers_regressed`).
//!
//! ## Storage
//!
//! `data_dir: Some(dir)` keeps the node's state in `dir/raft.wal`, a
//! write-ahead log of raft-core's own persists. Each write (the batches the
//! storage thread takes together) is one record appended with one
//! `fdatasync`: term and vote, the membership, appends, truncations, the
//! snapshot's metadata and the compaction point of one batch are durable
//! together or not at all. Every record carries a CRC-32C checked when it
//! is read; a last record that a crash cut short is dropped, any other
//! damage stops the start with an error naming the file and the offset;
//! the file is rewritten without what compaction removed once it grows
//! (see the `storage` module's source for the format). Snapshots are
//! files in `dir/snapshots` (see [`snapshots`]); the one to load at start is
//! the one the store records, checked whole, and every other file there is
//! removed (an unfinished write or transfer, a snapshot a crash left
//! unrecorded, an old one). A damaged, torn or missing snapshot file stops
//! the start with an error naming it. A new store starts with the configured members (with their
//! addresses) and stores them in its first batch; later changes are
//! configuration entries in the log, and a snapshot records the
//! membership at its index, so a restarted node starts with the membership
//! it had, whatever its configuration lists. A store that cannot be read, fails a check, or
//! belongs to another node stops the start with an error naming the file
//! and the problem; it is never reset. A write that fails stops the node
//! ([`NodeError`]), and so does a broken invariant of raft-core, whose
//! checks run in release builds too ([`NodeError::Panicked`]).
//! `data_dir: None` selects raft-core's in-memory store (tests,
//! benchmarks): a restart forgets everything. Its snapshots go to a private
//! temporary directory, removed when the node stops.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod applied;
mod config;
mod driver;
pub mod inprocess;
#[cfg(feature = "kv")]
pub mod kv;
pub mod members;
mod network;
mod reads;
pub mod record;
mod snapshot_api;
pub mod snapshots;
mod storage;
mod transfer;
mod transport;
mod waiters;
pub mod wire;

pub use api::{
    EntryReceiver, Event, LeaderInfo, NodeError, NodeStatus, ProposalSender, ProposeError, Raft, RaftHandle,
    StartError, TransferError, TransportDrops,
};
pub use config::{ClusterState, ConfigurationError, RaftConfig, RaftParams, FRAME_OVERHEAD_BYTES};
pub use inprocess::InProcessNetwork;
pub use members::{ChangeError, PROMOTE_LAG_MAX};
pub use raft_core::{
    Change, ChangeRejection, Committed, DropCounters, LogIndex, Membership, NodeId, RoleKind, SnapshotMeta, Term,
    TransferRejection,
};
pub use reads::ReadError;
pub use snapshot_api::{SnapshotError, SnapshotWriter};
pub use snapshots::{SnapshotFileProblem, SnapshotReader, SNAPSHOT_DIR};
pub use storage::{StorageError, StorageProblem, StoreIdentity, STORE_FILE};
pub use transport::{raft_address, HANDSHAKES_PENDING_MAX};
