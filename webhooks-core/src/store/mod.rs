//! Where subscriptions, deliveries and their logs live: the store traits,
//! one per concern, and [`Store`], all of them together.
//!
//! A store is dumb on purpose: it keeps state and applies the changes it is
//! handed, atomically. It knows nothing about HTTP, presets or clocks; every
//! time it needs is passed in, the rules for an attempt live in
//! [`AttemptRecord::changes`], and those for the rest of a delivery's life
//! (holding, enabling, new cycles, ordered release, the held cap) are the
//! methods of [`Standing`] and the functions beside it.
//!
//! | trait | concern | required methods |
//! | --- | --- | --- |
//! | [`SubscriptionStore`] | endpoints, their owners and what they listen to | 8 |
//! | [`DeliveryQueue`] | publishing, leasing, recording: what the dispatcher drives | 8 |
//! | [`Admin`] | logs, listing, resend, recover | 4 (counts and stats have defaults) |
//! | [`Retention`] | deleting finished deliveries, forgetting expired idempotency keys | 2 |

mod admin;
mod lifecycle;
mod queue;
mod retention;
mod rules;
mod sealed;
mod subscriptions;

use crate::model::{DeliveryId, SubscriptionId};

pub use admin::{Admin, DeliveryCounts, DeliveryQuery, StateFilter, SubscriptionStats};
pub use lifecycle::{
    Disabling, Enabling, NewCycle, Placement, Recovery, Released, Reordering, Resend, Standing, held_excess,
    in_order, release_next,
};
pub use queue::{Claim, ClaimRequest, DeliveryQueue, Publication};
pub use retention::Retention;
pub use rules::{AttemptRecord, Changes, Current, NextState, Recorded, Verdict};
pub(crate) use sealed::Sealed;
pub use subscriptions::SubscriptionStore;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No subscription has this id.
    #[error("subscription {0} not found")]
    SubscriptionNotFound(SubscriptionId),
    /// No delivery has this id.
    #[error("delivery {0} not found")]
    DeliveryNotFound(DeliveryId),
    /// A subscription with this id exists already.
    #[error("subscription {0} already exists")]
    DuplicateSubscription(SubscriptionId),
    /// The backend failed (I/O, database, corrupt data).
    #[error("the store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot be reached for now (a lost connection, a server
    /// restarting, a database another process holds locked): the same call
    /// may succeed in a moment, and nothing of it was done.
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }

    /// Wraps a backend's error that a retry may get past.
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(error.into())
    }

    /// Whether the same call may succeed if made again in a moment.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A whole store: every concern, as the [`Webhooks`](crate::Webhooks)
/// facade and the [`Dispatcher`](crate::Dispatcher) use it. Implemented for
/// every type that implements the four traits; implement those.
///
/// Every method is one atomic step: a crash between two calls may lose the
/// work of neither. Handles are cheap to clone and shared across tasks.
/// `webhooks_core::testing` (feature `testing`) holds the behaviour every
/// implementation must have, as tests to run against it.
pub trait Store: SubscriptionStore + DeliveryQueue + Admin + Retention {}

impl<T: SubscriptionStore + DeliveryQueue + Admin + Retention> Store for T {}
