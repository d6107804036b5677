//! One owner's view of the facade: every read and action a customer-facing
//! route needs, each answering not found for another owner's ids, so a
//! host route cannot leak a customer's data by forgetting to compare.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Webhooks;
use super::deliveries::{DeliveryLog, DeliveryPage, LogPage};
use super::subscriptions::SubscriptionUpdate;
use crate::error::Error;
use crate::model::{Delivery, DeliveryId, DeliveryState, Owner, Subscription, SubscriptionId};
use crate::operational::OperationalEvent;
use crate::secret::Secret;
use crate::store::{DeliveryCounts, DeliveryQuery, SubscriptionStats};

/// [`Webhooks`] as one owner sees it; from [`Webhooks::owner`]. Another
/// owner's subscription or delivery answers
/// [`Error::SubscriptionNotFound`] or [`Error::DeliveryNotFound`], exactly
/// like an id that never existed. The unscoped by-id calls on [`Webhooks`]
/// are for operators.
///
/// ```
/// use webhooks_core::{Error, Owner, Preset, Subscription, Webhooks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
/// let bobs = webhooks
///     .subscribe(Subscription::builder("https://bob.example/").owner("bob").event_type("iq.status_updated"))
///     .await?;
/// let alice = webhooks.owner(Owner::new("alice").expect("a valid owner key"));
/// assert!(matches!(alice.subscription(bobs.id).await, Err(Error::SubscriptionNotFound { .. })));
/// assert!(alice.subscriptions().await?.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct OwnerView {
    webhooks: Webhooks,
    owner: Owner,
}

impl Webhooks {
    /// The facade as `owner` sees it: for customer-facing routes.
    pub fn owner(&self, owner: Owner) -> OwnerView {
        OwnerView { webhooks: self.clone(), owner }
    }
}

impl OwnerView {
    /// Whose view this is.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The owner's subscriptions, oldest first.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        self.webhooks.subscriptions(&self.owner).await
    }

    /// One of the owner's subscriptions, read by id and owner in one store
    /// query.
    pub async fn subscription(&self, id: SubscriptionId) -> Result<Subscription, Error> {
        let store = self.webhooks.store();
        store.owned_subscription(&self.owner, id).await?.ok_or(Error::SubscriptionNotFound { id })
    }

    /// One of the owner's deliveries (held when its subscription is
    /// disabled), with the subscription it goes to: read by id and owner,
    /// then its subscription.
    pub async fn delivery(&self, id: DeliveryId) -> Result<(Delivery, Subscription), Error> {
        let store = self.webhooks.store();
        let mut delivery =
            store.owned_delivery(&self.owner, id).await?.ok_or(Error::DeliveryNotFound { id })?;
        let subscription =
            self.subscription(delivery.subscription_id).await.map_err(|error| match error {
                // Deleted since: the delivery went with it.
                Error::SubscriptionNotFound { .. } => Error::DeliveryNotFound { id },
                other => other,
            })?;
        if delivery.state == DeliveryState::Pending && !subscription.is_enabled() {
            delivery.state = DeliveryState::Held;
        }
        Ok((delivery, subscription))
    }

    /// One of the owner's deliveries with its whole attempt log.
    pub async fn delivery_log(&self, id: DeliveryId) -> Result<DeliveryLog, Error> {
        self.delivery(id).await?;
        self.webhooks.delivery_log(id).await
    }

    /// A page of the owner's deliveries: `query.owner` is this owner's,
    /// whatever it said.
    pub async fn deliveries(&self, query: DeliveryQuery) -> Result<DeliveryPage, Error> {
        self.webhooks.deliveries(self.scoped(query)).await
    }

    /// A page of the owner's deliveries with their logs.
    pub async fn delivery_logs(&self, query: DeliveryQuery) -> Result<LogPage, Error> {
        self.webhooks.delivery_logs(self.scoped(query)).await
    }

    fn scoped(&self, query: DeliveryQuery) -> DeliveryQuery {
        DeliveryQuery { owner: Some(self.owner.clone()), ..query }
    }

    /// Changes one of the owner's subscriptions.
    pub async fn update_subscription(
        &self,
        id: SubscriptionId,
        update: SubscriptionUpdate,
    ) -> Result<Subscription, Error> {
        self.subscription(id).await?;
        self.webhooks.update_subscription(id, update).await
    }

    /// Deletes one of the owner's subscriptions with its deliveries.
    pub async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), Error> {
        self.subscription(id).await?;
        self.webhooks.delete_subscription(id).await
    }

    /// Enables one of the owner's subscriptions.
    pub async fn enable(&self, id: SubscriptionId) -> Result<(), Error> {
        self.subscription(id).await?;
        self.webhooks.enable(id).await
    }

    /// Disables one of the owner's subscriptions.
    pub async fn disable(&self, id: SubscriptionId, reason: &str) -> Result<(), Error> {
        self.subscription(id).await?;
        self.webhooks.disable(id, reason).await
    }

    /// Rotates one of the owner's subscriptions' secret.
    pub async fn rotate_secret(&self, id: SubscriptionId, grace: Duration) -> Result<Secret, Error> {
        self.subscription(id).await?;
        self.webhooks.rotate_secret(id, grace).await
    }

    /// Recovers one of the owner's subscriptions after an outage.
    pub async fn recover(&self, id: SubscriptionId, since: DateTime<Utc>) -> Result<u64, Error> {
        self.subscription(id).await?;
        self.webhooks.recover(id, since).await
    }

    /// Sends a test event to one of the owner's subscriptions.
    pub async fn send_test(&self, id: SubscriptionId) -> Result<DeliveryId, Error> {
        self.subscription(id).await?;
        self.webhooks.send_test(id).await
    }

    /// Sends one of the owner's deliveries again.
    pub async fn resend(&self, id: DeliveryId) -> Result<(), Error> {
        self.delivery(id).await?;
        self.webhooks.resend(id).await
    }

    /// What one of the owner's subscriptions' attempts add up to.
    pub async fn stats(&self, id: SubscriptionId) -> Result<SubscriptionStats, Error> {
        self.subscription(id).await?;
        self.webhooks.stats(id).await
    }

    /// One of the owner's subscriptions' deliveries counted by state.
    pub async fn delivery_counts(&self, id: SubscriptionId) -> Result<DeliveryCounts, Error> {
        self.subscription(id).await?;
        self.webhooks.delivery_counts(id).await
    }

    /// What the store shows of one of the owner's subscriptions'
    /// operational events.
    pub async fn operational_events(
        &self,
        id: SubscriptionId,
        since: DateTime<Utc>,
    ) -> Result<Vec<OperationalEvent>, Error> {
        self.subscription(id).await?;
        self.webhooks.operational_events(id, since).await
    }
}
