//! Reading deliveries and their attempt logs, a delivery pending while its
//! endpoint is disabled reported held.

use std::collections::HashMap;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use super::Webhooks;
use crate::error::Error;
use crate::model::{Attempt, Delivery, DeliveryId, DeliveryState};
use crate::store::{DeliveryQuery, StateFilter, StoreError};

/// A page of [`Webhooks::deliveries`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DeliveryPage {
    /// The deliveries, in creation order.
    pub deliveries: Vec<Delivery>,
    /// The cursor of the next page, when this one was full.
    pub next: Option<DeliveryId>,
}

/// A delivery with its attempt log.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, first first.
    pub attempts: Vec<Attempt>,
}

/// A page of [`Webhooks::delivery_logs`]: deliveries with their attempts.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct LogPage {
    /// The deliveries with their logs, in creation order.
    pub logs: Vec<DeliveryLog>,
    /// The cursor of the next page, when this one was full.
    pub next: Option<DeliveryId>,
}

impl Webhooks {
    /// One delivery, if it exists; held when pending while its subscription
    /// is disabled.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, Error> {
        let Some(delivery) = self.inner.store.delivery(id).await? else { return Ok(None) };
        let mut one = [delivery];
        self.report_held(&mut one, None).await?;
        let [delivery] = one;
        Ok(Some(delivery))
    }

    /// Marks pending deliveries whose subscription is disabled as
    /// [`DeliveryState::Held`], the state a store never keeps: one
    /// subscription lookup per distinct subscription, none when the store
    /// already filtered by `filter`.
    pub(super) async fn report_held(
        &self,
        deliveries: &mut [Delivery],
        filter: Option<StateFilter>,
    ) -> Result<(), Error> {
        let pending = deliveries.iter_mut().filter(|d| d.state == DeliveryState::Pending);
        match filter {
            // The store found exactly the held ones.
            Some(StateFilter::Held) => pending.for_each(|d| d.state = DeliveryState::Held),
            Some(StateFilter::Pending | StateFilter::Delivered | StateFilter::Dropped) => {}
            None => {
                let mut disabled = HashMap::new();
                for delivery in pending {
                    let held = match disabled.get(&delivery.subscription_id) {
                        Some(held) => *held,
                        None => {
                            let subscription =
                                self.inner.store.subscription(delivery.subscription_id).await?;
                            let held = subscription.is_some_and(|s| !s.is_enabled());
                            disabled.insert(delivery.subscription_id, held);
                            held
                        }
                    };
                    if held {
                        delivery.state = DeliveryState::Held;
                    }
                }
            }
        }
        Ok(())
    }

    /// A delivery's attempt log, first first.
    pub async fn attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, Error> {
        Ok(self.inner.store.attempts(id).await?)
    }

    /// A page of deliveries matching `query`, in creation order; pass
    /// `page.next` as `query.after` for the page after. A `limit` of 0 means
    /// 100; more than 1000 is refused. Pending deliveries of a disabled
    /// subscription are reported held.
    pub async fn deliveries(&self, mut query: DeliveryQuery) -> Result<DeliveryPage, Error> {
        match query.limit {
            0 => query.limit = 100,
            1..=1000 => {}
            _ => return Err(Error::invalid("limit", "must be at most 1000")),
        }
        let mut deliveries = self.inner.store.list_deliveries(&query).await?;
        self.report_held(&mut deliveries, query.state).await?;
        let next = (deliveries.len() == query.limit).then(|| deliveries.last().map(|d| d.id)).flatten();
        Ok(DeliveryPage { deliveries, next })
    }

    /// One delivery with its whole attempt log; held when pending while its
    /// subscription is disabled.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery_log(&self, id: DeliveryId) -> Result<DeliveryLog, Error> {
        let delivery = self.delivery(id).await?.ok_or(StoreError::DeliveryNotFound(id))?;
        let attempts = self.inner.store.attempts(id).await?;
        Ok(DeliveryLog { delivery, attempts })
    }

    /// A page of deliveries matching `query`, as [`Webhooks::deliveries`]
    /// lists them, each with its whole attempt log: the attempts of the
    /// whole page in one store call ([`Admin::attempts_of`](crate::Admin::attempts_of)),
    /// besides the listing's own.
    ///
    /// ```
    /// use webhooks_core::{DeliveryQuery, Preset, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::deepsmith())
    ///     .build()?;
    /// webhooks
    ///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
    ///     .await?;
    /// for n in 0..3 {
    ///     webhooks.publish("iq.status_updated", serde_json::json!({ "n": n })).await?;
    /// }
    /// let page = webhooks.delivery_logs(DeliveryQuery::new().limit(2)).await?;
    /// assert_eq!(page.logs.len(), 2);
    /// assert!(page.logs.iter().all(|log| log.attempts.is_empty()), "nothing attempted yet");
    /// let rest = webhooks.delivery_logs(DeliveryQuery::new().after(page.next)).await?;
    /// assert_eq!(rest.logs.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delivery_logs(&self, query: DeliveryQuery) -> Result<LogPage, Error> {
        let page = self.deliveries(query).await?;
        let ids: Vec<DeliveryId> = page.deliveries.iter().map(|delivery| delivery.id).collect();
        let mut attempts: std::collections::HashMap<DeliveryId, Vec<Attempt>> =
            self.inner.store.attempts_of(&ids).await?.into_iter().collect();
        let logs = page
            .deliveries
            .into_iter()
            .map(|delivery| DeliveryLog {
                attempts: attempts.remove(&delivery.id).unwrap_or_default(),
                delivery,
            })
            .collect();
        Ok(LogPage { logs, next: page.next })
    }
}
