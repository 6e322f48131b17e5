//! The browser chat app, embedded in the binary and served at `/` on the
//! same port (and so the same origin) as grpc-web.
//!
//! The files are the build output of `clients/web` (`npm run build`), which
//! is committed so that `cargo run` needs no Node.js.
//!
//! Every response of the app, 404s included, carries the same security
//! headers: the app holds access and refresh tokens in `localStorage`, so
//! a script injected into its origin would hold the account. The policy
//! allows only the bundle's own files, which contain no inline script or
//! style and no `eval`; the end-to-end test fails on any violation.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "clients/web/dist/"]
struct Assets;

/// Hashed file names under `assets/` never change content: cache them for
/// a year. Everything else (`index.html`) is revalidated on every load.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Scripts, styles, fonts and connections only from this origin (grpc-web
/// is served here too); images also as `data:` URLs (the favicon the app
/// draws with the unread count). No plugins, no `<base>`, no framing by
/// other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers on every response of the app. `X-Frame-Options` repeats
/// `frame-ancestors` for browsers that predate it; `no-referrer` keeps the
/// app's URLs out of other sites' logs.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// Answers a request for a path that is not a gRPC method: the file at
/// that path, or `index.html` for paths without an extension (the app's
/// own routes), or 404.
pub async fn serve(uri: Uri) -> Response {
    let mut response = file_response(uri.path());
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The file for `path`, or the app's fallback, or 404; `serve` adds the
/// security headers to whichever it is.
fn file_response(path: &str) -> Response {
    let path = path.trim_start_matches('/');
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
        .body(Body::from(file.data.into_owned()))
        .unwrap_or_else(|_| not_found())
}

fn not_found() -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("not found\n"))
        .unwrap_or_default()
}
