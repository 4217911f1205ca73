//! raft-kv: a replicated key-value store on raft-tokio.
//!
//! ```text
//! raft-kv local [--nodes 3]                      a whole cluster on loopback, in one process
//! raft-kv serve --id 1 --config cluster.toml     one node of a cluster file
//! raft-kv put KEY VALUE | get KEY | delete KEY | cas KEY ... | status   [--endpoint URL]
//! raft-kv transfer-leader --to ID [--endpoint URL]   hand the leadership to node ID
//! raft-kv serve --id 4 --config cluster.toml --join --raft HOST:PORT --http HOST:PORT
//!                                                a new node, not in the file, that joins
//! raft-kv member add --id 4 --raft HOST:PORT --http HOST:PORT | promote --id 4 | remove --id 3 | list
//! ```
//!
//! A node added with `member add` is a learner until the leader sees its
//! log within raft-tokio's `PROMOTE_LAG_MAX` entries of its own, then the
//! leader promotes it to voter by itself (`member promote` does it at
//! once). Each change returns once committed.
//!
//! Pre-vote and check-quorum are on unless the cluster file says
//! `pre_vote = false` / `check_quorum = false`, or `serve` / `local` is
//! given `--no-pre-vote` / `--no-check-quorum`.
//!
//! Each node writes a snapshot every `--snapshot-every` applied entries
//! (default 10000, 0: never) and keeps `--trailing-entries` of its log
//! before it; `serve --initial-cluster-state existing` refuses to start a
//! node whose data directory is empty (it lost its state). Each flag
//! overrides the cluster file's key of the same name (with underscores).
//!
//! Logs go to stderr (`RUST_LOG` sets the level; default `info`), in colour
//! only when stderr is a terminal and `NO_COLOR` is not set. Elections and
//! leader changes are logged at INFO with the node and its term.

use clap::{Parser, Subcommand};
use raft_tokio::kv::config::{check_host_port, parse_cluster_state, ClusterFile, NodeEntry};
use raft_tokio::kv::http::{percent_encode, request, HttpError, Response};
use raft_tokio::kv::KvNode;
use raft_tokio::ClusterState;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "raft-kv", about = "A replicated key-value store on raft-core and raft-tokio")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node of the cluster described by a TOML cluster file.
    Serve {
        /// This node's id in the cluster file.
        #[arg(long)]
        id: u64,
        // `help` rather than a doc comment: rustdoc would read [[node]] as
        // a link and <id> as HTML, and clap prints the text as it is.
        #[arg(
            long,
            help = "The cluster file (TOML: cluster_id, and one [[node]] table per node with id, and raft \
                    and http addresses as host:port, the host an IP address or a name)"
        )]
        config: PathBuf,
        #[arg(long, help = "Where the node keeps its Raft state (default: data/node-<id>)")]
        data_dir: Option<PathBuf>,
        /// "new" for the first start of a cluster; "existing" once it has
        /// formed: a node whose data directory is then empty (a lost or
        /// wiped disk) refuses to start as a voter, which could vote twice
        /// in a term or help lose committed writes. Default: the cluster
        /// file's initial_cluster_state, else "new".
        #[arg(long, value_parser = parse_cluster_state, value_name = "new|existing")]
        initial_cluster_state: Option<ClusterState>,
        /// Join a running cluster as a new member that the cluster file does
        /// not list (its nodes are the initial members): an empty data
        /// directory starts as a learner that waits for `raft-kv member add`;
        /// one with state restarts as the member it became. Needs --raft and
        /// --http.
        #[arg(long, requires_all = ["raft", "http"])]
        join: bool,
        /// With --join: this node's Raft address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        raft: Option<String>,
        /// With --join: this node's HTTP address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
        #[command(flatten)]
        protocol: Protocol,
        #[command(flatten)]
        compaction: Compaction,
    },
    /// Changes or lists the cluster's members (any node takes the request;
    /// a follower passes a change to the leader). A change returns once
    /// committed.
    Member {
        #[command(subcommand)]
        action: MemberAction,
    },
    /// Runs a whole cluster on 127.0.0.1 in this process, in memory, and
    /// prints its endpoints. For trying raft-kv out; Ctrl-C stops it.
    Local {
        /// How many nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Node 1 serves HTTP on 127.0.0.1 at this port, node 2 at the next,
        /// and so on (0: ports the system picks). The Raft ports are
        /// always picked by the system.
        #[arg(long, default_value_t = 40001)]
        http_port: u16,
        #[command(flatten)]
        protocol: Protocol,
        #[command(flatten)]
        compaction: Compaction,
    },
    /// Reads a key (linearizable; --local reads this node's copy, maybe stale).
    Get {
        /// The key.
        key: String,
        /// Read the endpoint's own state without confirming with the leader.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Sets a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Removes a key.
    Delete {
        /// The key.
        key: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Sets a key to --new (or deletes it with --delete) only if it holds
    /// --expected (or is absent, with --expect-absent).
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold.
        #[arg(long, conflicts_with = "expect_absent", required_unless_present = "expect_absent")]
        expected: Option<String>,
        /// Require the key to be absent.
        #[arg(long)]
        expect_absent: bool,
        /// The value to set.
        #[arg(long, conflicts_with = "delete", required_unless_present = "delete")]
        new: Option<String>,
        /// Delete the key instead of setting it.
        #[arg(long)]
        delete: bool,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Prints a node's status (JSON).
    Status {
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Hands the leadership to node --to (any node takes the request; a
    /// follower passes it to the leader). Returns once --to leads.
    TransferLeader {
        /// The node to become leader.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

#[derive(Subcommand)]
enum MemberAction {
    /// Adds node --id, started with `serve --join`, as a learner; the
    /// leader promotes it to voter once it has caught up.
    Add {
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its Raft address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        raft: String,
        /// Its HTTP address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        http: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Makes learner --id a voter now.
    Promote {
        /// The learner.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Removes member --id (a voter, even a dead one, or a learner).
    Remove {
        /// The member.
        #[arg(long)]
        id: u64,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Prints the members (JSON): voters, learners, addresses.
    List {
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

/// Switches for the protocol's extensions, both on by default.
#[derive(clap::Args)]
struct Protocol {
    /// Turn pre-vote (Raft thesis §9.6) off, whatever the cluster file says.
    #[arg(long)]
    no_pre_vote: bool,
    /// Turn check-quorum (Raft thesis §6.2) off, whatever the cluster file says.
    #[arg(long)]
    no_check_quorum: bool,
}

impl Protocol {
    fn apply(&self, cluster: &mut ClusterFile) {
        cluster.pre_vote &= !self.no_pre_vote;
        cluster.check_quorum &= !self.no_check_quorum;
    }
}

/// When nodes write snapshots and compact their logs.
#[derive(clap::Args)]
struct Compaction {
    /// Write a snapshot of the state machine every N applied log entries,
    /// then compact the log (0: never). Default: the cluster file's
    /// snapshot_every, else 10000.
    #[arg(long, value_name = "N")]
    snapshot_every: Option<u64>,
    /// Log entries kept before each snapshot's index: a follower lagging by
    /// fewer is sent entries, by more the snapshot. Default: the cluster
    /// file's trailing_entries, else 1024.
    #[arg(long, value_name = "N")]
    trailing_entries: Option<u64>,
}

impl Compaction {
    fn apply(&self, cluster: &mut ClusterFile) {
        cluster.snapshot_every = self.snapshot_every.unwrap_or(cluster.snapshot_every);
        cluster.trailing_entries = self.trailing_entries.unwrap_or(cluster.trailing_entries);
    }
}

#[derive(clap::Args)]
struct Endpoint {
    /// The node to ask, e.g. http://127.0.0.1:8001 or http://node1:8001
    /// (any node answers).
    #[arg(long, default_value = "http://127.0.0.1:8001", value_parser = parse_endpoint)]
    endpoint: String,
}

/// `http://host:port` (or `host:port`) to `host:port`; the host may be a name.
fn parse_endpoint(s: &str) -> Result<String, String> {
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    check_host_port(hostport).map_err(|why| format!("{s:?} is not an endpoint like http://127.0.0.1:8001: {why}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a file or a pipe.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(ansi).with_env_filter(filter).init();
    let result = match cli.command {
        Command::Serve { id, config, data_dir, initial_cluster_state, join, raft, http, protocol, compaction } => {
            let settings = |cluster: &mut ClusterFile| {
                protocol.apply(cluster);
                compaction.apply(cluster);
                cluster.initial_cluster_state = initial_cluster_state.unwrap_or(cluster.initial_cluster_state);
            };
            match (join, raft, http) {
                (true, Some(raft), Some(http)) => {
                    serve(id, config, data_dir, Some(NodeEntry { id, raft, http }), settings).await
                }
                (false, None, None) => serve(id, config, data_dir, None, settings).await,
                _ => Err("--raft and --http go with --join (the cluster file gives the others' addresses)".into()),
            }
        }
        Command::Member { action } => member(action).await,
        Command::Local { nodes, http_port, protocol, compaction } => {
            local(nodes, http_port, |cluster| {
                protocol.apply(cluster);
                compaction.apply(cluster);
            })
            .await
        }
        Command::Get { key, local, endpoint } => {
            let query = if local { "?consistency=local" } else { "" };
            client(&endpoint.endpoint, "GET", &format!("/kv/{}{query}", percent_encode(key.as_bytes())), Vec::new())
                .await
        }
        Command::Put { key, value, endpoint } => {
            client(&endpoint.endpoint, "PUT", &format!("/kv/{}", percent_encode(key.as_bytes())), value.into_bytes())
                .await
        }
        Command::Delete { key, endpoint } => {
            client(&endpoint.endpoint, "DELETE", &format!("/kv/{}", percent_encode(key.as_bytes())), Vec::new()).await
        }
        Command::Cas { key, expected, expect_absent: _, new, delete: _, endpoint } => {
            let body = serde_json::json!({ "expected": expected, "new": new }).to_string().into_bytes();
            client(&endpoint.endpoint, "POST", &format!("/kv/{}/cas", percent_encode(key.as_bytes())), body).await
        }
        Command::Status { endpoint } => client(&endpoint.endpoint, "GET", "/status", Vec::new()).await,
        Command::TransferLeader { to, endpoint } => {
            let body = serde_json::json!({ "to": to }).to_string().into_bytes();
            client(&endpoint.endpoint, "POST", "/leader/transfer", body).await
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("raft-kv: {message}");
            ExitCode::from(2)
        }
    }
}

async fn serve(
    id: u64,
    config: PathBuf,
    data_dir: Option<PathBuf>,
    joining: Option<NodeEntry>,
    settings: impl FnOnce(&mut ClusterFile),
) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&config).map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let own_id = if joining.is_some() { None } else { Some(id) };
    let mut cluster = ClusterFile::parse(&text, own_id).map_err(|e| format!("{}: {e}", config.display()))?;
    settings(&mut cluster);
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(format!("data/node-{id}")));
    let started = match joining {
        Some(_) if cluster.node(id).is_some() => {
            return Err(format!(
                "node {id} is in {}: start it without --join (--join is for a node the file does not list)",
                config.display()
            ))
        }
        Some(me) => {
            for addr in [&me.raft, &me.http] {
                check_host_port(addr).map_err(|why| format!("{addr:?}: {why}"))?;
            }
            KvNode::join(&cluster, me, Some(data_dir), None).await
        }
        None => KvNode::start(&cluster, id, Some(data_dir), None).await,
    };
    let node = started.map_err(|e| format!("node {id} of cluster {}: {e}", cluster.cluster_text()))?;
    eprintln!("raft-kv: node {id} of cluster {} serving HTTP on http://{}", cluster.cluster_text(), node.http_addr);
    wait_for_stop(&node).await
}

async fn local(nodes: u64, http_port: u16, settings: impl FnOnce(&mut ClusterFile)) -> Result<ExitCode, String> {
    if nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if http_port != 0 && u64::from(http_port) + nodes - 1 > u64::from(u16::MAX) {
        return Err(format!("--http-port {http_port} leaves no port for node {nodes}"));
    }
    let bind = |port: u64| {
        std::net::TcpListener::bind(("127.0.0.1", port as u16)).map_err(|e| {
            let hint = if port == 0 { "" } else { " (choose others with --http-port, or 0 for any)" };
            format!("cannot bind 127.0.0.1:{port}: {e}{hint}")
        })
    };
    let mut listeners = Vec::new();
    let mut entries = Vec::new();
    for id in 1..=nodes {
        let http_at = if http_port == 0 { 0 } else { u64::from(http_port) + id - 1 };
        let (raft, http) = (bind(0)?, bind(http_at)?);
        let addr = |l: &std::net::TcpListener| l.local_addr().map(|a| a.to_string()).map_err(|e| e.to_string());
        entries.push(NodeEntry { id, raft: addr(&raft)?, http: addr(&http)? });
        listeners.push((raft, http));
    }
    let mut cluster = ClusterFile::new("local", entries);
    settings(&mut cluster);
    let mut running = Vec::new();
    for (i, pair) in listeners.into_iter().enumerate() {
        let node = KvNode::start(&cluster, i as u64 + 1, None, Some(pair)).await.map_err(|e| e.to_string())?;
        running.push(node);
    }
    println!("raft-kv local: {nodes} nodes in memory; any node answers:");
    for n in &running {
        println!("  node {}: http://{}", n.raft().id().0, n.http_addr);
    }
    let first = running[0].http_addr;
    println!("try:\n  curl -X PUT --data-binary 'hello' http://{first}/kv/greeting\n  curl http://{first}/kv/greeting");
    println!("Ctrl-C stops the cluster.");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    for n in running {
        n.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop(node: &KvNode) -> Result<ExitCode, String> {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            node.raft().shutdown().await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        stopped = node.raft().stopped() => match (stopped, node.server.failure()) {
            (_, Some(reason)) => Err(format!("node stopped: {reason}")),
            (Ok(()), None) => Ok(ExitCode::SUCCESS),
            (Err(e), None) => Err(format!("node stopped: {e}")),
        },
    }
}

async fn member(action: MemberAction) -> Result<ExitCode, String> {
    let post = |endpoint: Endpoint, path: &str, body: serde_json::Value| {
        let path = path.to_string();
        async move { change_client(&endpoint.endpoint, &path, body.to_string().into_bytes()).await }
    };
    match action {
        MemberAction::Add { id, raft, http, endpoint } => {
            for addr in [&raft, &http] {
                check_host_port(addr).map_err(|why| format!("{addr:?}: {why}"))?;
            }
            post(endpoint, "/members/add", serde_json::json!({ "id": id, "raft": raft, "http": http })).await
        }
        MemberAction::Promote { id, endpoint } => {
            post(endpoint, "/members/promote", serde_json::json!({ "id": id })).await
        }
        MemberAction::Remove { id, endpoint } => {
            post(endpoint, "/members/remove", serde_json::json!({ "id": id })).await
        }
        MemberAction::List { endpoint } => client(&endpoint.endpoint, "GET", "/members", Vec::new()).await,
    }
}

/// How long `raft-kv member` retries a change answered 503 (no leader
/// known, the leader unreachable or busy with another change: nothing was
/// changed, so asking again is safe): long enough for an election after a
/// leader died.
const CHANGE_RETRY_FOR: Duration = Duration::from_secs(15);

/// `client` for a membership change: a 503 is asked again every 200 ms
/// for up to `CHANGE_RETRY_FOR`.
async fn change_client(addr: &str, path: &str, body: Vec<u8>) -> Result<ExitCode, String> {
    let deadline = std::time::Instant::now() + CHANGE_RETRY_FOR;
    // Bound: one attempt per 200 ms until the deadline.
    loop {
        let response = request(addr, "POST", path, &[], &body, Duration::from_secs(15)).await;
        match response {
            Ok(r) if r.status == 503 && std::time::Instant::now() < deadline => {
                eprintln!("raft-kv: {} {}; retrying", r.status, String::from_utf8_lossy(&r.body));
            }
            Err(HttpError::Connect(e)) if std::time::Instant::now() < deadline => {
                eprintln!("raft-kv: {addr}: {e}; retrying");
            }
            Ok(r) => return Ok(print_response(&r)),
            Err(e) => return Err(format!("{addr}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends one request; prints the body (and the status on failure). Exit
/// status 0 for 2xx, 1 otherwise.
async fn client(addr: &str, method: &str, path: &str, body: Vec<u8>) -> Result<ExitCode, String> {
    let response: Response =
        request(addr, method, path, &[], &body, Duration::from_secs(15)).await.map_err(|e| format!("{addr}: {e}"))?;
    Ok(print_response(&response))
}

/// Prints an answer's body (and its status on failure). Exit status 0 for
/// 2xx, 1 otherwise.
fn print_response(response: &Response) -> ExitCode {
    let text = String::from_utf8_lossy(&response.body);
    if (200..300).contains(&response.status) {
        if !text.is_empty() {
            println!("{text}");
        }
        ExitCode::SUCCESS
    } else {
        println!("{} {text}", response.status);
        ExitCode::from(1)
    }
}
