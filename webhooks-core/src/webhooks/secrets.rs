//! Signing secrets: rotated with a grace period, sealed at rest.

use std::time::Duration;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

use super::Webhooks;
use crate::error::Error;
use crate::model::{PreviousSecret, SubscriptionId};
use crate::secret::Secret;

/// The longest grace period of a rotated-out secret.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

impl Webhooks {
    /// Replaces a subscription's secret with a new generated one and returns
    /// it. The old secret stays valid for `grace`. Where the scheme carries
    /// a signature per secret ([`SignatureScheme::signs_with_every_secret`](crate::SignatureScheme::signs_with_every_secret):
    /// SmartlyQ, Standard Webhooks) requests are signed with both, so
    /// receivers switch over at their pace. DeepSmith's header carries one
    /// signature: requests are signed with the new secret at once, and its
    /// receivers must accept either secret during the grace
    /// ([`DeepSmithScheme::verify_header_any`](crate::DeepSmithScheme::verify_header_any)).
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn rotate_secret(&self, id: SubscriptionId, grace: Duration) -> Result<Secret, Error> {
        if grace > MAX_GRACE {
            return Err(Error::invalid("grace period", "must be at most 30 days"));
        }
        let mut subscription = self.subscription(id).await?;
        let valid_until = self.inner.clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
        let secret = self.inner.preset.scheme().new_secret();
        let old = std::mem::replace(&mut subscription.secret, secret.clone());
        subscription.previous_secret = Some(PreviousSecret { secret: old, valid_until });
        self.inner.store.update_subscription(&subscription).await?;
        tracing::info!(subscription_id = %id, "secret rotated");
        Ok(secret)
    }

    /// Seals again, with the key that seals now, every subscription's
    /// secrets that are in the clear (stored before
    /// [`WebhooksBuilder::secret_keys`](crate::WebhooksBuilder::secret_keys) was given) or sealed with an older
    /// key of the ring, one subscription at a time; returns how many. Every
    /// dispatcher runs it as it starts; run it as a deploy step after
    /// adding a key, then drop the older key once it returns 0. Without
    /// keys it does nothing.
    ///
    /// # Errors
    ///
    /// A store error, or [`SealError`](crate::SealError) (as a store error) for a secret
    /// sealed with a key the ring does not hold.
    pub async fn reseal_secrets(&self) -> Result<u64, Error> {
        let resealed = self.inner.sealed.reseal().await?;
        if resealed > 0 {
            tracing::info!(resealed, "secrets sealed with the current key");
        }
        Ok(resealed)
    }
}
