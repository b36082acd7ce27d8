//! Compiles the workspace's `proto/` with protox (pure Rust, so no protoc on the
//! machine) into tonic code and a descriptor set for server reflection. Nothing else.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Named relative to the include folder, as the files import each other.
    let files = ["identity/passwordreset/v1/password_reset.proto", "identity/passwordreset/v1/account.proto"];
    println!("cargo:rerun-if-changed=../proto");
    let fds = protox::compile(files, ["../proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("pwreset_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
