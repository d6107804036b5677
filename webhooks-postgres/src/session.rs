//! Where publishing runs: the store's own transaction, or the host's client
//! or transaction on whichever driver it uses, so the host's rows and its
//! events commit together.
//!
//! The publishing statements are written once, against [`Connection`]: a
//! statement's text, its parameters as [`Param`]s and its rows read by
//! column through [`Columns`]. Each driver binds and reads those.

use std::future::Future;

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::Step;

/// A connection [`PostgresStore::publish_in`] can publish on, inside a
/// transaction: a tokio-postgres [`Transaction`](tokio_postgres::Transaction)
/// or [`Client`](tokio_postgres::Client), `deadpool-postgres`' pooled
/// transaction or client (whose statement cache it then uses), or, with the
/// `sqlx` feature, an sqlx PostgreSQL `Transaction` or
/// connection wrapped in `Sqlx`. Implemented for those and nothing else.
///
/// [`PostgresStore::publish_in`]: crate::PostgresStore::publish_in
pub trait Session: Connection {}

impl<C: Connection> Session for C {}

/// What the publishing statements need of a connection. Public only in
/// name: nothing outside this crate can name or implement it.
pub trait Connection: Sync {
    /// A row as the driver returns it.
    #[doc(hidden)]
    type Row: Columns + Send;

    /// Runs `sql` with `params` and returns its rows.
    #[doc(hidden)]
    fn fetch(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> impl Future<Output = Step<Vec<Self::Row>>> + Send;

    /// Runs `sql` with `params` and returns how many rows it changed.
    #[doc(hidden)]
    fn run(&self, sql: &'static str, params: &[Param<'_>]) -> impl Future<Output = Step<u64>> + Send;

    /// Runs `sql`, statements without parameters.
    #[doc(hidden)]
    fn run_batch(&self, sql: &'static str) -> impl Future<Output = Step<()>> + Send;
}

/// A statement's parameter: the types the publishing statements bind.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    /// `text`.
    Text(&'a str),
    /// `text[]`.
    Texts(&'a [&'a str]),
    /// `uuid`.
    Uuid(Uuid),
    /// `uuid[]`.
    Uuids(&'a [Uuid]),
    /// `bigint`, or `NULL`.
    Int(Option<i64>),
    /// `bigint[]`.
    Ints(&'a [i64]),
    /// `bytea`.
    Bytes(&'a [u8]),
    /// `bytea[]`.
    ByteStrings(&'a [&'a [u8]]),
    /// `bool[]`.
    Bools(&'a [bool]),
}

impl Param<'_> {
    /// The value as tokio-postgres binds it.
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Text(value) => value,
            Self::Texts(value) => value,
            Self::Uuid(value) => value,
            Self::Uuids(value) => value,
            Self::Int(value) => value,
            Self::Ints(value) => value,
            Self::Bytes(value) => value,
            Self::ByteStrings(value) => value,
            Self::Bools(value) => value,
        }
    }
}

/// A row's columns, by position, as the publishing statements read them.
pub trait Columns {
    /// A `uuid` column.
    #[doc(hidden)]
    fn uuid(&self, column: usize) -> Step<Uuid>;
    /// A `uuid[]` column.
    #[doc(hidden)]
    fn uuids(&self, column: usize) -> Step<Vec<Uuid>>;
    /// A `text` column.
    #[doc(hidden)]
    fn text(&self, column: usize) -> Step<String>;
    /// A `text[]` column.
    #[doc(hidden)]
    fn texts(&self, column: usize) -> Step<Vec<String>>;
    /// A `bool` column.
    #[doc(hidden)]
    fn boolean(&self, column: usize) -> Step<bool>;
    /// A `bigint` column.
    #[doc(hidden)]
    fn int(&self, column: usize) -> Step<i64>;
}

/// Implements [`Columns`] for a driver's row type, each column read with
/// the driver's `try_get`.
macro_rules! columns {
    ($row:ty, $try_get:path) => {
        impl Columns for $row {
            fn uuid(&self, column: usize) -> Step<Uuid> {
                Ok($try_get(self, column)?)
            }
            fn uuids(&self, column: usize) -> Step<Vec<Uuid>> {
                Ok($try_get(self, column)?)
            }
            fn text(&self, column: usize) -> Step<String> {
                Ok($try_get(self, column)?)
            }
            fn texts(&self, column: usize) -> Step<Vec<String>> {
                Ok($try_get(self, column)?)
            }
            fn boolean(&self, column: usize) -> Step<bool> {
                Ok($try_get(self, column)?)
            }
            fn int(&self, column: usize) -> Step<i64> {
                Ok($try_get(self, column)?)
            }
        }
    };
}

columns!(tokio_postgres::Row, tokio_postgres::Row::try_get);

/// The parameters as tokio-postgres binds them.
fn to_sql<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(Param::as_sql).collect()
}

/// Implements [`Connection`] for a tokio-postgres client or transaction,
/// or a pool's: `$client` is the tokio-postgres one under `$this`, and
/// `$prepare` turns the statement's text `$sql` into what it runs.
macro_rules! tokio_postgres_connection {
    ($([$($generics:tt)*] $ty:ty => |$this:ident, $sql:ident| ($client:expr, $prepare:expr);)*) => {$(
        impl<$($generics)*> Connection for $ty {
            type Row = tokio_postgres::Row;

            async fn fetch(&self, sql: &'static str, params: &[Param<'_>]) -> Step<Vec<Self::Row>> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                Ok($client.query(&statement, &to_sql(params)).await?)
            }

            async fn run(&self, sql: &'static str, params: &[Param<'_>]) -> Step<u64> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                Ok($client.execute(&statement, &to_sql(params)).await?)
            }

            async fn run_batch(&self, sql: &'static str) -> Step<()> {
                let $this = self;
                Ok($client.batch_execute(sql).await?)
            }
        }
    )*};
}

tokio_postgres_connection! {
    // The host's own connection: no statement cache, so each statement is
    // prepared as it runs (one more round trip, on the host's path only).
    ['t] tokio_postgres::Transaction<'t> => |this, sql| (this, this.prepare(sql));
    [] tokio_postgres::Client => |this, sql| (this, this.prepare(sql));
    // The pool's: statements come from the connection's cache.
    ['t] deadpool_postgres::Transaction<'t> => |this, sql| (&**this, this.prepare_cached(sql));
    [] deadpool_postgres::Client => |this, sql| (&***this, this.prepare_cached(sql));
}

/// A host's sqlx PostgreSQL connection or transaction, for
/// [`PostgresStore::publish_in`](crate::PostgresStore::publish_in): sqlx
/// runs statements on `&mut` connections, and this holds the borrow while
/// the publish runs.
///
/// ```no_run
/// use webhooks_core::{Publish, Webhooks};
/// use webhooks_postgres::{PostgresStore, Sqlx};
///
/// # async fn run(webhooks: Webhooks, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind("o-17").execute(&mut *tx).await?;
/// let event = webhooks.prepare(Publish::new("order.created", serde_json::json!({"id": "o-17"})))?;
/// PostgresStore::publish_in(&Sqlx::new(&mut tx), &[event]).await?;
/// tx.commit().await?; // the order and its event, or neither
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
#[derive(Debug)]
pub struct Sqlx<'c> {
    connection: tokio::sync::Mutex<&'c mut sqlx::PgConnection>,
}

#[cfg(feature = "sqlx")]
impl<'c> Sqlx<'c> {
    /// The host's connection, or its transaction (`&mut tx` derefs to one).
    pub fn new(connection: &'c mut sqlx::PgConnection) -> Self {
        Self { connection: tokio::sync::Mutex::new(connection) }
    }
}

#[cfg(feature = "sqlx")]
impl Connection for Sqlx<'_> {
    type Row = sqlx::postgres::PgRow;

    async fn fetch(&self, sql: &'static str, params: &[Param<'_>]) -> Step<Vec<Self::Row>> {
        let mut connection = self.connection.lock().await;
        Ok(bound(sql, params).fetch_all(&mut **connection).await?)
    }

    async fn run(&self, sql: &'static str, params: &[Param<'_>]) -> Step<u64> {
        let mut connection = self.connection.lock().await;
        Ok(bound(sql, params).execute(&mut **connection).await?.rows_affected())
    }

    async fn run_batch(&self, sql: &'static str) -> Step<()> {
        let mut connection = self.connection.lock().await;
        sqlx::raw_sql(sql).execute(&mut **connection).await?;
        Ok(())
    }
}

/// `sql` with `params` bound, as sqlx runs it (a statement it prepares
/// once per connection and caches).
#[cfg(feature = "sqlx")]
fn bound<'q>(
    sql: &'static str,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    params.iter().fold(sqlx::query(sql), |query, param| match *param {
        Param::Text(value) => query.bind(value),
        Param::Texts(value) => query.bind(value),
        Param::Uuid(value) => query.bind(value),
        Param::Uuids(value) => query.bind(value),
        Param::Int(value) => query.bind(value),
        Param::Ints(value) => query.bind(value),
        Param::Bytes(value) => query.bind(value),
        Param::ByteStrings(value) => query.bind(value),
        Param::Bools(value) => query.bind(value),
    })
}

#[cfg(feature = "sqlx")]
columns!(sqlx::postgres::PgRow, sqlx::Row::try_get);
