//! The explorer behind `-m explore`: an address in use is a clear error and
//! exit status 2 (not a panic inside stateright), and the JSON the page
//! draws walks the model as the checker does. The page itself is tested in
//! a real browser by `raft-check/explorer-test` (CI's `.ci/run`).

use raft_check::explorer::view::{parse_path, PathError};
use raft_check::explorer::{ExploreError, Explorer};
use raft_check::ModelConfig;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a request to the explorer or the CLI's exit may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn an_address_in_use_is_an_error_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let error = match Explorer::bind(ModelConfig::default(), &addr, 1) {
        Err(e) => e,
        Ok(_) => panic!("bound {addr}, which is in use"),
    };
    assert!(matches!(&error, ExploreError::AddressInUse { addr: a } if *a == addr), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&addr) && message.contains("in use") && message.contains("--addr"), "{message}");
}

#[test]
fn the_cli_exits_2_with_a_message_when_the_address_is_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raft-check"))
        .args(["-m", "explore", "--threads", "1", "--addr", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("-m explore on a taken address still runs after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(&format!("cannot serve the explorer on {addr}: the address is in use")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_address_is_an_error() {
    let error = Explorer::bind(ModelConfig::default(), "localhost:port", 1).err().expect("no address");
    assert!(matches!(error, ExploreError::BadAddress { .. }), "{error:?}");
}

#[test]
fn paths_are_parsed_as_stateright_encodes_them() {
    assert_eq!(parse_path("/0/4/2"), Ok(vec![0, 4, 2]));
    assert_eq!(parse_path("0/4/2/"), Ok(vec![0, 4, 2]));
    assert_eq!(parse_path(""), Ok(vec![0]));
    assert_eq!(parse_path("/0/x"), Err(PathError::NotANumber("x".to_string())));
}

/// Starts an explorer on a free port; it serves until the test process ends.
fn start(config: ModelConfig) -> SocketAddr {
    let explorer = Explorer::bind(config, "127.0.0.1:0", 1).unwrap();
    let addr = explorer.addr();
    std::thread::spawn(move || explorer.run());
    addr
}

/// One HTTP/1.0 request: the status code and the body.
fn request(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn json(addr: SocketAddr, target: &str) -> Value {
    let (status, body) = request(addr, "GET", target);
    assert_eq!(status, 200, "GET {target}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The path of the one action of `state` that matches.
fn action_path(state: &Value, kind: &str, node: &str, from: Option<&str>, detail: &str) -> String {
    let matching: Vec<&Value> = state["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["node"] == node && a["detail"] == detail)
        .filter(|a| from.is_none_or(|f| a["from"] == f))
        .collect();
    assert_eq!(matching.len(), 1, "one {kind} {detail} at {node}: {:#}", state["actions"]);
    matching[0]["path"].as_str().unwrap().to_string()
}

fn server<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["servers"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

#[test]
fn the_api_walks_an_election_in_raft_terms() {
    let addr = start(ModelConfig::default());
    let model = json(addr, "/api/model");
    let ids: Vec<&str> = model["servers"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(model["properties"].as_array().unwrap().iter().any(|p| p["name"] == "Election Safety"));
    let (a, b) = (ids[0], ids[1]);

    let init = json(addr, "/api/state/0");
    for id in &ids {
        let s = server(&init, id);
        assert_eq!(
            (s["role"].as_str(), s["term"].as_u64(), s["commit"].as_u64()),
            (Some("Follower"), Some(0), Some(0))
        );
        assert_eq!(s["log"], serde_json::json!([]));
    }

    let path = action_path(&init, "timeout", a, None, "Election");
    let candidate = json(addr, &format!("/api/state/{path}"));
    assert_eq!(server(&candidate, a)["role"], "Candidate");
    assert_eq!(server(&candidate, a)["term"], 1);
    assert_eq!(candidate["steps"].as_array().unwrap().len(), 2);
    let asks: Vec<&Value> =
        candidate["messages"].as_array().unwrap().iter().filter(|m| m["kind"] == "RequestVote").collect();
    assert_eq!(asks.len(), 2, "{:#}", candidate["messages"]);

    let path = action_path(&candidate, "deliver", b, Some(a), "RequestVote");
    let voted = json(addr, &format!("/api/state/{path}"));
    assert_eq!(server(&voted, b)["vote"], a);
    let path = action_path(&voted, "deliver", a, Some(b), "RequestVoteResponse");
    let elected = json(addr, &format!("/api/state/{path}"));
    let leader = server(&elected, a);
    assert_eq!(leader["role"], "Leader");
    assert_eq!(leader["log"][0], serde_json::json!({"index": 1, "term": 1, "text": "·", "committed": false}));
    assert_eq!(elected["leaders"], serde_json::json!([format!("{a} in t1")]));
    let liveness = elected["properties"].as_array().unwrap().iter().find(|p| p["name"] == "Election Liveness").unwrap();
    assert_eq!(liveness["holds"], true);
}

#[test]
fn a_path_the_model_lacks_is_a_404_with_a_message() {
    let addr = start(ModelConfig::default());
    let (status, body) = request(addr, "GET", "/api/state/0/999");
    assert_eq!(status, 404);
    assert!(body.contains("no action 999 after step 0"), "{body}");
    let (status, _) = request(addr, "GET", "/api/state/5");
    assert_eq!(status, 404);
}

#[test]
fn stateright_s_explorer_is_served_beside_it() {
    let addr = start(ModelConfig::default());
    let (status, page) = request(addr, "GET", "/");
    assert_eq!(status, 200);
    assert!(page.contains("Raft explorer"), "{page}");
    let (status, page) = request(addr, "GET", "/stateright/");
    assert_eq!(status, 200);
    assert!(page.contains("Stateright Explorer"), "{page}");
    let status = json(addr, "/.status");
    assert_eq!(status["properties"][0][1], "Election Safety");
    let (code, states) = request(addr, "GET", "/.states/0");
    assert_eq!(code, 200);
    assert!(states.contains("actionIndex"), "{states}");
}

/// The README's example path (and its third screenshot): two leaders in
/// term 1 in the model whose adapter forgets a vote on recovery. Pinned, so
/// that a change to the model's actions that moves it shows up here and the
/// README is updated with it.
#[test]
fn the_readme_s_example_path_is_an_election_safety_counterexample() {
    use raft_check::explorer::view::{state_view, walk};
    use raft_check::model::Proposals;
    let mut config = ModelConfig {
        proposals: Proposals::None,
        max_term: 1,
        max_log: 2,
        heartbeats: false,
        ..ModelConfig::default()
    };
    config.switches.forget_vote_on_recovery = true;
    let model = config.into_model();
    let path = parse_path("0/0/1/1/7/4/3/4/4").unwrap();
    let view = state_view(&model, &walk(&model, &path).unwrap());
    let labels: Vec<&str> = view.steps.iter().map(|s| s.label.split(':').next().unwrap()).collect();
    let ids: Vec<&str> = view.servers.iter().map(|s| s.id.as_str()).collect();
    let [a, b, c] = ids[..] else { panic!("three servers: {ids:?}") };
    assert_eq!(
        labels,
        [
            "initial state".to_string(),
            a.to_string(),
            format!("{c} ← {a}"),
            format!("{a} ← {c}"),
            format!("{c} crashes"),
            format!("{c} recovers from its storage"),
            b.to_string(),
            format!("{c} ← {b}"),
            format!("{b} ← {c}"),
        ]
    );
    let first_broken = view.steps.iter().position(|s| s.broken.contains(&"Election Safety"));
    assert_eq!(first_broken, Some(8));
    let roles: Vec<(&str, u64)> = view.servers.iter().map(|s| (s.role, s.term)).collect();
    assert_eq!(roles, [("Leader", 1), ("Leader", 1), ("Follower", 1)]);
}
