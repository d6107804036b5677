//! Examples and end-to-end tests for the `webhooks` crates.
