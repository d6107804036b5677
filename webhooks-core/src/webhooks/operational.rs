//! Operational events, the facade's side: told to the host's hook and
//! published as webhooks to the operational owner, and read back from what
//! the store shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

use super::Webhooks;
use super::publish::Publish;
use crate::error::{Error, ErrorChain};
use crate::model::{AttemptResult, SubscriptionId, SubscriptionStatus};
use crate::operational::{FAILING_AFTER, OperationalEvent, held_drop_limit};
use crate::store::{DeliveryQuery, StateFilter};

/// The most dropped deliveries [`Webhooks::operational_events`] reads.
const DROPPED_READ: usize = 200;

impl Webhooks {
    /// Tells the host about `event`: its hook, then its operational webhooks.
    pub(super) async fn tell(&self, event: OperationalEvent) {
        self.hear(&event);
        self.publish_operational(event).await;
    }

    /// Hands `event` to the host's hook, if it gave one.
    fn hear(&self, event: &OperationalEvent) {
        if let Some(hook) = &self.inner.operational {
            (hook.0)(event);
        }
    }

    /// Publishes `event` to the operational owner's subscriptions, unless it
    /// is about one of them. A failure is logged: the fact itself is
    /// already recorded.
    pub(super) async fn publish_operational(&self, event: OperationalEvent) {
        let Some(operational) = &self.inner.operational_owner else { return };
        let owner = match self.inner.store.subscription(event.subscription_id()).await {
            Ok(subscription) => subscription.map(|subscription| subscription.owner),
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), kind = event.kind(), "operational webhook not published");
                return;
            }
        };
        if owner.as_ref() == Some(operational) {
            return;
        }
        let publish = Publish::new(event.kind(), event.data(owner.as_ref()))
            .owner(operational.as_str())
            .idempotency_key(event.idempotency_key());
        if let Err(error) = self.publish_event(publish).await {
            tracing::error!(error = %ErrorChain(&error), kind = event.kind(), "operational webhook not published");
        }
    }

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
