//! The store's grouped writes: writes that may share a transaction, and its
//! commit, with the writes queued beside them (see [`crate::worker`]).

use rusqlite::Transaction;
use webhooks_core::StoreResult;

use crate::SqliteStore;
use crate::store::Abort;
use crate::worker::Durability;

impl SqliteStore {
    /// A durable write that may share its transaction and its commit; it
    /// returns once the commit holding its rows is on disk.
    pub(crate) async fn grouped_write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Abort> + Send + 'static,
    ) -> StoreResult<T> {
        self.grouped(Durability::Full, operation, work).await
    }

    /// A write of leases only that may share its transaction: alone or with
    /// other lease writes it commits without waiting for the disk (see
    /// `lease_write`), beside durable writes it is synced with them.
    pub(crate) async fn grouped_lease_write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Abort> + Send + 'static,
    ) -> StoreResult<T> {
        self.grouped(Durability::Relaxed, operation, work).await
    }

    async fn grouped<T: Send + 'static>(
        &self,
        durability: Durability,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Abort> + Send + 'static,
    ) -> StoreResult<T> {
        let result = self
            .worker
            .grouped(durability, operation, move |db| {
                let before = db.total_changes();
                work(db)
                    .map(|value| (value, db.total_changes() > before))
                    .map_err(|abort| abort.into_store_error(operation))
            })
            .await;
        self.watch_disk(result).await
    }
}
