//! What an operator does to an endpoint or a delivery: enable, disable,
//! resend, recover after an outage, send a test.

use chrono::{DateTime, Utc};

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

use super::Webhooks;
use crate::error::Error;
use crate::model::{Audience, DeliveryId, Event, EventId, SubscriptionId};
use crate::operational::OperationalEvent;

/// The event type of [`Webhooks::send_test`].
pub const TEST_EVENT: &str = "webhook.test";

/// The longest reason a subscription may be disabled with, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

impl Webhooks {
    /// Enables a subscription again; its held deliveries are attempted at once.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn enable(&self, id: SubscriptionId) -> Result<(), Error> {
        let at = self.inner.clock.now();
        self.inner.store.enable_subscription(id, at).await?;
        self.inner.work.notify_waiters();
        self.tell(OperationalEvent::EndpointEnabled { subscription_id: id, at }).await;
        Ok(())
    }

    /// Disables a subscription; its deliveries are held, not lost.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn disable(&self, id: SubscriptionId, reason: &str) -> Result<(), Error> {
        if reason.len() > MAX_REASON_BYTES {
            return Err(Error::invalid("reason", format!("over {MAX_REASON_BYTES} bytes")));
        }
        let at = self.inner.clock.now();
        self.inner.store.disable_subscription(id, reason, at).await?;
        self.tell(OperationalEvent::EndpointDisabled { subscription_id: id, reason: reason.to_owned(), at })
            .await;
        Ok(())
    }

    /// Sends a delivery again: a new attempt cycle with the same id and body,
    /// due now (held instead while its subscription is disabled).
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn resend(&self, id: DeliveryId) -> Result<(), Error> {
        self.inner.store.resend(id, self.inner.clock.now()).await?;
        self.inner.work.notify_waiters();
        tracing::info!(delivery_id = %id, "delivery resent");
        Ok(())
    }

    /// Recovers a subscription after an outage: enables it and re-queues its
    /// held deliveries and every delivery dropped since `since`, in one step.
    /// Returns how many deliveries were re-queued.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn recover(&self, id: SubscriptionId, since: DateTime<Utc>) -> Result<u64, Error> {
        let at = self.inner.clock.now();
        let recovered = self.inner.store.recover(id, since, at).await?;
        self.inner.work.notify_waiters();
        self.tell(OperationalEvent::EndpointEnabled { subscription_id: id, at }).await;
        tracing::info!(subscription_id = %id, recovered, "subscription recovered");
        Ok(recovered)
    }

    /// Sends a `webhook.test` event to one subscription, whatever event types
    /// it listens to, so an endpoint can be checked end to end.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn send_test(&self, id: SubscriptionId) -> Result<DeliveryId, Error> {
        let subscription = self.subscription(id).await?;
        let now = self.inner.clock.now();
        let event = Event {
            id: EventId::at(now),
            audience: Audience::Owner(subscription.owner),
            idempotency_key: None,
            name: TEST_EVENT.to_owned(),
            channels: Default::default(),
            occurred_at: now,
            data: serde_json::json!({ "test": true }).into(),
        };
        let body = self.inner.preset.envelope().render(&event)?;
        let delivery = self.inner.store.publish_to(&event, body, id).await?;
        self.inner.work.notify_waiters();
        Ok(delivery)
    }
}
