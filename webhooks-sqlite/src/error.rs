//! The crate's error type.

use std::path::PathBuf;

use webhooks_core::StoreError;

/// What opening or using a [`SqliteStore`](crate::SqliteStore) can fail with,
/// naming the step that failed. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file could not be opened or set up (WAL, pragmas).
    #[error("could not open the SQLite database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite refused write-ahead logging (an in-memory database, say); the
    /// store needs it for readers beside a writer and for its durability.
    #[error("the SQLite database {path} stays in {mode:?} journal mode; the store needs WAL")]
    NotWal {
        /// The file.
        path: PathBuf,
        /// The journal mode it kept.
        mode: String,
    },
    /// A newer version of this crate wrote the database; it is left alone.
    #[error(transparent)]
    SchemaTooNew(#[from] webhooks_core::sql::SchemaTooNew),
    /// Opened without migrating, the database's schema is older than this
    /// crate's: run [`SqliteStore::migrate`](crate::SqliteStore::migrate)
    /// first.
    #[error(transparent)]
    SchemaBehind(#[from] webhooks_core::sql::SchemaBehind),
    /// A migration applied to the database is not the one this crate
    /// ships; the database is left alone.
    #[error(transparent)]
    MigrationChanged(#[from] webhooks_core::sql::MigrationChanged),
    /// The file's schema version is not one this crate ever writes.
    #[error("the database schema version {found} is not one webhooks-sqlite writes")]
    SchemaUnknown {
        /// The file's `PRAGMA user_version`.
        found: i64,
    },
    /// Moving the schema up to `version` failed; the file keeps the version
    /// it had.
    #[error("could not migrate the database schema to version {version}")]
    Migrate {
        /// The version that could not be reached.
        version: i64,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A store operation failed in SQLite: busy past the timeout, I/O, a
    /// constraint, or a stored value that does not decode.
    #[error("could not {operation}")]
    Sqlite {
        /// What was being done, e.g. "claim due deliveries".
        operation: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The thread that owns the connection could not be started.
    #[error("could not start the SQLite connection thread")]
    Thread(#[source] std::io::Error),
    /// The connection thread gave no answer: it has stopped, or the
    /// operation panicked on it (and was rolled back).
    #[error("the SQLite connection thread gave no answer: it has stopped, or the operation panicked")]
    Stopped,
    /// The disk holding the database (or its WAL) is full: nothing of the
    /// operation was written, and writes resume once space is freed.
    #[error("could not {operation}: the disk is full; writes resume once space is freed")]
    DiskFull {
        /// What was being done.
        operation: &'static str,
    },
}

impl Error {
    /// Whether the disk was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::DiskFull { .. })
    }
}

/// SQLite's errors are transient when another connection holds the
/// database past the busy timeout, or the file cannot be written or opened
/// for now (permissions, a full disk): the same call may succeed later.
impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, ReadOnly};
        let code = match &error {
            Error::Sqlite { source: rusqlite::Error::SqliteFailure(failure, _), .. } => Some(failure.code),
            _ => None,
        };
        match (error, code) {
            (Error::Sqlite { operation, .. }, Some(DiskFull)) => {
                StoreError::unavailable(Error::DiskFull { operation })
            }
            (error @ Error::DiskFull { .. }, _)
            | (error, Some(DatabaseBusy | DatabaseLocked | ReadOnly | CannotOpen)) => {
                StoreError::unavailable(error)
            }
            (error, _) => StoreError::backend(error),
        }
    }
}

/// Whether `error` is the store's disk-full error.
pub(crate) fn is_disk_full(error: &StoreError) -> bool {
    match error {
        StoreError::Unavailable(source) => source.downcast_ref::<Error>().is_some_and(Error::is_disk_full),
        _ => false,
    }
}
