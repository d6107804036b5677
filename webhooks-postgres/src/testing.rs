//! A throwaway database per test, on the server `WEBHOOKS_POSTGRES_URL`
//! names (feature `testing`).
//!
//! Without that variable there is no server: a test asks
//! [`TestDatabase::create`], gets `None`, and returns, having said on the
//! terminal that it was skipped, so a run without a server never looks
//! like a run that passed.

use std::io::Write;

use crate::{Error, PostgresStore, config, tls};

/// The variable naming the server: a `postgres://` URL whose role may
/// create databases.
pub const URL_VARIABLE: &str = "WEBHOOKS_POSTGRES_URL";

/// The server's URL, or `None` having said `skipped: WEBHOOKS_POSTGRES_URL
/// is not set` on stderr. It is written past the test harness's output
/// capture, so it shows even when the test passes.
pub fn server_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = std::thread::current().name().map(|name| format!(" ({name})")).unwrap_or_default();
            // One write, so the line is not split by the harness's own.
            let line = format!("skipped: {URL_VARIABLE} is not set{test}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

/// A new, empty database on the server, dropped (with whatever is still
/// connected to it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database on the server [`server_url`] names; `Ok(None)`
    /// when none is named.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses to create a database.
    pub async fn create() -> Result<Option<Self>, Error> {
        let Some(server) = server_url() else { return Ok(None) };
        Self::create_on(&server).await.map(Some)
    }

    /// Creates a database on the server at `server`.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses to create a database.
    pub async fn create_on(server: &str) -> Result<Self, Error> {
        let name = format!("webhooks_test_{}", uuid::Uuid::now_v7().simple());
        admin(server, &format!("CREATE DATABASE {name}")).await?;
        let mut url =
            url::Url::parse(server).map_err(|error| Error::InvalidUrl { reason: error.to_string() })?;
        url.set_path(&name);
        Ok(Self { server: server.to_owned(), name, url: url.into() })
    }

    /// The database's URL: the server's, naming this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on the database: a pool of its own each call, as another
    /// instance of the host application would have.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn store(&self) -> Result<PostgresStore, Error> {
        PostgresStore::connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    /// Drops the database from a thread of its own, since `Drop` cannot
    /// await and may run on a runtime that is shutting down. Failing, it
    /// leaves the database for the server's owner to remove.
    fn drop(&mut self) {
        let (server, sql) =
            (self.server.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(admin(&server, &sql)).map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let line = format!("could not drop the test database {}\n", self.name);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Runs one statement on its own connection to `server`.
async fn admin(server: &str, sql: &str) -> Result<(), Error> {
    let settings = config::parse(server)?;
    let tls = tls::connector(settings.tls, settings.root_certificates.as_deref())?;
    let target = settings.target.to_string();
    let failed = |source| Error::Query { operation: "run a statement on the test server", source };
    let (client, connection) = settings
        .config
        .connect(tls)
        .await
        .map_err(|source| Error::Connect { target, source: deadpool_postgres::PoolError::Backend(source) })?;
    let connection = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(failed);
    drop(client);
    let _ = connection.await;
    result
}
