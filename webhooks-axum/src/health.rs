//! An endpoint's health: its attempt stats, and its attempts and failures
//! hour by hour over the last day, for the chart.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Serialize;
use webhooks_core::{DeliveryQuery, Error, Subscription, SubscriptionStats, Webhooks};

/// Hours in the chart.
pub(crate) const HOURS: usize = 24;

/// Deliveries created this long before the chart starts are not read: an
/// attempt in the last day belongs to a delivery created at most this long
/// before it under every built-in preset but the longest Standard Webhooks
/// schedule.
const LOOKBACK: Duration = Duration::hours(24);

/// At most this many deliveries are read per chart, so one busy endpoint
/// cannot make a page slow; the chart says when it is cut.
const MAX_DELIVERIES: usize = 2000;

/// One hour of the chart.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Hour {
    /// When it starts.
    pub(crate) start: DateTime<Utc>,
    /// Attempts started in it.
    pub(crate) attempts: u32,
    /// Those not acknowledged with a 2xx.
    pub(crate) failures: u32,
}

/// The last day of one endpoint, oldest hour first.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LastDay {
    pub(crate) hours: Vec<Hour>,
    /// Whether the deliveries read were cut at the cap.
    pub(crate) partial: bool,
}

/// An endpoint's stats and its last day.
pub(crate) struct Health {
    pub(crate) stats: SubscriptionStats,
    pub(crate) last_day: LastDay,
}

pub(crate) async fn health(webhooks: &Webhooks, subscription: &Subscription) -> Result<Health, Error> {
    let stats = webhooks.stats(subscription.id).await?;
    let last_day = last_day(webhooks, subscription, webhooks.clock().now()).await?;
    Ok(Health { stats, last_day })
}

/// Attempts per hour over the 24 hours up to `now`: read from the logs of
/// the endpoint's recent deliveries (the store has no query by attempt
/// time).
pub(crate) async fn last_day(
    webhooks: &Webhooks,
    subscription: &Subscription,
    now: DateTime<Utc>,
) -> Result<LastDay, Error> {
    let this_hour = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    let first = this_hour - Duration::hours(HOURS as i64 - 1);
    let mut hours: Vec<Hour> =
        (0..HOURS).map(|i| Hour { start: first + Duration::hours(i as i64), ..Hour::default() }).collect();
    let mut query = DeliveryQuery::new()
        .owner(subscription.owner.clone())
        .subscription(subscription.id)
        .created_from(first - LOOKBACK)
        .limit(500);
    let mut read = 0;
    let partial = loop {
        let page = webhooks.deliveries(query.clone()).await?;
        for delivery in &page.deliveries {
            for attempt in webhooks.attempts(delivery.id).await? {
                if attempt.started_at < first || attempt.started_at > now {
                    continue;
                }
                let index = ((attempt.started_at - first).num_hours() as usize).min(HOURS - 1);
                hours[index].attempts += 1;
                hours[index].failures += u32::from(!attempt.succeeded());
            }
        }
        read += page.deliveries.len();
        match page.next {
            Some(_) if read >= MAX_DELIVERIES => break true,
            Some(next) => query.after = Some(next),
            None => break false,
        }
    };
    Ok(LastDay { hours, partial })
}
