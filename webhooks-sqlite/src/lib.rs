//! Durable SQLite store for `webhooks-core` (in progress).
