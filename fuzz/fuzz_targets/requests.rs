//! The request handlers' input validation, on arbitrary bytes.
//!
//! The first byte picks the request type, the rest is decoded as that
//! protobuf message, as tonic would, and validated exactly as its handler
//! validates it (`chat_server::service::requests`). Validation may reject
//! anything, but only as a client error: a panic, or any other kind of
//! error, is a bug.

#![no_main]

use chat_server::error::Error;
use chat_server::service::requests::{check_encoded, RequestKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    if let Err(error) = check_encoded(RequestKind::from_byte(kind), bytes) {
        assert!(
            matches!(error, Error::InvalidArgument(_) | Error::Unauthenticated(_)),
            "validation failed with a server error: {error:?}"
        );
    }
});
