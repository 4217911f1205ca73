//! raft-lite's dinner example on raft-tokio: three guests each propose a
//! restaurant, and all of them go where the log decides.
//!
//! It differs from raft-lite's in its `use` lines, in ports the system picks
//! (so that two runs on one machine do not collide), in keeping the nodes'
//! state in a temporary directory, removed at the end, and in exiting as
//! soon as every guest has decided (within `DECISION_TIMEOUT`, else it
//! fails).

use raft_tokio::{Raft, RaftConfig, RaftParams};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the guests may take to decide: an election and two commits
/// take well under a second; this leaves room for a loaded machine.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    let guests: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let dinner_options = vec![b"Ratskeller".to_vec(), b"Pizzeria Ristorante Lachoni".to_vec(), b"KFC".to_vec()];
    let (decided_tx, mut decided) = mpsc::channel(guests.len());

    // spawn a raft instance for each guest
    for (i, listener) in listeners.into_iter().enumerate() {
        let guests = guests.clone();
        let dinner_options = dinner_options.clone();
        let mut raft = get_raft_instance(guests.clone(), guests[i].clone(), data.path(), listener);
        let decided = decided_tx.clone();
        tokio::spawn(async move {
            // one for broadcast, one for receive
            let (raft_broadcast_tx, mut raft_receive_rx) = raft.run();

            // send dinner option of this guest
            let place = dinner_options[i].clone();
            raft_broadcast_tx.send(place).unwrap();

            // receive dinner options of all guests
            let mut count = 0;
            loop {
                let msg = raft_receive_rx.recv().await.unwrap();
                count += 1;
                if count == 2 {
                    // The last message is the final decision
                    let final_decision = String::from_utf8(msg).unwrap();
                    println!("Guest {}: we'll have dinner at {}!", i, final_decision);
                    decided.send(()).await.unwrap();
                    // Keep the node running for the guests still deciding.
                    std::future::pending::<()>().await;
                }
            }
        });
    }
    drop(decided_tx);
    let everyone = async {
        for _ in 0..guests.len() {
            decided.recv().await.expect("a guest's task ended before deciding");
        }
    };
    let on_time = tokio::time::timeout(DECISION_TIMEOUT, everyone).await.is_ok();
    // The nodes stop with the runtime, after main returns.
    drop(data);
    if !on_time {
        eprintln!("dinner: the guests did not all decide within {DECISION_TIMEOUT:?}");
        std::process::exit(1);
    }
}

fn get_raft_instance(peers: Vec<String>, self_addr: String, data: &Path, listener: TcpListener) -> Raft {
    let path = data.join(self_addr.replace(':', "-"));
    let raft_config =
        RaftConfig::new(peers.clone(), self_addr.clone(), RaftParams::default(), Some(path)).with_listener(listener);
    Raft::new(raft_config)
}
