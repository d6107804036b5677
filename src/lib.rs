//! Examples and end-to-end tests for the `webhooks` crates.
//!
//! [`Receiver`] is a real HTTP server on `127.0.0.1:0` that records every
//! request and answers as it is scripted to; the examples and the tests use
//! it as the other end of a webhook. It comes from `webhooks-testkit`, with
//! the rest of the kit the tests use.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use webhooks_testkit::{Outcomes, Received, Receiver, Reply, TestDispatcher};

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
