//! The crate's error type, and why a transaction was abandoned.

use webhooks_core::StoreError;

/// What connecting to or using a [`PostgresStore`](crate::PostgresStore) can
/// fail with, naming the step that failed. Never holds a password or a
/// secret: servers are named by [`Target`](crate::Target), which leaves the
/// password out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection URL could not be used. The URL itself is not repeated:
    /// it may hold a password.
    #[error("the PostgreSQL URL is not valid: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The root certificates named by `sslrootcert` could not be read.
    #[error("could not read the root certificates in {path}: {reason}")]
    RootCertificates {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS could not be set up.
    #[error("could not set TLS up: {reason}")]
    Tls {
        /// What went wrong.
        reason: String,
    },
    /// The connection pool could not be built.
    #[error("could not build the connection pool")]
    PoolSetup(#[source] deadpool_postgres::BuildError),
    /// No connection to the server could be made: it is down, refused the
    /// credentials, or failed the TLS handshake.
    #[error("could not connect to PostgreSQL at {target}")]
    Connect {
        /// The server, without the password.
        target: String,
        /// What the pool or the server said.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// A newer version of this crate wrote the database; it is left alone.
    #[error(transparent)]
    SchemaTooNew(#[from] webhooks_core::sql::SchemaTooNew),
    /// Opened without migrating, the database's schema is older than this
    /// crate's: run [`PostgresStore::migrate`](crate::PostgresStore::migrate)
    /// first.
    #[error(transparent)]
    SchemaBehind(#[from] webhooks_core::sql::SchemaBehind),
    /// A migration applied to the database is not the one this crate
    /// ships; the database is left alone.
    #[error(transparent)]
    MigrationChanged(#[from] webhooks_core::sql::MigrationChanged),
    /// Moving the schema up to `version` failed; the database keeps the
    /// version it had (migrations are transactional).
    #[error("could not migrate the database schema to version {version}")]
    Migrate {
        /// The version that could not be reached.
        version: i64,
        /// What PostgreSQL said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The pool gave no connection in time for an operation.
    #[error("could not {operation}: no database connection")]
    Pool {
        /// What was being done, e.g. "claim due deliveries".
        operation: &'static str,
        /// What the pool said.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// A store operation failed in PostgreSQL: a lost connection, a
    /// constraint, a deadlock that outlasted the retries.
    #[error("could not {operation}")]
    Query {
        /// What was being done, e.g. "claim due deliveries".
        operation: &'static str,
        /// What PostgreSQL said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection was lost while the transaction committed: PostgreSQL
    /// may or may not have made the change, so it is not tried again on its
    /// own (a publish could be made twice, an attempt recorded twice). Not
    /// transient: a publish with an idempotency key can be repeated safely;
    /// an attempt whose record is unconfirmed is made again when its lease
    /// ends.
    #[error(
        "could not {operation}: the connection was lost while committing, so whether it took effect is unknown"
    )]
    Unconfirmed {
        /// What was being done.
        operation: &'static str,
        /// What the driver said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Publishing in the host's sqlx transaction failed.
    #[cfg(feature = "sqlx")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
    #[error("could not {operation}")]
    Sqlx {
        /// What was being done.
        operation: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value does not decode into the model (a count out of range,
    /// an unknown state): the data was changed outside this crate.
    #[error("could not {operation}: corrupt data: {detail}")]
    Corrupt {
        /// What was being done.
        operation: &'static str,
        /// What did not decode.
        detail: String,
    },
}

/// PostgreSQL's errors are transient when no connection could be had or
/// the one in use was lost, or the server said it is shutting down, not yet
/// accepting connections, or out of them: the same call may succeed once it
/// is back.
impl From<Error> for StoreError {
    fn from(error: Error) -> Self {
        let transient = match &error {
            Error::Pool { .. } | Error::Connect { .. } => true,
            Error::Query { source, .. } => lost_connection(source),
            #[cfg(feature = "sqlx")]
            Error::Sqlx { source, .. } => sqlx_lost_connection(source),
            _ => false,
        };
        if transient { StoreError::unavailable(error) } else { StoreError::backend(error) }
    }
}

/// Whether a query failed for the connection, not for what it asked.
pub(crate) fn lost_connection(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        // Connection exceptions, admin shutdown, cannot connect now, crash
        // shutdown, too many connections.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
        }
        // No SQL state: the connection closed or its I/O failed.
        None => {
            error.is_closed()
                || std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
        }
    }
}

/// Whether sqlx failed for the connection (or its pool), not for what it
/// asked: the same classes as [`lost_connection`].
#[cfg(feature = "sqlx")]
fn sqlx_lost_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Why a transaction was abandoned: PostgreSQL failed, a stored value did
/// not decode, or the operation hit one of the store's typed errors (a
/// missing subscription, say).
#[derive(Debug)]
pub enum Abort {
    Postgres(tokio_postgres::Error),
    /// The commit's outcome is unknown: the connection went during it.
    Unconfirmed(tokio_postgres::Error),
    Corrupt(String),
    Store(StoreError),
    /// sqlx failed, publishing in a host's sqlx transaction.
    #[cfg(feature = "sqlx")]
    Sqlx(sqlx::Error),
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for Abort {
    fn from(error: sqlx::Error) -> Self {
        Self::Sqlx(error)
    }
}

impl From<tokio_postgres::Error> for Abort {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(error)
    }
}

impl From<StoreError> for Abort {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl From<webhooks_core::sql::CorruptRow> for Abort {
    fn from(error: webhooks_core::sql::CorruptRow) -> Self {
        Self::Corrupt(error.0)
    }
}

impl Abort {
    /// The public error, naming `operation`.
    pub(crate) fn into_store_error(self, operation: &'static str) -> StoreError {
        match self {
            Self::Postgres(source) => Error::Query { operation, source }.into(),
            Self::Unconfirmed(source) => Error::Unconfirmed { operation, source }.into(),
            Self::Corrupt(detail) => Error::Corrupt { operation, detail }.into(),
            Self::Store(error) => error,
            #[cfg(feature = "sqlx")]
            Self::Sqlx(source) => Error::Sqlx { operation, source }.into(),
        }
    }
}

/// What a store step returns inside its transaction.
pub type Step<T> = Result<T, Abort>;
