//! Snapshots end to end, on loopback: applications that snapshot often
//! (few trailing entries), followers caught up by InstallSnapshot, restarts
//! from a snapshot and the log after it, damaged snapshot files, transfers
//! broken mid-way, and nodes that lost their disk.

mod common;

use common::{wait_until, CLUSTER_ID, PATIENCE};
use raft_tokio::{
    ClusterState, EntryReceiver, Event, LogIndex, NodeError, NodeId, Raft, RaftConfig, RaftHandle, RaftParams,
    SnapshotError, SnapshotFileProblem, StartError, StorageProblem, SNAPSHOT_DIR,
};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a test application holds: every command it applied, with its index.
#[derive(Default)]
struct AppState {
    entries: Vec<(u64, Vec<u8>)>,
    /// The index of every snapshot it restored, in order.
    restores: Vec<u64>,
    /// Whether the first event of this life was a restore.
    first_was_restore: Option<bool>,
    /// What went wrong in the application task (checked by the tests).
    errors: Vec<String>,
    snapshots_taken: u64,
}

type App = Arc<Mutex<AppState>>;

/// The application's snapshot format: the number of entries, each as index,
/// length and bytes; then `padding` bytes, which make the snapshot as large
/// as a test needs without making the log large.
fn encode(entries: &[(u64, Vec<u8>)], padding: usize, w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(&(entries.len() as u64).to_le_bytes())?;
    for (index, data) in entries {
        w.write_all(&index.to_le_bytes())?;
        w.write_all(&(data.len() as u64).to_le_bytes())?;
        w.write_all(data)?;
    }
    let block = [0x5au8; 64 * 1024];
    let mut left = padding;
    while left > 0 {
        let n = left.min(block.len());
        w.write_all(&block[..n])?;
        left -= n;
    }
    Ok(())
}

fn decode(r: &mut dyn Read) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
    let mut word = [0u8; 8];
    r.read_exact(&mut word)?;
    let n = u64::from_le_bytes(word);
    let mut entries = Vec::new();
    for _ in 0..n {
        r.read_exact(&mut word)?;
        let index = u64::from_le_bytes(word);
        r.read_exact(&mut word)?;
        let mut data = vec![0u8; u64::from_le_bytes(word) as usize];
        r.read_exact(&mut data)?;
        entries.push((index, data));
    }
    // Read the padding too, so that the reader checks the whole file.
    std::io::copy(r, &mut std::io::sink())?;
    Ok(entries)
}

/// Applies events; snapshots after every `every` entries (0: never).
async fn run_app(node: RaftHandle, mut events: EntryReceiver, app: App, every: u64, padding: usize) {
    let mut since = 0;
    while let Some(event) = events.recv_event().await {
        app.lock().unwrap().first_was_restore.get_or_insert(matches!(event, Event::Restore(_)));
        match event {
            Event::Entry(c) => {
                let index = c.index;
                app.lock().unwrap().entries.push((index.0, c.data));
                since += 1;
                if every == 0 || since < every {
                    continue;
                }
                since = 0;
                let entries = app.lock().unwrap().entries.clone();
                match node.save_snapshot(index, |w| encode(&entries, padding, w)).await {
                    Ok(meta) => {
                        assert_eq!(meta.index, index);
                        app.lock().unwrap().snapshots_taken += 1;
                    }
                    Err(SnapshotError::Superseded { .. } | SnapshotError::Stopped) => {}
                    Err(e) => app.lock().unwrap().errors.push(format!("save_snapshot({index}): {e}")),
                }
            }
            Event::Restore(mut reader) => {
                let index = reader.index().0;
                let read = tokio::task::spawn_blocking(move || decode(&mut reader)).await.unwrap();
                let mut app = app.lock().unwrap();
                match read {
                    Ok(entries) => {
                        assert!(entries.last().is_none_or(|(i, _)| *i <= index));
                        app.entries = entries;
                        app.restores.push(index);
                    }
                    Err(e) => app.errors.push(format!("restore at {index}: {e}")),
                }
            }
        }
    }
}

/// A cluster whose applications snapshot.
struct Cluster {
    members: Vec<(NodeId, String)>,
    /// The listener address of each node (its configured address may be a
    /// proxy in front of it).
    listen: Vec<String>,
    nodes: Vec<Option<RaftHandle>>,
    apps: Vec<App>,
    dir: tempfile::TempDir,
    disk: bool,
    params: RaftParams,
    every: u64,
    padding: usize,
}

fn params() -> RaftParams {
    // Few entries in flight to a follower: the leader's queue to a stopped
    // follower then holds only the first of the entries it missed, not all
    // (its reconnection delivers that queue), so a follower that missed
    // more than the leader keeps must be caught up by a snapshot.
    RaftParams { trailing_entries: 5, cluster_id: Some(CLUSTER_ID), inflight_entries_max: 16, ..RaftParams::default() }
}

impl Cluster {
    async fn start(n: usize, disk: bool, every: u64, padding: usize) -> Cluster {
        let listeners = bind(n);
        let configured = addrs(&listeners);
        Cluster::start_on(listeners, configured, disk, every, padding).await
    }

    /// `start`, on these listeners, with `configured[i]` as node i's address
    /// in the member list (a proxy's, to break its connections).
    async fn start_on(
        listeners: Vec<std::net::TcpListener>,
        configured: Vec<String>,
        disk: bool,
        every: u64,
        padding: usize,
    ) -> Cluster {
        let listen = addrs(&listeners);
        let members = configured.into_iter().enumerate().map(|(i, a)| (NodeId(i as u64 + 1), a)).collect();
        let mut cluster = Cluster {
            members,
            listen,
            nodes: Vec::new(),
            apps: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
            disk,
            params: params(),
            every,
            padding,
        };
        for (i, l) in listeners.into_iter().enumerate() {
            let app = App::default();
            let node = cluster.launch(i, Some(l), app.clone(), cluster.params.clone()).await.expect("starts");
            cluster.nodes.push(Some(node));
            cluster.apps.push(app);
        }
        cluster
    }

    fn data_dir(&self, i: usize) -> Option<PathBuf> {
        self.disk.then(|| self.dir.path().join(format!("n{}", i + 1)))
    }

    fn config(&self, i: usize, listener: Option<std::net::TcpListener>, params: RaftParams) -> RaftConfig {
        let params = RaftParams { seed: Some(500 + i as u64), ..params };
        let listener = listener.unwrap_or_else(|| std::net::TcpListener::bind(&self.listen[i]).unwrap());
        RaftConfig::with_ids(self.members.clone(), NodeId(i as u64 + 1), params, self.data_dir(i))
            .with_listener(listener)
    }

    async fn launch(
        &self,
        i: usize,
        listener: Option<std::net::TcpListener>,
        app: App,
        params: RaftParams,
    ) -> Result<RaftHandle, StartError> {
        let (node, events) = Raft::start(self.config(i, listener, params)).await?;
        tokio::spawn(run_app(node.clone(), events, app, self.every, self.padding));
        Ok(node)
    }

    fn node(&self, i: usize) -> &RaftHandle {
        self.nodes[i].as_ref().expect("running")
    }

    async fn stop(&mut self, i: usize) {
        self.nodes[i].take().expect("running").shutdown().await.expect("clean shutdown");
    }

    /// Restarts node i; its application starts empty, as after a crash.
    async fn restart(&mut self, i: usize) {
        let app = App::default();
        self.nodes[i] = Some(self.launch(i, None, app.clone(), self.params.clone()).await.expect("restarts"));
        self.apps[i] = app;
    }

    async fn leader(&self) -> usize {
        let mut found = 0;
        wait_until("a leader known to every running node", || {
            let running: Vec<&RaftHandle> = self.nodes.iter().flatten().collect();
            let leaders: Vec<_> = running.iter().filter(|n| n.leader().role == raft_tokio::RoleKind::Leader).collect();
            if leaders.len() != 1 {
                return false;
            }
            found = (leaders[0].id().0 - 1) as usize;
            running.iter().all(|n| n.leader().leader == Some(leaders[0].id()))
        })
        .await;
        found
    }

    fn entries(&self, i: usize) -> Vec<(u64, Vec<u8>)> {
        self.apps[i].lock().unwrap().entries.clone()
    }

    /// Waits until every running node's application holds `n` commands,
    /// the same ones; checks that no application saw an error.
    async fn converge(&self, n: usize) -> Vec<(u64, Vec<u8>)> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect();
        wait_until(&format!("{n} commands applied on every running node"), || {
            running.iter().all(|&i| self.apps[i].lock().unwrap().entries.len() >= n)
        })
        .await;
        let first = self.entries(running[0]);
        assert_eq!(first.len(), n);
        for &i in &running {
            assert_eq!(self.entries(i), first, "node {} holds other commands than node {}", i + 1, running[0] + 1);
            assert_eq!(self.apps[i].lock().unwrap().errors, Vec::<String>::new(), "node {}", i + 1);
        }
        first
    }

    async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

fn bind(n: usize) -> Vec<std::net::TcpListener> {
    (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect()
}

fn addrs(listeners: &[std::net::TcpListener]) -> Vec<String> {
    listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect()
}

async fn propose(node: &RaftHandle, tag: &str, count: usize) {
    // In rounds of 20, so that the applications snapshot along the way.
    for round in 0..count.div_ceil(20) {
        let mut calls = Vec::new();
        for k in round * 20..((round + 1) * 20).min(count) {
            let (node, data) = (node.clone(), format!("{tag}-{k}").into_bytes());
            calls.push(tokio::spawn(async move { node.propose(data).await }));
        }
        for c in calls {
            c.await.unwrap().expect("commits");
        }
    }
}

fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(SNAPSHOT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Stops follower `lagging`, runs `count` commands past it at the leader
/// until the leader has compacted its log past the follower's end, and
/// returns the leader.
async fn compact_past(cluster: &mut Cluster, lagging: usize, count: usize) -> usize {
    let leader = cluster.leader().await;
    assert_ne!(leader, lagging);
    let end = cluster.node(lagging).status().raft.last_log_index;
    cluster.stop(lagging).await;
    propose(cluster.node(leader), "past", count).await;
    // The applications snapshot as they apply, a little behind the commits.
    wait_until("the leader compacted its log past the stopped follower's end", || {
        cluster.node(leader).status().raft.first_log_index.0 > end.0 + 1
    })
    .await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_compacted_log_is_caught_up_by_a_snapshot() {
    let mut cluster = Cluster::start(3, true, 10, 0).await;
    let leader = cluster.leader().await;
    propose(cluster.node(leader), "before", 10).await;
    let lagging = (leader + 1) % 3;
    cluster.converge(10).await;
    let leader = compact_past(&mut cluster, lagging, 120).await;
    cluster.restart(lagging).await;
    let all = cluster.converge(130).await;
    {
        let app = cluster.apps[lagging].lock().unwrap();
        assert!(!app.restores.is_empty(), "the lagging follower restored a snapshot");
        assert_eq!(app.first_was_restore, Some(true), "restore first: its own at restart, or the leader's");
    }
    assert!(cluster.node(lagging).status().snapshots_received >= 1);
    assert!(cluster.node(leader).status().snapshots_sent >= 1);
    assert!(all.iter().any(|(_, data)| data == b"past-119"));
    // Proposals go on through the caught-up follower.
    propose(cluster.node(lagging), "after", 5).await;
    cluster.converge(135).await;
    // Every node holds one snapshot file: older ones were removed.
    for i in 0..3 {
        let files = snapshot_files(&cluster.data_dir(i).unwrap());
        assert_eq!(files.len(), 1, "node {}: {files:?}", i + 1);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_nodes_take_and_send_snapshots_too() {
    let mut cluster = Cluster::start(3, false, 10, 0).await;
    let leader = cluster.leader().await;
    propose(cluster.node(leader), "before", 10).await;
    cluster.converge(10).await;
    let lagging = (leader + 2) % 3;
    compact_past(&mut cluster, lagging, 80).await;
    // An in-memory node comes back empty: only a snapshot can catch it up.
    cluster.restart(lagging).await;
    cluster.converge(90).await;
    assert_eq!(cluster.apps[lagging].lock().unwrap().first_was_restore, Some(true));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_its_snapshot_and_the_log_after_it() {
    let mut cluster = Cluster::start(3, true, 10, 0).await;
    let leader = cluster.leader().await;
    propose(cluster.node(leader), "x", 47).await;
    let before = cluster.converge(47).await;
    let node = (leader + 1) % 3;
    let status = cluster.node(node).status().raft;
    assert!(status.snapshot_index.0 >= 40, "{status:?}");
    cluster.stop(node).await;
    cluster.restart(node).await;
    // Delivered again from the snapshot and then the log suffix: the
    // restore comes first, before any entry.
    wait_until("the restarted node applied everything again", || cluster.entries(node) == before).await;
    {
        let app = cluster.apps[node].lock().unwrap();
        assert_eq!(app.first_was_restore, Some(true));
        assert_eq!(app.restores.len(), 1);
        assert!(app.restores[0] >= status.snapshot_index.0, "{:?}", app.restores);
    }
    assert_eq!(cluster.node(node).status().snapshots_received, 0, "recovered from its own files");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_torn_snapshot_file_is_refused_naming_it() {
    let cluster = Cluster::start(1, true, 5, 1000).await;
    propose(cluster.node(0), "x", 12).await;
    cluster.converge(12).await;
    let dir = cluster.data_dir(0).unwrap();
    let mut cluster = cluster;
    cluster.stop(0).await;
    let files = snapshot_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = dir.join(SNAPSHOT_DIR).join(&files[0]);
    let bytes = std::fs::read(&file).unwrap();

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    std::fs::write(&file, &flipped).unwrap();
    let err = cluster.launch(0, None, App::default(), cluster.params.clone()).await.map(|_| ()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "names the file: {text}");
    assert!(
        matches!(&err, StartError::Storage(e) if matches!(e.problem, StorageProblem::Snapshot(SnapshotFileProblem::Checksum { .. }))),
        "{err:?}"
    );

    std::fs::write(&file, &bytes[..bytes.len() - 7]).unwrap();
    let err = cluster.launch(0, None, App::default(), cluster.params.clone()).await.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
    assert!(err.to_string().contains("torn"), "{err}");

    std::fs::remove_file(&file).unwrap();
    let err = cluster.launch(0, None, App::default(), cluster.params.clone()).await.map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    // Put back whole, it starts again.
    std::fs::write(&file, &bytes).unwrap();
    cluster.restart(0).await;
    cluster.converge(12).await;
    cluster.shutdown().await;
}

/// A proxy that forwards to `target` and breaks, once, the first connection
/// that has carried `break_after` bytes towards it; `total` counts the bytes
/// it forwarded towards it.
async fn breaking_proxy(target: String, break_after: u64, broken: Arc<AtomicU64>, total: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (target, broken, total) = (target.clone(), broken.clone(), total.clone());
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                let (mut out_read, mut out_write) = outbound.into_split();
                let (mut in_read, mut in_write) = inbound.split();
                let forward = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut carried = 0u64;
                    loop {
                        let n = tokio::io::AsyncReadExt::read(&mut in_read, &mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        carried += n as u64;
                        if carried > break_after && broken.fetch_add(1, Ordering::SeqCst) == 0 {
                            return; // cut mid-way, once
                        }
                        if tokio::io::AsyncWriteExt::write_all(&mut out_write, &buf[..n]).await.is_err() {
                            return;
                        }
                        total.fetch_add(n as u64, Ordering::SeqCst);
                    }
                };
                let back = tokio::io::copy(&mut out_read, &mut in_write);
                tokio::select! {
                    () = forward => {}
                    _ = back => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_broken_mid_way_is_resumed_by_the_next_attempt() {
    // Node 3's peers reach it through a proxy that cuts the first
    // connection carrying more than 3 MiB: the snapshot transfer (6 MiB of
    // padding: six chunks and more), never a message connection.
    let (broken, total) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let listeners = bind(3);
    let mut configured = addrs(&listeners);
    configured[2] = breaking_proxy(configured[2].clone(), 3 << 20, broken.clone(), total.clone()).await;
    let mut cluster = Cluster::start_on(listeners, configured, true, 20, 6 << 20).await;
    let lagging = 2;
    let mut leader = cluster.leader().await;
    if leader == lagging {
        cluster.node(leader).transfer_leadership(NodeId(1)).await.expect("hands over");
        leader = cluster.leader().await;
    }
    propose(cluster.node(leader), "before", 5).await;
    cluster.converge(5).await;
    let leader = compact_past(&mut cluster, lagging, 60).await;
    // The leader's application snapshots at its 20th, 40th and 60th
    // command: once the last is saved, the snapshot no longer changes, so
    // the retry sends the same one and can resume it.
    wait_until("the leader's last snapshot", || cluster.apps[leader].lock().unwrap().snapshots_taken == 3).await;
    let before = total.load(Ordering::SeqCst);
    cluster.restart(lagging).await;
    cluster.converge(65).await;
    // The cut came past 3 MiB, so the follower kept 2 MiB at least: a
    // resumed retry sends at most 4 MiB more, a restarted one 6.
    let carried = total.load(Ordering::SeqCst) - before;
    assert!(carried < (15 << 20) / 2, "the retry resumed: {carried} bytes in all");
    assert!(broken.load(Ordering::SeqCst) >= 1, "the proxy cut a transfer");
    let sender = cluster.node(leader).status();
    assert!(sender.snapshot_transfers_failed >= 1, "{sender:?}");
    assert!(sender.snapshots_sent >= 1, "{sender:?}");
    assert!(cluster.node(lagging).status().snapshots_received >= 1);
    cluster.shutdown().await;
}

/// A 3-node cluster on disk that committed ten entries, and a follower
/// stopped with its data directory deleted: (cluster, leader, follower, its
/// directory).
async fn a_cluster_whose_follower_lost_its_disk() -> (Cluster, usize, usize, std::path::PathBuf) {
    let mut cluster = Cluster::start(3, true, 0, 0).await;
    let leader = cluster.leader().await;
    propose(cluster.node(leader), "x", 10).await;
    cluster.converge(10).await;
    let lost = (leader + 1) % 3;
    cluster.stop(lost).await;
    let dir = cluster.data_dir(lost).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (cluster, leader, lost, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_disk_is_refused_when_the_cluster_exists() {
    let (mut cluster, leader, lost, dir) = a_cluster_whose_follower_lost_its_disk().await;
    let existing = RaftParams { initial_cluster_state: ClusterState::Existing, ..cluster.params.clone() };
    let err = cluster.launch(lost, None, App::default(), existing.clone()).await.map(|_| ()).unwrap_err();
    assert!(matches!(&err, StartError::EmptyStoreInExistingCluster { data_dir: Some(d) } if *d == dir), "{err:?}");
    assert!(err.to_string().contains(&dir.display().to_string()), "names the data dir: {err}");
    assert!(!dir.join(raft_tokio::STORE_FILE).exists(), "nothing was written");
    // The other nodes, restarted as Existing, start: their stores are not empty.
    cluster.stop(leader).await;
    let node = cluster.launch(leader, None, App::default(), existing).await.expect("an intact store starts");
    node.shutdown().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_lost_its_disk_is_seen_and_counted_by_the_leader() {
    let (mut cluster, leader, lost, _) = a_cluster_whose_follower_lost_its_disk().await;
    assert_eq!(cluster.node(leader).status().followers_regressed, 0);
    // Started as New (the default), it comes back empty: the leader sees a
    // log that ends before what it had acknowledged.
    cluster.restart(lost).await;
    wait_until("the leader counts the regressed follower", || cluster.node(leader).status().followers_regressed >= 1)
        .await;
    cluster.converge(10).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_cannot_restore_stops_the_node_loudly() {
    let mut cluster = Cluster::start(3, true, 10, 0).await;
    let leader = cluster.leader().await;
    let lagging = (leader + 1) % 3;
    propose(cluster.node(leader), "x", 5).await;
    cluster.converge(5).await;
    compact_past(&mut cluster, lagging, 60).await;
    // The lagging node comes back with an application that reads with
    // recv_committed, which cannot take the leader's snapshot.
    let (node, mut entries) = Raft::start(cluster.config(lagging, None, cluster.params.clone())).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while entries.recv_committed().await.is_some() {
            n += 1;
        }
        n
    });
    let stopped = tokio::time::timeout(PATIENCE, node.stopped()).await.expect("the node stops");
    assert!(matches!(stopped, Err(NodeError::RestoreNotHandled { index }) if index > LogIndex(30)), "{stopped:?}");
    // Its own log held the first entries; they were delivered before.
    let delivered = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    assert!(delivered <= 5, "{delivered}");
    cluster.nodes[lagging] = None;
    cluster.shutdown().await;
}
