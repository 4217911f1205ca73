//! A TCP proxy on one directed link between two nodes (from one node's
//! dialing transport to another's listener), which the nemesis can cut:
//! a cut closes the connection through it and refuses new ones until it
//! is healed. raft-tokio writes only on connections it dialed, so a cut
//! link stops exactly the messages of one direction.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Link {
    /// Where the dialing node connects instead of the target.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Link {
    /// A proxy on 127.0.0.1 to `target`, not cut. It runs until the test's
    /// runtime ends.
    pub async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a proxy port");
        let addr = listener.local_addr().expect("bound");
        let cut = watch::channel(false).0;
        let watching = cut.subscribe();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: refused while cut
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watching.wait_for(|&cut| cut) => {}
                    }
                });
            }
        });
        Link { addr, cut }
    }

    pub fn set_cut(&self, on: bool) {
        self.cut.send_replace(on);
    }
}
