//! The gRPC transport, kept thin: one impl per service, caller authentication as one
//! layer, and the one error mapping. No SQL and no policy here.

pub mod accounts;
pub mod auth;
pub mod client;
pub mod convert;
pub mod observe;
pub mod reset;
pub mod status;
