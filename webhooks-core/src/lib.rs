//! Signed, retried, logged webhook delivery for a Rust backend.
//!
//! The host application keeps a [`Webhooks`] facade built from three parts:
//!
//! - a [`Store`], where subscriptions, deliveries and attempt logs live
//!   (`webhooks-memory`, `webhooks-sqlite`, `webhooks-postgres`, or your
//!   own: four small traits, one per concern, see [`Store`]);
//! - a [`Preset`], a product's webhook behaviour as swappable parts: the
//!   body [`Envelope`], the [`SignatureScheme`], the [`RetryPolicy`], the
//!   [`UrlRule`], the [`DisablePolicy`] and the event [`Catalogue`];
//!   [`Preset::neutral`] (Standard Webhooks signing, the host's own
//!   catalogue of [`EventType`]s), [`Preset::standard`],
//!   [`Preset::smartlyq`] and [`Preset::deepsmith`] are built in;
//! - a [`Clock`], the system's unless a test injects a [`ManualClock`].
//!
//! The model is four types. A [`Subscription`] is an endpoint URL, the event
//! types it listens to and its signing [`Secret`]. Publishing an [`Event`]
//! renders its body once and creates one [`Delivery`] per listening
//! subscription, in one store step. A [`Dispatcher`], a future the host
//! spawns on its own runtime, claims due deliveries under a lease, signs
//! the stored bytes, POSTs them, and records each [`Attempt`] together with
//! its consequence: delivered, retry at a time the policy picks, or dropped;
//! and the subscription's failure count, which disables it at the preset's
//! threshold. A disabled subscription's deliveries, those published while
//! it is disabled too, are held until it is enabled again.
//!
//! Receivers verify with the same schemes: [`SmartlyQScheme::verify_header`],
//! [`DeepSmithScheme::verify_header`], [`StandardScheme::verify_values`] or
//! [`SignatureScheme::verify`].
//!
//! Cargo features: `dispatch` (the [`Dispatcher`], its HTTP client and
//! address guard), `http2`, a rustls crypto provider (`rustls-aws-lc`, the
//! default, or `rustls-ring`), `metrics`, `tracing` and `serde` (the model
//! and admin types serialize for an admin API, secrets redacted) are on by
//! default.
//! Without default features the crate is the model, the signature schemes,
//! the presets and the Store traits: enough for a receiver that verifies.
//!
#![cfg_attr(feature = "dispatch", doc = "```")]
#![cfg_attr(not(feature = "dispatch"), doc = "```ignore")]
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//! use webhooks_core::{Preset, Subscription, Webhooks};
//! use webhooks_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), webhooks_core::Error> {
//! let webhooks = Webhooks::builder()
//!     .store(MemoryStore::new())
//!     .preset(Preset::deepsmith())
//!     .build()?;
//! webhooks
//!     .subscribe(Subscription::builder("https://example.com/hooks").event_type("content.status_updated"))
//!     .await?;
//!
//! let shutdown = CancellationToken::new();
//! let dispatcher = tokio::spawn(webhooks.dispatcher().build()?.run(shutdown.clone()));
//! webhooks
//!     .publish("content.status_updated", serde_json::json!({"id": 7, "status": "published"}))
//!     .await?;
//! shutdown.cancel();
//! dispatcher.await.unwrap();
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The facade keeps the parts the dispatcher reads (wake-ups, settling)
// whether or not the dispatcher is built.
#![cfg_attr(not(feature = "dispatch"), allow(dead_code))]

mod address;
mod catalogue;
mod channels;
mod clock;
#[cfg(feature = "dispatch")]
mod dispatch;
mod envelope;
mod error;
pub mod micros;
mod model;
mod operational;
mod patience;
mod preset;
mod retry;
mod scheme;
mod sealing;
mod secret;
mod settings;
#[cfg(feature = "sql")]
// Not public API: what this workspace's SQL stores share (row decoding,
// listing filters, migration checks). Public only so they can use it.
#[doc(hidden)]
pub mod sql;
mod store;
#[cfg(any(not(feature = "metrics"), not(feature = "tracing")))]
mod telemetry;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod webhooks;

pub use address::is_public_address;
pub use catalogue::{Catalogue, EventType};
pub use channels::{MAX_CHANNEL_BYTES, MAX_CHANNELS, channels_meet};
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "dispatch")]
#[cfg_attr(docsrs, doc(cfg(feature = "dispatch")))]
pub use dispatch::{
    Activity, AttemptOutcome, DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_BATCHING, Dispatcher,
    DispatcherBuilder,
};
pub use envelope::{Envelope, JsonEnvelope, StandardEnvelope};
pub use error::{Error, ErrorChain};
pub use model::{
    Attempt, AttemptResult, Audience, Delivery, DeliveryId, DeliveryState, Event, EventData, EventId,
    IdempotencyKey, InvalidKey, Owner, PreviousSecret, SigningSecrets, Subscription, SubscriptionId,
    SubscriptionStatus, UnknownState,
};
pub use operational::{FAILING_AFTER, OPERATIONAL_EVENT_TYPES, OperationalEvent};
pub use preset::{DisablePolicy, MAX_URL_BYTES, Preset, UrlRule};
pub use retry::{Exponential, RetryPolicy, Scaled, Schedule};
pub use scheme::{DeepSmithScheme, Message, SignatureScheme, SmartlyQScheme, StandardScheme, VerifyError};
pub use sealing::{SealError, SecretKeys};
pub use secret::{MAX_SECRET_BYTES, MIN_SECRET_BYTES, MIN_WHSEC_SECRET_BYTES, REDACTED, Secret};
pub use settings::{
    CustomHeader, DEFAULT_HELD_LIMIT, EndpointSettings, InvalidHeader, InvalidRateLimit,
    MAX_HEADER_VALUE_BYTES, MAX_OWN_WAIT, MAX_OWN_WAITS, RateLimit, RetryChoice,
};
pub use store::{
    Admin, AttemptRecord, Changes, Claim, ClaimRequest, Current, DeliveryCounts, DeliveryQuery,
    DeliveryQueue, Disabling, Enabling, NewCycle, NextState, Placement, Publication, Recorded, Recovery,
    Released, Reordering, Resend, Retention, Standing, StateFilter, Store, StoreError, StoreResult,
    SubscriptionStats, SubscriptionStore, Verdict, held_excess, in_order, release_next,
};
// The crates whose types this API takes and returns, at the versions it is
// built with: a host names them through here rather than pinning a copy of
// its own that might differ.
/// The attribute a store's trait implementations carry (the store traits
/// are `async_trait`s).
pub use async_trait::async_trait;
#[doc(no_inline)]
pub use bytes;
#[doc(no_inline)]
pub use chrono;
#[doc(no_inline)]
pub use http;
#[cfg(feature = "dispatch")]
#[doc(no_inline)]
pub use reqwest;
/// What stops a [`Dispatcher`]: cancel it and `run` returns once the
/// attempts in flight are recorded.
#[cfg(feature = "dispatch")]
pub use tokio_util::sync::CancellationToken;
#[doc(no_inline)]
pub use url;
#[doc(no_inline)]
pub use uuid;

/// The store traits, for calling a store's methods on a concrete store:
/// `use webhooks_core::prelude::*;`.
pub mod prelude {
    pub use crate::store::{Admin, DeliveryQueue, Retention, Store, SubscriptionStore};
}

pub use webhooks::deliveries::{DeliveryLog, DeliveryPage, LogPage};
pub use webhooks::operations::{MAX_REASON_BYTES, TEST_EVENT};
pub use webhooks::owner::OwnerView;
pub use webhooks::publish::{Outcome, Prepared, Publish, Published};
pub use webhooks::stats::OwnerStats;
pub use webhooks::subscriptions::{
    MAX_DESCRIPTION_BYTES, MAX_HEADERS, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, NewSubscription,
    SubscriptionUpdate,
};
pub use webhooks::{
    DEFAULT_IDEMPOTENCY_WINDOW, DEFAULT_MAX_BODY_BYTES, DEFAULT_PUBLISH_RETRY, Webhooks, WebhooksBuilder,
};
