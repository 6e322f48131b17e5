//! Operations: metrics, health, logs.
