//! The rules of the service, in three kinds of room, each importing only the ones
//! listed after it:
//!
//! - [`service`]: what the RPCs call — the reset flow and the credential store;
//! - [`runtime`]: the machinery that runs them — the token writer, the hashing pool,
//!   the token cache, the commit signal, rate limits, the clock;
//! - [`model`]: types, rules, events and the persistence traits `store` implements.
//!
//! Nothing here imports `tonic` or `sea_orm`: time is read through
//! [`runtime::clock::Clock`], randomness through the token generator and hasher, and
//! state is kept through the traits of [`model::persistence`].

pub mod model;
pub mod runtime;
pub mod service;
