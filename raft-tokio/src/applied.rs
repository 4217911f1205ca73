//! The application's applied index, from the entry receiver to the node
//! loop.
//!
//! The receiver reports every entry it hands out (an entry counts as
//! applied once the application asks for the next one), so this is written
//! once per committed entry on every node: the hottest cross-task signal of
//! the runtime. A `watch` channel costs a lock per notified slot on every
//! write; here a write is one atomic store and, when the node loop may be
//! asleep, one `Notify` permit (a compare-and-swap when it is busy). The
//! loop reads the latest index after every flush, so a wake-up that finds
//! nothing new costs one pass.

use raft_core::LogIndex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

struct Shared {
    index: AtomicU64,
    /// The entry receiver was dropped: nothing more will be applied.
    closed: AtomicBool,
    notify: Notify,
}

/// The entry receiver's side.
pub(crate) struct AppliedSender(Arc<Shared>);

/// The node loop's side.
pub(crate) struct AppliedReceiver(Arc<Shared>);

/// A pair starting at `index`.
pub(crate) fn channel(index: LogIndex) -> (AppliedSender, AppliedReceiver) {
    let shared =
        Arc::new(Shared { index: AtomicU64::new(index.0), closed: AtomicBool::new(false), notify: Notify::new() });
    (AppliedSender(shared.clone()), AppliedReceiver(shared))
}

impl AppliedSender {
    /// The application applied everything through `index`.
    pub fn send(&self, index: LogIndex) {
        self.0.index.store(index.0, Ordering::Release);
        self.0.notify.notify_one();
    }
}

impl Drop for AppliedSender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }
}

impl AppliedReceiver {
    /// The last index reported.
    pub fn get(&self) -> LogIndex {
        LogIndex(self.0.index.load(Ordering::Acquire))
    }

    /// Waits for a report (or the sender's drop) since the last wake-up.
    pub async fn changed(&self) {
        self.0.notify.notified().await;
    }

    /// Whether the entry receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}
