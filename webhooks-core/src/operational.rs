//! What happened to endpoints and deliveries, for the host to hear about
//! without polling or deriving it from attempts.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::model::{DeliveryId, SubscriptionId};

/// After this many failed attempts in a row, an endpoint that is not
/// disabled yet is reported [failing](OperationalEvent::EndpointFailing),
/// once per run of failures.
pub const FAILING_AFTER: u32 = 3;

/// One fact about an endpoint or a delivery, told once, by the instance
/// that made it happen: the one that recorded the attempt, took the call,
/// or trimmed the held deliveries. Register a hook with
/// [`WebhooksBuilder::on_operational_event`](crate::WebhooksBuilder::on_operational_event).
///
/// ```
/// use webhooks_core::{OperationalEvent, SubscriptionId};
///
/// let event = OperationalEvent::EndpointEnabled { subscription_id: SubscriptionId::new(), at: chrono::Utc::now() };
/// assert_eq!(event.kind(), "endpoint.enabled");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "type", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum OperationalEvent {
    /// Disabled: by failures, by a `410 Gone`, or by a call.
    EndpointDisabled {
        /// The endpoint.
        subscription_id: SubscriptionId,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Enabled again (or recovered) by a call.
    EndpointEnabled {
        /// The endpoint.
        subscription_id: SubscriptionId,
        /// When.
        at: DateTime<Utc>,
    },
    /// [`FAILING_AFTER`] failed attempts in a row, not disabled (yet).
    EndpointFailing {
        /// The endpoint.
        subscription_id: SubscriptionId,
        /// Its failed attempts in a row.
        consecutive_failures: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// A delivery dropped after its last retry.
    DeliveryDropped {
        /// The endpoint.
        subscription_id: SubscriptionId,
        /// The delivery.
        delivery_id: DeliveryId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Held deliveries of a disabled endpoint dropped, unsent, past its
    /// held limit.
    HeldDropped {
        /// The endpoint.
        subscription_id: SubscriptionId,
        /// How many.
        dropped: u64,
        /// Its held limit.
        limit: u32,
        /// When.
        at: DateTime<Utc>,
    },
}

impl OperationalEvent {
    /// Its kind, dotted: `endpoint.disabled`, `endpoint.enabled`,
    /// `endpoint.failing`, `delivery.dropped`, `held.dropped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EndpointDisabled { .. } => "endpoint.disabled",
            Self::EndpointEnabled { .. } => "endpoint.enabled",
            Self::EndpointFailing { .. } => "endpoint.failing",
            Self::DeliveryDropped { .. } => "delivery.dropped",
            Self::HeldDropped { .. } => "held.dropped",
        }
    }
}

/// The host's hook for [`OperationalEvent`]s: called on the task that made
/// the fact happen, so it should be quick (a channel send).
#[derive(Clone)]
pub(crate) struct OperationalHook(pub(crate) Arc<dyn Fn(&OperationalEvent) + Send + Sync>);

impl fmt::Debug for OperationalHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperationalHook")
    }
}
