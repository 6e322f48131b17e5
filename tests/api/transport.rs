//! Transport limits, connections, TLS, CORS and shutdown.
