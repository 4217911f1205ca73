//! # raft-check: model-checking raft-core with stateright
//!
//! raft-core's `step` function, unchanged, wrapped as a stateright
//! [`Actor`](stateright::actor::Actor) ([`actor`]), run on stateright's
//! simulated networks with crashes and recoveries ([`model`]), and checked
//! against the properties of the Raft paper ([`properties`]). The `kv` model
//! adds clients of a replicated register and checks linearizability
//! ([`kv`]). Counterexamples come out as numbered traces ([`report`], in
//! the notation of [`notation`]) and as replay files of raft-core inputs
//! that [`replay`] feeds back to `step`, so that each one can become a
//! regression test.
//!
//! The command line ([`cli`]) is compatible with raft-lite's:
//! `-m check --depth N`, `-m check` (exhaustive within the bounds),
//! `-m simulate`, `-m explore` (the Raft view of the model in the browser,
//! [`explorer`]); and `-m election` runs the election-timing
//! experiment of the paper's Figure 16 on a timed simulator ([`timing`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod actor;
pub mod cli;
pub mod explorer;
pub mod kv;

pub mod model;
pub mod notation;
pub mod profiles;
pub mod properties;
pub mod replay;
pub mod report;
pub mod simulate;
pub mod symmetry;
pub mod timing;

pub use model::{ModelConfig, ModelKind, NetworkKind, Proposals, RaftModel, RaftState};
