//! A PostgreSQL [`Store`](webhooks_core::Store) for `webhooks-core`: many
//! application instances, one queue.
//!
//! Every instance of the host application connects to the same database,
//! publishes, and runs a dispatcher; no due delivery is attempted by two of
//! them at once. Claiming is one transaction that picks the earliest due
//! deliveries with `SELECT ... FOR UPDATE SKIP LOCKED` and leases them, so
//! instances never wait for each other, and the claims of an instance that
//! died come back when their leases end. Every other operation is one
//! transaction too: recording an attempt logs it, applies its verdict and
//! counts the subscription's failures (disabling it at the threshold) at
//! once. Nothing accepted is lost: a publish that returned is committed.
//!
//! ```no_run
//! use webhooks_core::{Preset, Subscription, Webhooks};
//! use webhooks_postgres::PostgresStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Migrates the schema `webhooks` on first use; safe when several
//! // instances start at once.
//! let store = PostgresStore::connect("postgres://app:secret@db.internal/app?sslmode=verify-full").await?;
//! let webhooks = Webhooks::builder().store(store).preset(Preset::deepsmith()).build()?;
//! webhooks
//!     .subscribe(Subscription::builder("https://example.com/hooks").event_type("content.status_updated"))
//!     .await?;
//! webhooks.publish("content.status_updated", serde_json::json!({"id": 7})).await?;
//!
//! // Every instance runs a dispatcher on the same database.
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! webhooks.dispatcher().build()?.run(shutdown).await;
//! # Ok(())
//! # }
//! ```
//!
//! The tables live in the schema `webhooks`, beside the host's own; the
//! role needs the right to create a schema in the database the first time.
//! Finished deliveries are kept with their attempt logs until
//! [`Retention::purge_finished`](webhooks_core::Retention::purge_finished)
//! deletes them. Other instances learn of
//! a publish at once: it `NOTIFY`s the channel `webhooks_work` on commit,
//! and a store made by [`PostgresStore::connect`], once asked for its
//! [wake-ups](webhooks_core::DeliveryQueue::wake_ups), keeps one connection that
//! `LISTEN`s on it and wakes the dispatchers waiting. Polling (every second
//! by default) is the fallback, and the only way for a store made by
//! [`PostgresStore::from_pool`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod config;
mod error;
mod listen;
mod queries;
mod record;
mod schema;
mod session;
mod statistics;
mod store;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

pub use crate::config::Target;
pub use crate::error::Error;
pub use crate::session::Session;
#[cfg(feature = "sqlx")]
pub use crate::session::Sqlx;
/// The pool this crate uses, for [`PostgresStore::from_pool`].
pub use deadpool_postgres;
/// The driver under the pool.
pub use tokio_postgres;
pub use webhooks_core::sql::Migrated;

/// Connections a store made by [`PostgresStore::connect`] keeps at most. A
/// dispatcher uses a few at once (claiming, recording, its timer), and
/// publishes take one each while they run.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long an operation waits for a free connection before it fails.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(30);

/// How long opening a connection may take, TLS and authentication included.
const CREATE_CONNECTION: Duration = Duration::from_secs(15);

/// The PostgreSQL store; see the [crate docs](crate).
///
/// A handle on a connection pool. Clones share the pool and are cheap.
/// Each [`PostgresStore::connect`] makes a pool of its own; any number of
/// them, in one process or many, may use the same database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: Target,
    wake_ups: Arc<listen::WakeUps>,
    first_statistics: Arc<statistics::FirstStatistics>,
}

/// Not public API: the text of the store's hot statements and how a failed
/// commit is judged, for the plan and commit tests in the workspace's
/// unpublished `webhooks-postgres-tests`.
#[doc(hidden)]
pub mod statements {
    pub use crate::queries::{
        ATTEMPTS_OF, CLAIMABLE, DELETE_OWNER_KEYS, DELIVERY_COUNTS, FORGET_KEYS, HELD_KEY, HOLD_PENDING,
        LEASE, LOCK_LISTENERS, LOCK_OWNER_LISTENERS, NEXT_CLAIMABLE, NEXT_TO_RELEASE, OWNED_DELIVERY,
        OWNED_SUBSCRIPTION, OWNER_SUBSCRIPTIONS, PENDING_COUNT, PURGE_FINISHED, WRITE_PROGRESS,
    };
    pub use crate::store::commit_error;
}

/// The pool [`PostgresStore::connect`] makes for `url`: its TLS (from
/// `sslmode` and `sslrootcert`), size and timeouts, with no connection made
/// yet. For the host's own statements on the same server with the same
/// rules, or a pool to adjust and hand to [`PostgresStore::from_pool`].
///
/// ```
/// let pool = webhooks_postgres::pool("postgres://app:secret@db.internal/app?sslmode=require")?;
/// assert_eq!(pool.status().max_size, webhooks_postgres::DEFAULT_POOL_SIZE);
/// # Ok::<(), webhooks_postgres::Error>(())
/// ```
///
/// # Errors
///
/// As [`PostgresStore::connect`], for the URL: [`Error::InvalidUrl`],
/// [`Error::RootCertificates`].
pub fn pool(url: &str) -> Result<Pool, Error> {
    pool_for(url).map(|(pool, _, _)| pool)
}

/// The pool for `url`, the server it reaches and how to listen there.
fn pool_for(url: &str) -> Result<(Pool, Target, listen::Source), Error> {
    let settings = config::parse(url)?;
    let tls = tls::connector(settings.tls, settings.root_certificates.as_deref())?;
    let listener = listen::Source {
        config: settings.config.clone(),
        tls: tls.clone(),
        target: settings.target.to_string(),
    };
    let manager = Manager::from_config(
        settings.config,
        tls,
        // Fast: a connection whose transaction was cut short (its task
        // cancelled) has its rollback queued already.
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager)
        .max_size(DEFAULT_POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(WAIT_FOR_CONNECTION))
        .create_timeout(Some(CREATE_CONNECTION))
        .build()
        .map_err(Error::PoolSetup)?;
    Ok((pool, settings.target, listener))
}

/// What opening does to the schema.
#[derive(Clone, Copy, Debug)]
enum Schema {
    /// Bring it up to date.
    Migrate,
    /// Only check it is the one this crate uses.
    Check,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("pool_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The newest schema version this crate writes and reads.
    pub const SCHEMA_VERSION: i64 = schema::VERSION;

    /// Connects to the database at `url` (`postgres://` or `postgresql://`)
    /// with a pool of up to [`DEFAULT_POOL_SIZE`] connections, and brings
    /// the schema up to date.
    ///
    /// TLS follows libpq's `sslmode` (`disable`, `prefer` by default,
    /// `require`, `verify-ca`, `verify-full`) with rustls; `sslrootcert`
    /// names a PEM file of root certificates, the Mozilla roots being used
    /// otherwise. Unlike libpq with OpenSSL, the checking modes refuse a
    /// self-signed CA certificate as the server's own (WebPKI's rule): the
    /// server's certificate must be issued by the CA named. Making a
    /// connection gives up after `connect_timeout` seconds, 10 unless the
    /// URL says.
    ///
    /// Once a dispatcher runs on it, the store opens one more connection,
    /// outside the pool, that listens for other instances' publishes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when the URL cannot be used,
    /// [`Error::RootCertificates`] when `sslrootcert` cannot be read,
    /// [`Error::Connect`] when the server cannot be reached or refuses the
    /// credentials, [`Error::SchemaTooNew`] when a newer version of this
    /// crate migrated the database and [`Error::MigrationChanged`] when a
    /// migration applied to it is not the one this crate ships (it is left
    /// untouched either way), and [`Error::Migrate`] when a migration fails
    /// (the database keeps its old schema). No error repeats the password.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let (pool, target, listener) = pool_for(url)?;
        Self::open(pool, Some(target), Some(listener), Schema::Migrate).await
    }

    /// Connects as [`PostgresStore::connect`] does, without changing the
    /// schema: it must be exactly the one this crate uses, every migration
    /// applied as shipped. For hosts that migrate in a deploy step of their
    /// own ([`PostgresStore::migrate`]); the role then needs no right to
    /// create anything.
    ///
    /// ```no_run
    /// use webhooks_postgres::PostgresStore;
    ///
    /// # async fn run() -> Result<(), webhooks_postgres::Error> {
    /// let url = "postgres://app:secret@db.internal/app";
    /// // The deploy step, with a role that may change the schema:
    /// let migrated = PostgresStore::migrate("postgres://owner:secret@db.internal/app").await?;
    /// println!("webhooks schema {} -> {}", migrated.from, migrated.to);
    /// // Each instance of the host:
    /// let store = PostgresStore::connect_without_migrating(url).await?;
    /// # drop(store);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`], and [`Error::SchemaBehind`] when the
    /// database needs migrating.
    pub async fn connect_without_migrating(url: &str) -> Result<Self, Error> {
        let (pool, target, listener) = pool_for(url)?;
        Self::open(pool, Some(target), Some(listener), Schema::Check).await
    }

    /// Brings the schema of the database at `url` up to date and
    /// disconnects: the deploy step of a host whose instances connect with
    /// [`PostgresStore::connect_without_migrating`]. It records the checksum
    /// of each migration it applies, so a later connection refuses a
    /// database another build of this crate migrated differently. Running
    /// it again does nothing; instances migrating at once wait for each
    /// other.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn migrate(url: &str) -> Result<Migrated, Error> {
        let (pool, target, _) = pool_for(url)?;
        let mut client =
            pool.get().await.map_err(|source| Error::Connect { target: target.to_string(), source })?;
        schema::migrate(&mut client).await
    }

    /// A store on a pool the host built (its own size, timeouts, TLS or
    /// hooks), bringing the schema up to date as [`PostgresStore::connect`]
    /// does. The pool is `deadpool-postgres`', re-exported as
    /// [`deadpool_postgres`].
    ///
    /// Its dispatchers find what other instances publish when they poll:
    /// the pool's settings cannot be read back to open the connection that
    /// would listen for it.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`], less the URL's.
    pub async fn from_pool(pool: Pool) -> Result<Self, Error> {
        Self::open(pool, None, None, Schema::Migrate).await
    }

    /// A store on a pool the host built, without changing the schema, as
    /// [`PostgresStore::connect_without_migrating`].
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect_without_migrating`], less the URL's.
    pub async fn from_pool_without_migrating(pool: Pool) -> Result<Self, Error> {
        Self::open(pool, None, None, Schema::Check).await
    }

    async fn open(
        pool: Pool,
        target: Option<Target>,
        listener: Option<listen::Source>,
        schema: Schema,
    ) -> Result<Self, Error> {
        let shown = target.as_ref().map_or_else(|| "the pool's server".to_owned(), Target::to_string);
        let mut client = pool.get().await.map_err(|source| Error::Connect { target: shown, source })?;
        match schema {
            Schema::Migrate => drop(schema::migrate(&mut client).await?),
            Schema::Check => schema::check(&mut client).await?,
        }
        let target = match target {
            Some(target) => target,
            None => {
                let operation = "read which server the pool reaches";
                let row = client
                    .query_one(
                        "SELECT current_user::text, \
                         host(inet_server_addr()) || ':' || inet_server_port(), current_database()::text",
                        &[],
                    )
                    .await
                    .map_err(|source| Error::Query { operation, source })?;
                let column = |n| {
                    row.try_get::<_, Option<String>>(n).map_err(|source| Error::Query { operation, source })
                };
                Target::from_session(
                    column(0)?.unwrap_or_default(),
                    column(1)?,
                    column(2)?.unwrap_or_default(),
                )
            }
        };
        Ok(Self {
            pool,
            target,
            wake_ups: Arc::new(listen::WakeUps::new(listener)),
            first_statistics: Arc::default(),
        })
    }

    /// The server and database, without the password.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The connection pool, for the host's own checks (a health probe, say).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
