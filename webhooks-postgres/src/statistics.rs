//! The planner's first statistics on a new database. The store's statements
//! are prepared once per connection, and PostgreSQL settles on a generic
//! plan at a statement's sixth run: on a new database that is while the
//! tables hold a few hundred rows and have no statistics, and a plan that
//! reads a small table whole stays until autovacuum's first `ANALYZE`, up
//! to a minute or more at full load. Gathering them once the queue has
//! grown invalidates those plans at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use deadpool_postgres::Pool;
use webhooks_core::ErrorChain;

/// Deliveries published through this store before it looks.
const ANALYZE_AFTER: u64 = 5_000;

/// Whether this store has looked yet, and what it published before.
#[derive(Debug, Default)]
pub(crate) struct FirstStatistics {
    published: AtomicU64,
    looked: AtomicBool,
}

impl FirstStatistics {
    /// Counts `deliveries` published; past [`ANALYZE_AFTER`] the first
    /// time, gathers statistics in the background if the tables never had
    /// any.
    pub(crate) fn published(&self, pool: &Pool, deliveries: u64) {
        let before = self.published.fetch_add(deliveries, Ordering::Relaxed);
        if before + deliveries < ANALYZE_AFTER || self.looked.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(error) = analyze_if_never(&pool).await {
                tracing::warn!(error = %ErrorChain(&*error), "could not gather the first statistics of the queue's tables");
            }
        });
    }
}

async fn analyze_if_never(pool: &Pool) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = pool.get().await?;
    let never: bool = client
        .query_one(
            "SELECT coalesce((SELECT last_analyze IS NULL AND last_autoanalyze IS NULL \
             FROM pg_stat_user_tables WHERE relid = 'webhooks.deliveries'::regclass), true)",
            &[],
        )
        .await?
        .get(0);
    if never {
        client.batch_execute("ANALYZE webhooks.deliveries, webhooks.events, webhooks.attempts").await?;
        tracing::info!("gathered the queue's first statistics");
    }
    Ok(())
}
