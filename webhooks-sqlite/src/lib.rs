//! A durable SQLite [`Store`](webhooks_core::Store) for `webhooks-core`:
//! nothing accepted is ever lost.
//!
//! Every store operation is one transaction, committed with
//! `synchronous = FULL` in WAL mode: once a call returns, what it did
//! survives a crash, a `kill -9` or a power cut. On restart every pending
//! delivery resumes; the claims of a process that died come back when their
//! leases end. Several processes may share one file: claiming takes the write
//! lock first (`BEGIN IMMEDIATE`), so no two of them get the same delivery.
//!
//! ```
//! use webhooks_core::{Preset, Subscription, Webhooks};
//! use webhooks_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("webhooks.db");
//! let store = SqliteStore::open(&path).await?;
//! let webhooks = Webhooks::builder().store(store).preset(Preset::deepsmith()).build()?;
//! webhooks
//!     .subscribe(Subscription::builder("https://example.com/hooks").event_type("content.status_updated"))
//!     .await?;
//! webhooks.publish("content.status_updated", serde_json::json!({"id": 7})).await?;
//! drop(webhooks);
//!
//! // Another run, another process: the queue is still there.
//! let store = SqliteStore::open(&path).await?;
//! let webhooks = Webhooks::builder().store(store).preset(Preset::deepsmith()).build()?;
//! let subscription = webhooks.store().subscriptions().await?.remove(0);
//! assert_eq!(webhooks.delivery_counts(subscription.id).await?.pending, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Finished deliveries are kept with their attempt logs until
//! [`Retention::purge_finished`](webhooks_core::Retention::purge_finished)
//! deletes them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod error;
mod grouped;
mod queries;
mod schema;
mod store;
mod worker;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior};
pub use webhooks_core::sql::Migrated;

pub use crate::error::Error;
use crate::schema::Schema;
use crate::worker::Worker;
/// The `rusqlite` this store is built with. A host that publishes inside its
/// own transactions ([`SqliteStore::publish_in`]) uses this one: SQLite is
/// compiled into the build once (`libsqlite3-sys` links `sqlite3`), so the
/// host and the store must agree on one `rusqlite`.
pub use rusqlite;

/// The SQLite store; see the [crate docs](crate).
///
/// A handle on one connection, owned by a thread of its own so SQLite never
/// blocks the async executor. Clones share the connection and are cheap;
/// the connection closes when the last clone is dropped. Each
/// [`SqliteStore::open`] makes a new connection, and any number of them, in
/// one process or several, may use the same file.
#[derive(Clone)]
pub struct SqliteStore {
    worker: Worker,
    path: Arc<Path>,
    /// Where the last claim's walk over the subscriptions with work stopped.
    walked: Arc<Mutex<Vec<u8>>>,
    /// Whether the last write found the disk full.
    disk_full: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The newest schema version this crate writes and reads.
    pub const SCHEMA_VERSION: i64 = schema::VERSION;

    /// Opens the database at `path`, creating the file if it is missing and
    /// bringing its schema up to date.
    ///
    /// The connection uses WAL, `synchronous = FULL` and a 5 s busy timeout.
    /// The work happens on the connection's own thread; this future only
    /// waits for it. A host that migrates as a deploy step of its own calls
    /// [`SqliteStore::migrate`] there and [`SqliteStore::open_without_migrating`]
    /// here.
    ///
    /// # Errors
    ///
    /// [`Error::Open`] when the file cannot be opened or is not a database,
    /// [`Error::SchemaTooNew`] when a newer version of this crate wrote it
    /// and [`Error::MigrationChanged`] when a migration applied to it is not
    /// the one this crate ships (the file is left untouched either way),
    /// [`Error::Migrate`] when a migration fails (the file keeps its old
    /// schema).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::start(path.as_ref(), Schema::Migrate).await
    }

    /// Opens the database at `path` without changing its schema: it must
    /// exist and be exactly the schema this crate uses, every migration
    /// applied as shipped. For hosts that migrate in a step of their own.
    ///
    /// ```
    /// use webhooks_sqlite::{Error, SqliteStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("webhooks.db");
    /// // The deploy step, before the new version of the host starts:
    /// let migrated = SqliteStore::migrate(&path).await?;
    /// assert_eq!(migrated.to, SqliteStore::SCHEMA_VERSION);
    /// // The host:
    /// let store = SqliteStore::open_without_migrating(&path).await?;
    /// # drop(store);
    /// # let missing = dir.path().join("missing.db");
    /// # assert!(matches!(SqliteStore::open_without_migrating(&missing).await, Err(Error::Open { .. })));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`], and [`Error::Open`] when the file is
    /// missing, [`Error::SchemaBehind`] when it needs migrating.
    pub async fn open_without_migrating(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::start(path.as_ref(), Schema::Check).await
    }

    /// Brings the schema of the database at `path` up to date, creating the
    /// file if it is missing, and closes it: the deploy step of a host that
    /// opens its stores with [`SqliteStore::open_without_migrating`]. It
    /// records the checksum of each migration it applies, so a later open
    /// refuses a file another build of this crate migrated differently.
    /// Running it again does nothing.
    ///
    /// # Errors
    ///
    /// As [`SqliteStore::open`].
    pub async fn migrate(path: impl AsRef<Path>) -> Result<Migrated, Error> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || schema::migrate_file(&path)).await.map_err(|_| Error::Stopped)?
    }

    async fn start(path: &Path, schema: Schema) -> Result<Self, Error> {
        let worker = Worker::start(path.to_owned(), schema).await?;
        Ok(Self { worker, path: path.into(), walked: Arc::default(), disk_full: Arc::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connection now, after the calls already made, whatever
    /// clones remain (their later calls fail with [`Error::Stopped`]). The
    /// last connection to a file checkpoints the WAL into it and removes
    /// the `-wal` file, so a process that closes its store before exiting
    /// leaves the database in one file. Dropping every clone closes it
    /// too, but on the connection's thread, which a process that is
    /// exiting may not wait for.
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] when it was closed already; [`Error::Sqlite`]
    /// when SQLite could not close it cleanly.
    pub async fn close(&self) -> Result<(), Error> {
        self.worker.close().await
    }
}

/// Runs `work` in one transaction: committed when it succeeds, rolled back
/// when it fails.
fn in_transaction<T, E: From<rusqlite::Error>>(
    connection: &mut Connection,
    behavior: TransactionBehavior,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let transaction = connection.transaction_with_behavior(behavior)?;
    let value = work(&transaction)?;
    transaction.commit()?;
    Ok(value)
}
