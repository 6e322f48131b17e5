//! The browser chat app, embedded in the binary and served at `/` on the
//! same port (and so the same origin) as grpc-web.
//!
//! The files are the build output of `clients/web` (`npm run build`), which
//! is committed so that `cargo run` needs no Node.js.

use axum::body::Body;
use axum::http::{header, StatusCode, Uri};
use axum::response::Response;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "clients/web/dist/"]
struct Assets;

/// Hashed file names under `assets/` never change content: cache them for
/// a year. Everything else (`index.html`) is revalidated on every load.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Answers a GET for a path that is not a gRPC method: the file at that
/// path, or `index.html` for paths without an extension (the app's own
/// routes), or 404.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let (path, file) = match Assets::get(path) {
        Some(file) => (path, file),
        None if !path.rsplit('/').next().unwrap_or_default().contains('.') => {
            match Assets::get("index.html") {
                Some(file) => ("index.html", file),
                None => return not_found(),
            }
        }
        None => return not_found(),
    };
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    Response::builder()
        .header(header::CONTENT_TYPE, file.metadata.mimetype())
        .header(header::CACHE_CONTROL, cache)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(Body::from(file.data.into_owned()))
        .unwrap_or_else(|_| not_found())
}

fn not_found() -> Response {
    let mut response = Response::new(Body::from("not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
