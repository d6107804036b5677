//! What a dispatcher takes from the facade that builds it: the parts it
//! reads, and the little it has the facade do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::error::Error;
use crate::model::Subscription;
use crate::operational::{OperationalEvent, OperationalHook};
use crate::preset::Preset;
use crate::retry::{RetryPolicy, Schedule};
use crate::settings::RetryChoice;
use crate::store::Store;

/// The facade's parts a dispatcher works with, handed over by
/// [`Webhooks::dispatcher`](crate::Webhooks::dispatcher).
pub(crate) struct Parts {
    /// The store as the facade uses it: secrets opened on the way out.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Its scheme signs; its retry policy and disable rule apply to
    /// subscriptions that name none of their own.
    pub(crate) preset: Preset,
    /// Retry policies by name: the presets', then the host's.
    pub(crate) policies: BTreeMap<String, Arc<dyn RetryPolicy>>,
    /// Notified when the facade makes new work (a publish, a resend...).
    pub(crate) work: Arc<Notify>,
    /// Notified when an attempt is recorded, for outcome waits.
    pub(crate) settled: Arc<Notify>,
    /// The host's hook for operational events.
    pub(crate) operational: Option<OperationalHook>,
    /// What the facade does for the dispatcher.
    pub(crate) upkeep: Arc<dyn Upkeep>,
}

/// What a dispatcher has its facade do, off the attempt path: publish
/// operational webhooks, and keep house.
#[async_trait]
pub(crate) trait Upkeep: Send + Sync {
    /// Whether operational events are published as webhooks.
    fn publishes_operational(&self) -> bool;

    /// Publishes `event` as a webhook to the operational owner's
    /// subscriptions; a failure is logged.
    async fn publish_operational(&self, event: OperationalEvent);

    /// Seals again the secrets that are in the clear or under an older key.
    async fn reseal_secrets(&self) -> Result<u64, Error>;

    /// Drops the held deliveries of disabled endpoints past their limits.
    async fn trim_held(&self) -> Result<u64, Error>;

    /// Forgets the idempotency keys whose window has ended.
    async fn forget_expired_keys(&self) -> Result<u64, Error>;
}

impl Parts {
    /// The retry policy `subscription` follows: the one it names or its own
    /// waits; the preset's when it has none. An error naming the policy
    /// when this instance does not know it.
    pub(crate) fn retry_for(&self, subscription: &Subscription) -> Result<Arc<dyn RetryPolicy>, Error> {
        match &subscription.settings.retry {
            None => Ok(self.preset.shared_retry()),
            Some(RetryChoice::Named(name)) => {
                self.policies.get(name).cloned().ok_or_else(|| {
                    Error::invalid("retry", format!("no retry policy is registered as {name:?}"))
                })
            }
            Some(RetryChoice::WaitsMs(waits)) => {
                Ok(Arc::new(Schedule::new(waits.iter().map(|ms| Duration::from_millis(*ms)))?))
            }
        }
    }

    /// Hands `event` to the host's hook, if it gave one.
    pub(crate) fn hear(&self, event: &OperationalEvent) {
        if let Some(hook) = &self.operational {
            (hook.0)(event);
        }
    }
}
