//! The part of an endpoint's settings its owner may change, from the API or
//! a form: which of the host's retry policies it follows, after how many
//! failures it is disabled, and how many deliveries it keeps while disabled.

use webhooks_core::{DisablePolicy, EndpointSettings, RetryChoice, Subscription};

use crate::{Failure, Shared};

/// An owner's change of an endpoint's delivery policy; `None` keeps a part.
#[derive(Debug, Default)]
pub(crate) struct PolicyChange {
    /// One of the policies the host offers.
    pub(crate) retry_policy: Option<String>,
    /// Failures in a row that disable the endpoint, at least 1.
    pub(crate) disable_after_failures: Option<u32>,
    /// Deliveries kept while disabled, at most the host's limit.
    pub(crate) held_limit: Option<u32>,
}

impl PolicyChange {
    /// Whether it changes anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.retry_policy.is_none() && self.disable_after_failures.is_none() && self.held_limit.is_none()
    }

    /// `subscription`'s settings with the change, or why the change is refused.
    pub(crate) fn apply(
        self,
        shared: &Shared,
        subscription: &Subscription,
    ) -> Result<EndpointSettings, Failure> {
        let mut settings = subscription.settings.clone();
        if let Some(name) = self.retry_policy {
            // The current policy may stay even when the host no longer offers it.
            let current = matches!(&settings.retry, Some(RetryChoice::Named(kept)) if *kept == name);
            if !current && !shared.offered.contains(&name) {
                return Err(Failure::BadRequest(format!("retry_policy: {name:?} is not offered")));
            }
            settings.retry = Some(RetryChoice::named(name));
        }
        if let Some(failures) = self.disable_after_failures {
            if failures == 0 {
                return Err(Failure::BadRequest("disable_after_failures: must be at least 1".into()));
            }
            let on_gone = shared.webhooks.preset().disable_policy_for(subscription).on_gone();
            settings.disable =
                Some(DisablePolicy::after_consecutive_failures(failures).disable_on_gone(on_gone));
        }
        if let Some(held) = self.held_limit {
            if held > shared.held_limit_at_most {
                return Err(Failure::BadRequest(format!(
                    "held_limit: must be at most {}",
                    shared.held_limit_at_most
                )));
            }
            settings.held_limit = Some(held);
        }
        Ok(settings)
    }
}
