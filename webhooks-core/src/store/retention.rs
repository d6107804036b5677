//! [`Retention`]: deleting what is finished, so a store does not grow
//! without end.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Deletes finished deliveries.
#[async_trait]
pub trait Retention: Send + Sync + Debug + 'static {
    /// Deletes the deliveries that were delivered or dropped before
    /// `older_than`, with their attempt logs; returns how many it deleted.
    ///
    /// It deletes at most `batch` deliveries per step (0 counts as 1) and
    /// loops until none is left, so other work interleaves and a purge never
    /// holds the store for long. Pending deliveries, held ones included, are
    /// never touched, however old. When a step fails, the steps before it
    /// stay done.
    async fn purge_finished(&self, older_than: DateTime<Utc>, batch: usize) -> StoreResult<u64>;
}
