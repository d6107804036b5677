//! The Store behaviour suite, unchanged, on a real PostgreSQL server: one
//! fresh database per test, dropped when the test ends.
//!
//! Without `WEBHOOKS_POSTGRES_URL` every test says it is skipped and
//! returns: the macro pastes the block below into each test, so its
//! `return` ends the test before a store is asked for.

use webhooks_postgres::testing::{TestDatabase, server_url};

webhooks_core::store_suite!({
    let Some(server) = server_url() else { return };
    move || async move {
        let database = TestDatabase::create_on(&server).await.expect("a test database");
        let store = database.store().await.expect("the store connects");
        (store, database)
    }
});
