//! Runs one raft-tokio node as its own process, driven by lines of text.
//!
//! ```text
//! raft-node --id 1 --member 1=127.0.0.1:7001 --member 2=127.0.0.1:7002 \
//!           --member 3=127.0.0.1:7003 --data-dir data/n1
//! ```
//!
//! Each line read on stdin is proposed as one entry; stdout gets one line
//! per event: `committed <index> <text>` for every committed entry in log
//! order, `proposed <index> <text>` or `failed <error> <text>` for each
//! proposal, and `leader <id|none> <term> <role>` when the leader or role
//! changes. Logs go to stderr (`RUST_LOG` sets the level). The multi-process
//! tests drive it; it is also a quick way to watch a cluster by hand.

use clap::Parser;
use raft_tokio::{ClusterState, NodeId, Raft, RaftConfig, RaftParams};
use std::io::IsTerminal;
use std::path::PathBuf;
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
struct Args {
    /// This node's id.
    #[arg(long)]
    id: u64,
    /// A member as `id=host:port`, once per member (this node included).
    #[arg(long = "member", value_parser = parse_member)]
    members: Vec<(NodeId, String)>,
    /// Where the node keeps its state; without it, in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The last index the application applied before (see RaftParams::applied_index).
    #[arg(long, default_value_t = 0)]
    applied: u64,
    /// The timer RNG seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Turn pre-vote off (on by default).
    #[arg(long)]
    no_pre_vote: bool,
    /// Turn check-quorum off (on by default).
    #[arg(long)]
    no_check_quorum: bool,
    /// `existing` once the cluster has formed: an empty data directory is
    /// then refused (a lost disk) instead of starting as a new member.
    #[arg(long, default_value = "new", value_parser = parse_cluster_state)]
    initial_cluster_state: ClusterState,
}

fn parse_cluster_state(s: &str) -> Result<ClusterState, String> {
    match s {
        "new" => Ok(ClusterState::New),
        "existing" => Ok(ClusterState::Existing),
        other => Err(format!("expected new or existing, not {other}")),
    }
}

fn parse_member(s: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = s.split_once('=').ok_or("expected id=host:port")?;
    Ok((NodeId(id.parse().map_err(|e| format!("bad id {id}: {e}"))?), addr.to_string()))
}

#[tokio::main]
async fn main() {
    // Colours only for a person at a terminal, not in a file or a pipe.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let params = RaftParams {
        applied_index: args.applied,
        seed: args.seed,
        pre_vote: !args.no_pre_vote,
        check_quorum: !args.no_check_quorum,
        initial_cluster_state: args.initial_cluster_state,
        ..RaftParams::default()
    };
    let config = RaftConfig::with_ids(args.members, NodeId(args.id), params, args.data_dir);
    let (node, mut committed) = match Raft::start(config).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("raft-node: {e}");
            std::process::exit(2);
        }
    };
    let mut leader = node.watch_leader();
    tokio::spawn(async move {
        loop {
            let l = *leader.borrow_and_update();
            let id = l.leader.map_or("none".to_string(), |n| n.0.to_string());
            println!("leader {id} {} {:?}", l.term.0, l.role);
            if leader.changed().await.is_err() {
                return;
            }
        }
    });
    let proposer = node.clone();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let node = proposer.clone();
            tokio::spawn(async move {
                match node.propose(line.clone().into_bytes()).await {
                    Ok(index) => println!("proposed {} {line}", index.0),
                    Err(e) => println!("failed {e:?} {line}"),
                }
            });
        }
    });
    while let Some(c) = committed.recv_committed().await {
        println!("committed {} {}", c.index.0, String::from_utf8_lossy(&c.data));
    }
    if let Err(e) = node.stopped().await {
        eprintln!("raft-node: {e}");
        std::process::exit(1);
    }
}
