//! What happened to endpoints and deliveries, for the host to hear about
//! without polling or deriving it from attempts.

use std::fmt;
use std::sync::Arc;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{AttemptResult, DeliveryId, Owner, SubscriptionId, SubscriptionStatus};
use crate::store::{DeliveryQuery, StateFilter};
use crate::{Error, Webhooks};

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
fn held_drop_limit(reason: &str) -> Option<u32> {
    reason
        .strip_prefix("not sent: over ")?
        .strip_suffix(" deliveries held while the endpoint was disabled")?
        .parse()
        .ok()
}

/// The most dropped deliveries [`Webhooks::operational_events`] reads.
const DROPPED_READ: usize = 200;

impl Webhooks {
    /// What the store still shows of an endpoint's operational events,
    /// newest first: its disabling (while it is disabled), its current run
    /// of failures (at [`FAILING_AFTER`] or more, while enabled), and the
    /// deliveries created since `since` that were dropped, after their
    /// last retry or past the held limit (at most 200). The store keeps
    /// states, not a history: an enabling, or a disabling that was undone,
    /// is heard only as it happens
    /// ([`on_operational_event`](crate::WebhooksBuilder::on_operational_event)).
    ///
    /// ```
    /// use webhooks_core::{OperationalEvent, Preset, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
    /// let endpoint = webhooks
    ///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
    ///     .await?;
    /// webhooks.disable(endpoint.id, "paused for maintenance").await?;
    /// let events = webhooks.operational_events(endpoint.id, chrono::Utc::now() - chrono::Duration::days(7)).await?;
    /// assert!(matches!(&events[..], [OperationalEvent::EndpointDisabled { reason, .. }] if reason == "paused for maintenance"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn operational_events(
        &self,
        id: SubscriptionId,
        since: DateTime<Utc>,
    ) -> Result<Vec<OperationalEvent>, Error> {
        let subscription = self.subscription(id).await?;
        let mut events = Vec::new();
        match &subscription.status {
            SubscriptionStatus::Disabled { reason, at } => {
                events.push(OperationalEvent::EndpointDisabled {
                    subscription_id: id,
                    reason: reason.clone(),
                    at: *at,
                });
            }
            SubscriptionStatus::Enabled if subscription.consecutive_failures >= FAILING_AFTER => {
                if let Some(at) = self.stats(id).await?.last_failure_at {
                    let consecutive_failures = subscription.consecutive_failures;
                    events.push(OperationalEvent::EndpointFailing {
                        subscription_id: id,
                        consecutive_failures,
                        at,
                    });
                }
            }
            SubscriptionStatus::Enabled => {}
        }
        let query = DeliveryQuery {
            subscription: Some(id),
            state: Some(StateFilter::Dropped),
            created_from: Some(since),
            limit: DROPPED_READ,
            ..DeliveryQuery::default()
        };
        // Held deliveries dropped by one trim share its time and limit: one event.
        let mut held: BTreeMap<(DateTime<Utc>, u32), u64> = BTreeMap::new();
        for log in self.delivery_logs(query).await?.logs {
            let Some(last) = log.attempts.last() else { continue };
            let held_limit = match &last.result {
                AttemptResult::Error(reason) => held_drop_limit(reason),
                AttemptResult::Response { .. } => None,
            };
            match held_limit {
                Some(limit) => *held.entry((last.started_at, limit)).or_default() += 1,
                None => events.push(OperationalEvent::DeliveryDropped {
                    subscription_id: id,
                    delivery_id: log.delivery.id,
                    at: last.started_at,
                }),
            }
        }
        events.extend(held.into_iter().map(|((at, limit), dropped)| OperationalEvent::HeldDropped {
            subscription_id: id,
            dropped,
            limit,
            at,
        }));
        events.sort_by_key(|event| std::cmp::Reverse(event.at()));
        Ok(events)
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
