//! Generates the protobuf types and clients of `chat.v1` from the one
//! proto at the top of the workspace, and its encoded descriptors.
//!
//! The proto is compiled by `protox` (pure Rust, so no system `protoc`).
//! The servers are not generated here: the server crate's `build.rs` makes
//! them from the same descriptors, with its own codecs.

use std::path::PathBuf;

use prost::Message as _;

const PROTO_ROOT: &str = "../../proto";
const PROTO: &str = "../../proto/chat/v1/chat.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile([PROTO], [PROTO_ROOT])?;
    std::fs::write(out_dir.join("chat_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
