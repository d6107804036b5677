//! The Store behaviour suite, unchanged, on a real PostgreSQL server: one
//! fresh database per test, dropped when the test ends.
//!
//! The server is the one `WEBHOOKS_POSTGRES_URL` names or one the tests
//! start from the machine's PostgreSQL binaries; with neither, cargo
//! reports every test as ignored.

use webhooks_postgres_tests::{TestDatabase, server_url};

webhooks_core::store_suite!(
    #[cfg_attr(
        not(postgres_server),
        ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL"
    )];
    {
        let server = server_url();
        move || async move {
            let database = TestDatabase::create_on(&server).await.expect("a test database");
            let store = database.store().await.expect("the store connects");
            (store, database)
        }
    }
);
