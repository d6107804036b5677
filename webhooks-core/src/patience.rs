//! Waiting out a store that is unavailable for a while: the same call again,
//! backing off, while the store says the error is transient.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::ErrorChain;
use crate::store::StoreError;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

/// Runs `call` again and again while it fails with a transient error
/// ([`StoreError::is_transient`]), backing off from 50 ms to 2 s between
/// tries, never starting a try after `patience` has run out; `doing` names
/// the call in the logs.
pub(crate) async fn while_unavailable<T, F, Fut>(
    patience: Duration,
    doing: &'static str,
    call: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(usize::MAX)
        .with_jitter();
    call.retry(backoff)
        .when(StoreError::is_transient)
        // A wait that would end past the deadline is not taken.
        .adjust(move |_, wait| wait.filter(|wait| tokio::time::Instant::now() + *wait <= deadline))
        .notify(|error, wait| tracing::warn!(error = %ErrorChain(error), ?wait, "store unavailable; {doing} again"))
        .await
}
