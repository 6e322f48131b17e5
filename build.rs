//! Generates the servers of `chat.v1`.
//!
//! The proto is compiled by `protox` (pure Rust, so no system `protoc`).
//! Types and clients come from the `chat-proto` crate. The servers are
//! generated here with `tonic-build`'s manual builder, so that the two
//! streaming RPCs that answer with `ServerEvent` can send pre-encoded frames:
//! every event is encoded once and its bytes shared by all receiving streams
//! (see `crates/chat-fanout/src/frame.rs`), and so that every request is
//! decoded by the server's own decoder, which answers INVALID_ARGUMENT for a
//! request that does not decode (see `src/codec.rs`).

const PROTO: &str = "proto/chat/v1/chat.proto";
const SERVER_EVENT: &str = ".chat.v1.ServerEvent";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([PROTO], ["proto"])?;

    let servers: Vec<_> = fds
        .file
        .iter()
        .filter(|file| file.package() == "chat.v1")
        .flat_map(|file| &file.service)
        .map(manual_server)
        .collect();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&servers);
    Ok(())
}

/// Describes one service for the manual server generator.
fn manual_server(service: &prost_types::ServiceDescriptorProto) -> tonic_build::manual::Service {
    let mut builder = tonic_build::manual::Service::builder()
        .name(service.name())
        .package("chat.v1");
    for method in &service.method {
        let frames = method.server_streaming() && method.output_type() == SERVER_EVENT;
        let mut m = tonic_build::manual::Method::builder()
            .name(snake_case(method.name()))
            .route_name(method.name())
            .input_type(rust_type(method.input_type()))
            .output_type(if frames {
                "chat_fanout::Frame".to_owned()
            } else {
                rust_type(method.output_type())
            })
            .codec_path(if frames {
                "crate::codec::FrameCodec"
            } else {
                "crate::codec::RequestCodec"
            });
        if method.client_streaming() {
            m = m.client_streaming();
        }
        if method.server_streaming() {
            m = m.server_streaming();
        }
        builder = builder.method(m.build());
    }
    builder.build()
}

/// `.chat.v1.Foo` -> `super::Foo` (the generated server module sits inside `pb`).
fn rust_type(proto_type: &str) -> String {
    let name = proto_type
        .strip_prefix(".chat.v1.")
        .unwrap_or_else(|| panic!("{proto_type}: RPC types must live in chat.v1"));
    format!("super::{name}")
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
