//! pwreset: a password-reset identity sub-service over gRPC.
//!
//! `grpc` → `domain` → `store`; `events` is used by both `grpc` and `domain`.
//! [`App`] is the one entry point shared by `main` and the tests.

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
