//! What happened to endpoints and deliveries, for the host to hear about
//! without polling or deriving it from attempts.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{DeliveryId, Owner, SubscriptionId};

/// After this many failed attempts in a row, an endpoint that is not
/// disabled yet is reported [failing](OperationalEvent::EndpointFailing),
/// once per run of failures.
pub const FAILING_AFTER: u32 = 3;

/// The event types operational webhooks are published as, one per
/// [`OperationalEvent`] kind. The operational owner's subscriptions (see
/// [`WebhooksBuilder::operational_webhooks`](crate::WebhooksBuilder::operational_webhooks))
/// listen to these without the catalogue naming them.
pub const OPERATIONAL_EVENT_TYPES: [&str; 5] =
    ["endpoint.disabled", "endpoint.enabled", "endpoint.failing", "delivery.dropped", "held.dropped"];

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

    /// The endpoint it is about.
    pub fn subscription_id(&self) -> SubscriptionId {
        match self {
            Self::EndpointDisabled { subscription_id, .. }
            | Self::EndpointEnabled { subscription_id, .. }
            | Self::EndpointFailing { subscription_id, .. }
            | Self::DeliveryDropped { subscription_id, .. }
            | Self::HeldDropped { subscription_id, .. } => *subscription_id,
        }
    }

    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::EndpointDisabled { at, .. }
            | Self::EndpointEnabled { at, .. }
            | Self::EndpointFailing { at, .. }
            | Self::DeliveryDropped { at, .. }
            | Self::HeldDropped { at, .. } => *at,
        }
    }

    /// The data of its operational webhook: the endpoint's id and owner,
    /// when, and what the kind adds (a reason, a count, a delivery).
    ///
    /// ```
    /// use webhooks_core::{OperationalEvent, Owner, SubscriptionId};
    ///
    /// let id = SubscriptionId::new();
    /// let event = OperationalEvent::EndpointDisabled { subscription_id: id, reason: "410 Gone".into(), at: chrono::Utc::now() };
    /// let data = event.data(Some(&Owner::new("alice").unwrap()));
    /// assert_eq!(data["subscription_id"], id.to_string());
    /// assert_eq!((data["owner"].as_str(), data["reason"].as_str()), (Some("alice"), Some("410 Gone")));
    /// ```
    pub fn data(&self, owner: Option<&Owner>) -> serde_json::Value {
        let mut data = serde_json::json!({
            "subscription_id": self.subscription_id().to_string(),
            "owner": owner.map(Owner::as_str),
            "at": self.at().to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        let more = match self {
            Self::EndpointDisabled { reason, .. } => serde_json::json!({ "reason": reason }),
            Self::EndpointEnabled { .. } => serde_json::json!({}),
            Self::EndpointFailing { consecutive_failures, .. } => {
                serde_json::json!({ "consecutive_failures": consecutive_failures })
            }
            Self::DeliveryDropped { delivery_id, .. } => {
                serde_json::json!({ "delivery_id": delivery_id.to_string() })
            }
            Self::HeldDropped { dropped, limit, .. } => {
                serde_json::json!({ "dropped": dropped, "limit": limit })
            }
        };
        if let (Some(data), serde_json::Value::Object(more)) = (data.as_object_mut(), more) {
            data.extend(more);
        }
        data
    }

    /// The idempotency key of its operational webhook: the same fact
    /// published twice (a retried publish) is sent once.
    pub(crate) fn idempotency_key(&self) -> String {
        let at = self.at().timestamp_micros();
        match self {
            Self::DeliveryDropped { delivery_id, .. } => format!("{}:{delivery_id}:{at}", self.kind()),
            _ => format!("{}:{}:{at}", self.kind(), self.subscription_id()),
        }
    }
}

/// The reason logged on each held delivery dropped past the held limit.
pub(crate) fn held_drop_reason(limit: u32) -> String {
    format!("not sent: over {limit} deliveries held while the endpoint was disabled")
}

/// The held limit a [`held_drop_reason`] names; `None` for any other reason.
pub(crate) fn held_drop_limit(reason: &str) -> Option<u32> {
    reason
        .strip_prefix("not sent: over ")?
        .strip_suffix(" deliveries held while the endpoint was disabled")?
        .parse()
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_drop_reason_says_its_limit_and_no_other_reason_does() {
        assert_eq!(held_drop_limit(&held_drop_reason(500)), Some(500));
        assert_eq!(held_drop_limit("dropped after 11 attempts"), None);
        assert_eq!(
            held_drop_limit("not sent: over many deliveries held while the endpoint was disabled"),
            None
        );
    }
}
