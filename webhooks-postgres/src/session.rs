//! Where publishing runs: the store's own transaction, or the host's client
//! or transaction, so the host's rows and its events commit together.

use std::future::Future;

use tokio_postgres::{Error, GenericClient, Statement};

mod sealed {
    pub trait Sealed {}
}

/// A tokio-postgres client or transaction, or `deadpool-postgres`' pooled
/// client or transaction, that [`PostgresStore::publish_in`] can publish
/// on. Implemented for those four and nothing else: a host on
/// tokio-postgres, on this crate's pool or on a pool of its own passes what
/// it has.
///
/// [`PostgresStore::publish_in`]: crate::PostgresStore::publish_in
pub trait Session: Sync + sealed::Sealed {
    /// The tokio-postgres client the statements run on.
    #[doc(hidden)]
    type Client: GenericClient + Sync;

    /// The client the statements run on.
    #[doc(hidden)]
    fn client(&self) -> &Self::Client;

    /// `sql` prepared on this connection: from the pool's statement cache
    /// where there is one.
    #[doc(hidden)]
    fn statement(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send;
}

// A tokio-postgres session has no statement cache and prepares each
// statement anew: one more round trip, on the host's path only.

impl sealed::Sealed for tokio_postgres::Transaction<'_> {}

impl<'t> Session for tokio_postgres::Transaction<'t> {
    type Client = Self;

    fn client(&self) -> &Self {
        self
    }

    fn statement(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send {
        self.prepare(sql)
    }
}

impl sealed::Sealed for tokio_postgres::Client {}

impl Session for tokio_postgres::Client {
    type Client = Self;

    fn client(&self) -> &Self {
        self
    }

    fn statement(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send {
        self.prepare(sql)
    }
}

impl sealed::Sealed for deadpool_postgres::Transaction<'_> {}

impl<'t> Session for deadpool_postgres::Transaction<'t> {
    type Client = tokio_postgres::Transaction<'t>;

    fn client(&self) -> &Self::Client {
        self
    }

    fn statement(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send {
        self.prepare_cached(sql)
    }
}

impl sealed::Sealed for deadpool_postgres::Client {}

impl Session for deadpool_postgres::Client {
    type Client = tokio_postgres::Client;

    fn client(&self) -> &Self::Client {
        self
    }

    fn statement(&self, sql: &str) -> impl Future<Output = Result<Statement, Error>> + Send {
        self.prepare_cached(sql)
    }
}
