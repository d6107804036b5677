//! Test helpers for hosts of [`webhooks_core`]: prove what a dispatcher
//! sends, when, and what it records, with real parts and without sleeping.
//!
//! - [`Receiver`]: a real HTTP server on `127.0.0.1` with scripted answers
//!   ([`Reply`]: status, delay, headers, body) that records every request
//!   ([`Received`]) and can verify its signature.
//! - [`TestDispatcher`]: a dispatcher running in the background;
//!   [`settle`](TestDispatcher::settle) waits until it has nothing left to do
//!   at its clock's now, [`advance`](TestDispatcher::advance) moves a
//!   [`ManualClock`](webhooks_core::ManualClock) and settles.
//! - [`Outcomes`]: every recorded attempt, as it is recorded.
//!
//! The kit asks for `webhooks-core`'s dispatcher but no TLS provider: the
//! host's own dependency on `webhooks-core` chooses it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dispatcher;
mod outcomes;
mod receiver;

pub use dispatcher::{DEFAULT_PATIENCE, TestDispatcher};
pub use outcomes::Outcomes;
pub use receiver::{Received, Receiver, Reply};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
