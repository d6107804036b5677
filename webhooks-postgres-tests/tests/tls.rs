//! TLS by rustls against a real server with a self-signed certificate for
//! 127.0.0.1 (`.ci/postgres` makes one): each `sslmode`, and what
//! verification refuses.
//!
//! On the server `WEBHOOKS_POSTGRES_URL` names with the CA certificate
//! `WEBHOOKS_POSTGRES_CA` names, or on one the tests start (with `openssl`
//! making the certificates); with neither, cargo reports them as ignored.

use webhooks_core::prelude::*;
use webhooks_core::testing::subscription;
use webhooks_postgres::{Error, PostgresStore};
use webhooks_postgres_tests::{TestDatabase, server_ca};

/// A fresh database and the path of the server's CA certificate; `None`,
/// having said so, without either.
async fn server() -> (TestDatabase, String) {
    let database = TestDatabase::create().await.unwrap();
    let ca = server_ca();
    (database, ca.to_string_lossy().into_owned())
}

/// The database's URL with `host` and the query `query`.
fn url(database: &TestDatabase, host: &str, query: &str) -> String {
    let mut url = url::Url::parse(database.url()).unwrap();
    url.set_host(Some(host)).unwrap();
    url.set_query(Some(query));
    url.into()
}

/// Whether the store's sessions are encrypted, as the server sees them.
async fn encrypted(store: &PostgresStore) -> bool {
    let client = store.pool().get().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[cfg_attr(
    not(postgres_tls),
    ignore = "no PostgreSQL with a CA certificate: install postgresql and openssl, or set WEBHOOKS_POSTGRES_URL and WEBHOOKS_POSTGRES_CA"
)]
#[tokio::test]
async fn verify_full_checks_the_chain_and_the_name_and_encrypts() {
    let (database, ca) = server().await;
    let store = PostgresStore::connect(&url(
        &database,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("the server's certificate is trusted and names 127.0.0.1");
    assert!(encrypted(&store).await);
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);

    // The Mozilla roots do not know a self-signed certificate.
    let error =
        PostgresStore::connect(&url(&database, "127.0.0.1", "sslmode=verify-full")).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");

    // The certificate names 127.0.0.1, not localhost.
    let localhost = url(&database, "localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let error = PostgresStore::connect(&localhost).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
}

#[cfg_attr(
    not(postgres_tls),
    ignore = "no PostgreSQL with a CA certificate: install postgresql and openssl, or set WEBHOOKS_POSTGRES_URL and WEBHOOKS_POSTGRES_CA"
)]
#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_name() {
    let (database, ca) = server().await;
    let store =
        PostgresStore::connect(&url(&database, "localhost", &format!("sslmode=verify-ca&sslrootcert={ca}")))
            .await
            .expect("a trusted chain is enough");
    assert!(encrypted(&store).await);
    let error = PostgresStore::connect(&url(&database, "localhost", "sslmode=verify-ca")).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "untrusted chain: {error:?}");
}

#[cfg_attr(
    not(postgres_tls),
    ignore = "no PostgreSQL with a CA certificate: install postgresql and openssl, or set WEBHOOKS_POSTGRES_URL and WEBHOOKS_POSTGRES_CA"
)]
#[tokio::test]
async fn require_and_prefer_encrypt_without_checking_and_disable_does_not() {
    let (database, _ca) = server().await;
    for (query, tls) in
        [("sslmode=require", true), ("sslmode=prefer", true), ("", true), ("sslmode=disable", false)]
    {
        let store = PostgresStore::connect(&url(&database, "localhost", query)).await.expect(query);
        assert_eq!(encrypted(&store).await, tls, "{query:?}");
    }
}

#[cfg_attr(
    not(postgres_tls),
    ignore = "no PostgreSQL with a CA certificate: install postgresql and openssl, or set WEBHOOKS_POSTGRES_URL and WEBHOOKS_POSTGRES_CA"
)]
#[tokio::test]
async fn unreadable_root_certificates_are_a_typed_error() {
    let (database, _ca) = server().await;
    let dir = std::env::temp_dir().join(format!("webhooks-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for path in [dir.join("missing.pem"), empty] {
        let query = format!("sslmode=verify-full&sslrootcert={}", path.display());
        let error = PostgresStore::connect(&url(&database, "127.0.0.1", &query)).await.unwrap_err();
        assert!(matches!(error, Error::RootCertificates { .. }), "{error:?}");
        assert!(error.to_string().contains(&path.display().to_string()), "names the file: {error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
