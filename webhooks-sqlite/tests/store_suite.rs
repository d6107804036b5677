//! The Store behaviour suite, unchanged, on a real database file.

use webhooks_sqlite::SqliteStore;

webhooks_core::store_suite!(|| async {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("webhooks.db")).await.expect("the store opens");
    (store, dir)
});
