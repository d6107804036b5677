//! What only a file can show: several handles on one file, reopening,
//! schema versions and purging, on real database files in temporary
//! directories.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tempfile::TempDir;
use webhooks_core::testing::{answered, event, subscription, t0};
use webhooks_core::{Verdict, prelude::*};
use webhooks_sqlite::{Error, SqliteStore};

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(seconds)
}

async fn fresh() -> (SqliteStore, PathBuf, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    (SqliteStore::open(&path).await.unwrap(), path, dir)
}

/// Counts rows with raw SQL, beside the store.
fn count(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row(sql, [], |row| row.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_never_claim_the_same_delivery() {
    let (first, path, _dir) = fresh().await;
    let handles = [first, SqliteStore::open(&path).await.unwrap()];
    let per_connection =
        webhooks_core::testing::separate_handles_never_claim_the_same_delivery(&handles, 300).await;
    println!("claims per connection: {per_connection:?}");
}

#[tokio::test]
async fn reopening_keeps_subscriptions_deliveries_leases_and_logs() {
    let (store, path, _dir) = fresh().await;
    webhooks_core::testing::reopening_keeps_subscriptions_deliveries_leases_and_logs(
        store,
        |store| async move {
            drop(store);
            SqliteStore::open(&path).await.unwrap()
        },
    )
    .await;
}

#[tokio::test]
async fn a_file_from_a_newer_schema_is_refused_and_left_alone() {
    let (store, path, _dir) = fresh().await;
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    drop(store);
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();

    match SqliteStore::open(&path).await {
        Err(Error::SchemaTooNew(too_new)) => {
            let (found, supported) = (too_new.found, too_new.supported);
            assert_eq!((found, supported), (newer, SqliteStore::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(count(&path, "PRAGMA user_version"), newer);
    assert_eq!(count(&path, "SELECT count(*) FROM subscriptions"), 1);
}

#[tokio::test]
async fn an_empty_file_of_a_newer_schema_gets_no_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 1000).unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(error, Error::SchemaTooNew(ref too_new) if too_new.found == 1000), "{error:?}");
    assert!(error.to_string().contains("upgrade webhooks-sqlite"), "{error}");
    assert_eq!(count(&path, "SELECT count(*) FROM sqlite_schema"), 0);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "not a database, just text that is long enough to be a header ".repeat(20))
        .unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(error, Error::Open { .. }), "{error:?}");
    assert!(error.to_string().contains("notes.txt"), "{error}");
}

#[tokio::test]
async fn opening_a_second_time_migrates_nothing_and_keeps_wal() {
    let (store, path, _dir) = fresh().await;
    drop(store);
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(count(&path, "PRAGMA user_version"), SqliteStore::SCHEMA_VERSION);
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(format!("{again:?}").contains("webhooks.db"));
}

/// An event's body is stored once for all its deliveries and goes with the
/// last of them, purged or deleted. (Purging itself is in the suite.)
#[tokio::test]
async fn an_events_body_goes_with_its_last_delivery() {
    let (store, path, _dir) = fresh().await;
    let a = subscription("https://example.com/a", &["job.completed"]);
    let b = subscription("https://example.com/b", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let ids = store.publish(&event("job.completed", 0), Bytes::from_static(b"{}")).await.unwrap().deliveries;
    let to_a =
        if store.delivery(ids[0]).await.unwrap().unwrap().subscription_id == a.id { ids[0] } else { ids[1] };
    store.record_attempt(&answered(to_a, 1, 200, Verdict::Delivered, 10)).await.unwrap();
    assert_eq!(store.purge_finished(at(100), 10).await.unwrap(), 1);
    assert_eq!(count(&path, "SELECT count(*) FROM events"), 1, "b's delivery still needs it");
    store.delete_subscription(b.id).await.unwrap();
    assert_eq!(count(&path, "SELECT count(*) FROM events"), 0);
    assert_eq!(count(&path, "SELECT count(*) FROM attempts"), 0);
}

#[tokio::test]
async fn closing_leaves_the_database_in_one_file_and_stops_every_clone() {
    let (store, path, _dir) = fresh().await;
    let clone = store.clone();
    let subscription = subscription("https://example.com/", &["order.created"]);
    store.insert_subscription(&subscription).await.unwrap();
    store.publish(&event("order.created", 0), Bytes::from_static(b"{}")).await.unwrap();
    let wal = path.with_file_name("webhooks.db-wal");
    assert!(wal.exists(), "an open store writes through the WAL");

    store.close().await.unwrap();
    assert!(!wal.exists(), "closing checkpointed the WAL into the file and removed it");
    assert!(clone.pending_count().await.is_err(), "a clone's calls fail once closed");
    assert!(matches!(store.close().await, Err(Error::Stopped)));
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.pending_count().await.unwrap(), 1, "nothing was lost");
}
