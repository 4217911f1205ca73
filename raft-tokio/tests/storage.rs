//! A damaged or foreign store stops the start with an error that names the
//! file and the problem; it is never silently reset.

use raft_tokio::{NodeId, Raft, RaftConfig, RaftParams, StartError, StorageProblem, STORE_FILE};
use std::path::Path;

const CANARY: &[u8] = b"CANARY-0123456789-CANARY";

fn config_for(dir: &Path, id: u64) -> RaftConfig {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let params = RaftParams { seed: Some(1), ..RaftParams::default() };
    // A one-node cluster elects itself, so it commits alone.
    RaftConfig::with_ids(vec![(NodeId(id), addr)], NodeId(id), params, Some(dir.to_path_buf())).with_listener(listener)
}

/// Writes the canary through a one-node cluster and shuts it down cleanly.
async fn store_with_canary(dir: &Path) {
    let (node, _entries) = Raft::start(config_for(dir, 1)).await.expect("fresh store opens");
    node.propose(CANARY.to_vec()).await.expect("commits");
    node.shutdown().await.unwrap();
}

async fn start_error(dir: &Path, id: u64) -> StartError {
    match Raft::start(config_for(dir, id)).await {
        Ok(_) => panic!("a damaged or foreign store was accepted"),
        Err(e) => e,
    }
}

fn flip_every(haystack: &mut [u8], needle: &[u8]) -> usize {
    let mut flipped = 0;
    let mut i = 0;
    while i + needle.len() <= haystack.len() {
        if &haystack[i..i + needle.len()] == needle {
            haystack[i + needle.len() / 2] ^= 0x01;
            flipped += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    flipped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_reported_with_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    store_with_canary(dir.path()).await;
    let file = dir.path().join(STORE_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(flip_every(&mut bytes, CANARY) > 0, "the canary is stored as written");
    std::fs::write(&file, &bytes).unwrap();

    let err = start_error(dir.path(), 1).await;
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "names the file: {text}");
    match err {
        StartError::Storage(e) => match e.problem {
            StorageProblem::CorruptRecord { offset, .. } if offset > 0 => {}
            other => panic!("unexpected problem: {other:?}"),
        },
        other => panic!("unexpected error: {other}"),
    }
    assert!(text.contains("checksum") || text.contains("corrupt"), "says what is wrong: {text}");
    // Nothing was reset or repaired away: the damaged record is still there.
    let mut damaged = CANARY.to_vec();
    damaged[CANARY.len() / 2] ^= 0x01;
    let after = std::fs::read(&file).unwrap();
    assert!(after.windows(damaged.len()).any(|w| w == damaged.as_slice()), "the damaged record is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    store_with_canary(dir.path()).await;
    let file = dir.path().join(STORE_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    for b in bytes.iter_mut().take(512) {
        *b = 0xA5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let text = start_error(dir.path(), 1).await.to_string();
    assert!(text.contains(&file.display().to_string()), "names the file: {text}");
    assert!(text.contains("cannot be opened") || text.contains("corrupt"), "says what is wrong: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_canary(dir.path()).await;
    let text = start_error(dir.path(), 2).await.to_string();
    assert!(text.contains("belongs to node n1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_store_comes_back_with_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    store_with_canary(dir.path()).await;
    let (node, mut entries) = Raft::start(config_for(dir.path(), 1)).await.expect("reopens");
    let first = entries.recv_committed().await.unwrap();
    assert_eq!((first.index.0, first.data.as_slice()), (2, CANARY));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeps_its_own_members_whatever_the_configuration_lists() {
    let dir = tempfile::tempdir().unwrap();
    store_with_canary(dir.path()).await;
    // The same node, now configured in a cluster of two: the store's
    // membership (changed at run time, in a real cluster) is the one used;
    // the configured members only seed the address book.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let members = vec![(NodeId(1), addr), (NodeId(2), "127.0.0.1:1".to_string())];
    let params = RaftParams { seed: Some(1), ..RaftParams::default() };
    let config =
        RaftConfig::with_ids(members, NodeId(1), params, Some(dir.path().to_path_buf())).with_listener(listener);
    let (node, mut entries) = Raft::start(config).await.expect("starts from its store");
    let voters: Vec<NodeId> = node.membership().voters().iter().copied().collect();
    assert_eq!(voters, vec![NodeId(1)], "the stored membership, not the configured one");
    // A one-voter cluster still: it elects itself and delivers the canary.
    let first = entries.recv_committed().await.unwrap();
    assert_eq!(first.data.as_slice(), CANARY);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_redb_versions_is_refused_with_a_message_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("raft.redb"), b"an earlier version's store").unwrap();
    // Restarting an existing cluster's node: the store, not the empty
    // directory check, answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let params = RaftParams {
        seed: Some(1),
        initial_cluster_state: raft_tokio::ClusterState::Existing,
        ..RaftParams::default()
    };
    let config = RaftConfig::with_ids(vec![(NodeId(1), addr)], NodeId(1), params, Some(dir.path().to_path_buf()))
        .with_listener(listener);
    let err = match Raft::start(config).await {
        Ok(_) => panic!("an earlier version's store was accepted"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(matches!(&err, StartError::Storage(e) if matches!(e.problem, StorageProblem::EarlierFormat)), "{text}");
    assert!(text.contains("earlier version") && text.contains("raft.redb"), "{text}");
    assert!(!dir.path().join(STORE_FILE).exists(), "nothing was written");
}
