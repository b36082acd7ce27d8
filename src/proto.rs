//! The gRPC types generated from `proto/` and their descriptor set, as built once in
//! `pwreset-proto` for both binaries.

pub use pwreset_proto::proto::*;
