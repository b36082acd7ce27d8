//! Code generated from the workspace's `proto/` by build.rs, and its descriptor set for
//! server reflection.

#![allow(clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

tonic::include_proto!("identity.passwordreset.v1");

/// Encoded `FileDescriptorSet` of this package, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pwreset_descriptor.bin"));
