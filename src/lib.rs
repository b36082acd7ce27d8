//! pwreset: a password-reset identity sub-service over gRPC.
//!
//! Imports run one way, toward `domain` (the rules), which imports no other module:
//! `grpc` (transport) and `events` (the event stream's read side) call it, and `store`
//! implements its persistence traits; `app` wires them all together. [`App`] is the
//! one entry point shared by `main` and the tests.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod import;
pub mod proto;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use config::Config;
