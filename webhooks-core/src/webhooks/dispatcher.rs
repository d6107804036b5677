//! Handing a dispatcher the facade's parts, and doing for it what goes
//! through the facade's own calls.

use std::sync::Arc;

use async_trait::async_trait;

use super::Webhooks;
use crate::dispatch::{DispatcherBuilder, Parts, Upkeep};
use crate::error::Error;
use crate::operational::OperationalEvent;

impl Webhooks {
    /// Starts configuring a dispatcher that delivers this facade's queue.
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatch")))]
    pub fn dispatcher(&self) -> DispatcherBuilder {
        let inner = &self.inner;
        DispatcherBuilder::new(Parts {
            store: Arc::clone(&inner.store),
            clock: Arc::clone(&inner.clock),
            preset: inner.preset.clone(),
            policies: inner.policies.clone(),
            work: Arc::clone(&inner.work),
            settled: Arc::clone(&inner.settled),
            operational: inner.operational.clone(),
            upkeep: Arc::new(self.clone()),
        })
    }
}

#[async_trait]
impl Upkeep for Webhooks {
    fn publishes_operational(&self) -> bool {
        self.inner.operational_owner.is_some()
    }

    async fn publish_operational(&self, event: OperationalEvent) {
        Webhooks::publish_operational(self, event).await;
    }

    async fn reseal_secrets(&self) -> Result<u64, Error> {
        Webhooks::reseal_secrets(self).await
    }

    async fn trim_held(&self) -> Result<u64, Error> {
        Webhooks::trim_held(self).await
    }

    async fn forget_expired_keys(&self) -> Result<u64, Error> {
        Webhooks::forget_expired_keys(self).await
    }
}
