//! [`Retention`]: deleting what is finished and forgetting idempotency keys
//! no longer held, so a store does not grow without end.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Deletes finished deliveries and forgets idempotency keys no longer held.
/// A store does one batch; the loop over batches is core's.
#[async_trait]
pub trait Retention: Send + Sync + Debug + 'static {
    /// Deletes up to `limit` (at least 1) deliveries that were delivered or
    /// dropped before `older_than`, oldest first, with their attempt logs, in
    /// one step; returns how many it deleted. Pending deliveries, held ones
    /// included, are never touched, however old.
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64>;

    /// Forgets up to `limit` (at least 1) idempotency keys held until `now`
    /// or before, in one step; returns how many. A key no longer held is
    /// ignored by publishing already; this only frees its room.
    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64>;

    /// Forgets every idempotency key no longer held at `now`, at most
    /// `batch` per step (0 counts as 1); returns how many.
    async fn forget_expired_keys(&self, now: DateTime<Utc>, batch: usize) -> StoreResult<u64> {
        in_batches(batch, |limit| self.forget_keys(now, limit)).await
    }

    /// Deletes every delivery finished before `older_than`, at most `batch`
    /// per step (0 counts as 1), until none is left, so other work
    /// interleaves and a purge never holds the store for long. Returns how
    /// many it deleted. When a step fails, the steps before it stay done.
    async fn purge_finished(&self, older_than: DateTime<Utc>, batch: usize) -> StoreResult<u64> {
        in_batches(batch, |limit| self.purge_batch(older_than, limit)).await
    }
}

/// Runs `step` with a limit of `batch` (0 counts as 1) until a step does
/// less than the limit; returns how much all the steps did.
async fn in_batches<F, Fut>(batch: usize, mut step: F) -> StoreResult<u64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = StoreResult<u64>>,
{
    let batch = batch.max(1);
    let mut done = 0;
    loop {
        let did = step(batch).await?;
        done += did;
        if did < batch as u64 {
            return Ok(done);
        }
    }
}
