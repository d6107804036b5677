//! What a subscription's or an owner's deliveries and attempts add up to.

use chrono::{DateTime, Utc};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use super::Webhooks;
use crate::error::Error;
use crate::model::{Owner, SubscriptionId};
use crate::store::{DeliveryCounts, SubscriptionStats};

/// What an owner's subscriptions add up to; from [`Webhooks::owner_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct OwnerStats {
    /// Its subscriptions.
    pub subscriptions: u64,
    /// Those disabled.
    pub disabled: u64,
    /// Their deliveries by state.
    pub deliveries: DeliveryCounts,
    /// Attempts made to them, kept in the logs.
    pub attempts: u64,
    /// Those a 2xx acknowledged.
    pub succeeded: u64,
    /// When the last acknowledged attempt started.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the last failed attempt started.
    pub last_failure_at: Option<DateTime<Utc>>,
}

impl Webhooks {
    /// What a subscription's attempts add up to: attempts, success rate,
    /// last success and failure, consecutive failures.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn stats(&self, id: SubscriptionId) -> Result<SubscriptionStats, Error> {
        Ok(self.inner.store.subscription_stats(id).await?)
    }

    /// A subscription's deliveries counted by state.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery_counts(&self, id: SubscriptionId) -> Result<DeliveryCounts, Error> {
        Ok(self.inner.store.delivery_counts(id).await?)
    }

    /// What an owner's subscriptions add up to: how many, how many disabled,
    /// their deliveries by state and their attempts.
    pub async fn owner_stats(&self, owner: &Owner) -> Result<OwnerStats, Error> {
        let mut stats = OwnerStats::default();
        for subscription in self.subscriptions(owner).await? {
            stats.subscriptions += 1;
            stats.disabled += u64::from(!subscription.is_enabled());
            let counts = self.inner.store.delivery_counts(subscription.id).await?;
            stats.deliveries.pending += counts.pending;
            stats.deliveries.delivered += counts.delivered;
            stats.deliveries.dropped += counts.dropped;
            let attempts = self.inner.store.subscription_stats(subscription.id).await?;
            stats.attempts += attempts.attempts;
            stats.succeeded += attempts.succeeded;
            stats.last_success_at = stats.last_success_at.max(attempts.last_success_at);
            stats.last_failure_at = stats.last_failure_at.max(attempts.last_failure_at);
        }
        Ok(stats)
    }
}
