//! The Raft explorer (`-m explore`): a page that shows the model as Raft,
//! served beside stateright's own explorer on one address.
//!
//! Every server is a box with its role, term, vote, log (entries as cells
//! coloured by term, committed ones marked) and commit index; below them the
//! messages in flight and the next actions, as buttons that step the model;
//! beside them the path taken so far and every property's verdict in the
//! state shown. A counterexample path opens with the broken property named
//! and its steps listed.
//!
//! # URLs
//!
//! A state is named by the path stateright uses, exactly what
//! `stateright::Path::encode` returns: the initial state's index, then the
//! index of each action among the actions of the state before it
//! (`0/4/2`). On the address given with `--addr` (127.0.0.1:3000 unless
//! told):
//!
//! | URL | shows |
//! |---|---|
//! | `/` | the initial state |
//! | `/#/steps/0/4/2` | the state after those steps |
//! | `/#/steps/0/4/2?property=Election%20Safety` | a counterexample (or, for a `Sometimes`, an example): the property named, the steps listed, the first step where it is broken marked |
//! | `/#/steps/0/4/2?property=Election%20Safety&step=3` | the same, showing the state after step 3 |
//! | `/stateright/#/steps/0/4/2` | the same path in stateright's own explorer |
//! | `GET /api/model` | JSON: the model's flags, servers, properties and the legend |
//! | `GET /api/state/0/4/2` | JSON: that state decoded ([`view::StateView`]); 404 with a message for a path the model does not have |
//!
//! A path indexes the actions of one model, so the explorer must be started
//! with the same model flags as the check that printed the path. A space in
//! a property name may be written `%20` or `+`.
//!
//! # Serving
//!
//! One [`tiny_http`] server (the HTTP server stateright itself uses) serves
//! the page, its JSON, and forwards `/stateright/...` and stateright's own
//! endpoints (`/.status`, `/.states/...`, `/.runtocompletion`) to
//! stateright's explorer, which runs on a free port of 127.0.0.1 that only
//! this process talks to. Stateright's explorer unwraps its bind error (a
//! panic inside stateright), so the address the user gives is bound here
//! first: an address in use is an [`ExploreError::AddressInUse`], which the
//! CLI prints and exits with status 2.

mod http;
pub mod view;

use crate::model::{ModelConfig, RaftModel};
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long stateright's explorer may take to start listening: it spawns
/// its (idle) checker threads first, which takes milliseconds.
const UPSTREAM_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Request handler threads: enough that the page's parallel requests and a
/// slow forwarded one do not wait for each other.
const HANDLER_THREADS: usize = 4;

/// Why the explorer cannot serve. Every variant is about the address the
/// user gave, or the machine (the CLI exits with status 2 for each).
#[derive(Debug)]
pub enum ExploreError {
    /// `--addr` is not a socket address (`127.0.0.1:3000`).
    BadAddress {
        /// The address given.
        addr: String,
        /// Why it does not resolve.
        reason: String,
    },
    /// Another process listens there already.
    AddressInUse {
        /// The address given.
        addr: String,
    },
    /// Binding failed for another reason (permission, no such interface).
    Bind {
        /// The address given.
        addr: String,
        /// The error of the bind.
        source: std::io::Error,
    },
    /// Stateright's explorer did not start on 127.0.0.1.
    Upstream(String),
}

impl fmt::Display for ExploreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExploreError::BadAddress { addr, reason } => {
                write!(f, "--addr {addr:?} is not an address to serve on ({reason}); give one such as 127.0.0.1:3000")
            }
            ExploreError::AddressInUse { addr } => write!(
                f,
                "cannot serve the explorer on {addr}: the address is in use (another explorer?); \
                 stop that process or choose another address with --addr, e.g. --addr 127.0.0.1:3001"
            ),
            ExploreError::Bind { addr, source } => write!(f, "cannot serve the explorer on {addr}: {source}"),
            ExploreError::Upstream(why) => write!(f, "stateright's explorer did not start: {why}"),
        }
    }
}

impl std::error::Error for ExploreError {}

/// A bound explorer: the Raft view's address is taken and stateright's
/// explorer is running; [`Explorer::run`] answers requests.
pub struct Explorer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    shared: Arc<http::Shared>,
}

impl Explorer {
    /// Binds `addr` (port 0: any free port) and starts stateright's
    /// explorer over the same model, with `threads` checker threads (they
    /// stay idle until its page asks it to run).
    pub fn bind(config: ModelConfig, addr: &str, threads: usize) -> Result<Explorer, ExploreError> {
        let target = resolve(addr)?;
        let listener = TcpListener::bind(target).map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ExploreError::AddressInUse { addr: addr.to_string() },
            _ => ExploreError::Bind { addr: addr.to_string(), source },
        })?;
        let bound = listener.local_addr().map_err(|source| ExploreError::Bind { addr: addr.to_string(), source })?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| ExploreError::Bind { addr: addr.to_string(), source: std::io::Error::other(e) })?;
        let upstream = start_stateright(config.clone(), threads)?;
        let model: RaftModel = config.into_model();
        let shared = Arc::new(http::Shared { model, upstream });
        Ok(Explorer { server: Arc::new(server), addr: bound, shared })
    }

    /// The address the Raft view is served on (with the port chosen, if 0
    /// was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests until the process ends.
    pub fn run(self) {
        let workers: Vec<_> = (0..HANDLER_THREADS)
            .map(|_| {
                let server = Arc::clone(&self.server);
                let shared = Arc::clone(&self.shared);
                std::thread::spawn(move || http::serve(&server, &shared))
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, ExploreError> {
    let bad = |reason: String| ExploreError::BadAddress { addr: addr.to_string(), reason };
    let mut candidates = addr.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    candidates.next().ok_or_else(|| bad("it resolves to nothing".to_string()))
}

/// Starts stateright's explorer on a free port of 127.0.0.1 and waits until
/// it accepts connections. The port is found by binding port 0 and letting
/// it go; should another process take it in between (stateright then
/// panics in its own thread), another port is tried.
fn start_stateright(config: ModelConfig, threads: usize) -> Result<SocketAddr, ExploreError> {
    const ATTEMPTS: usize = 3;
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let probe = TcpListener::bind("127.0.0.1:0").map_err(|e| ExploreError::Upstream(e.to_string()))?;
        let addr = probe.local_addr().map_err(|e| ExploreError::Upstream(e.to_string()))?;
        drop(probe);
        let model = config.clone().into_model();
        let handle = std::thread::Builder::new()
            .name("stateright-explorer".to_string())
            .spawn(move || {
                use stateright::Model;
                let _ = model.checker().threads(threads).serve(addr);
            })
            .map_err(|e| ExploreError::Upstream(e.to_string()))?;
        let deadline = Instant::now() + UPSTREAM_START_TIMEOUT;
        while Instant::now() < deadline && !handle.is_finished() {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last = if handle.is_finished() {
            format!("it stopped at once on {addr}")
        } else {
            format!("it did not listen on {addr} within {} s", UPSTREAM_START_TIMEOUT.as_secs())
        };
    }
    Err(ExploreError::Upstream(last))
}
