//! Group commit: publishes that queue while the connection is busy share
//! one transaction and one commit, each answered once its rows are on disk,
//! and one that fails inside the shared transaction fails alone.
//!
//! To make the group certain rather than likely, a second connection holds
//! the write lock while every publish is queued; the store's connection
//! waits for the lock (the busy timeout) with the publishes behind it.

use std::future::{Future, poll_fn};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tempfile::TempDir;
use webhooks_core::testing::{event, subscription};
use webhooks_core::{DeliveryId, ErrorChain, Event, StoreResult, Subscription, prelude::*};
use webhooks_sqlite::SqliteStore;

const CALLS: usize = 64;

type Publish<'a> = Pin<Box<dyn Future<Output = StoreResult<Vec<DeliveryId>>> + Send + 'a>>;

async fn fresh(events: &[&str]) -> (SqliteStore, Subscription, PathBuf, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let sub = subscription("https://example.com/hooks", events);
    store.insert_subscription(&sub).await.unwrap();
    (store, sub, path, dir)
}

/// Polls every call once, so that each has queued its write, while another
/// connection holds the write lock; then lets the lock go and awaits them all.
async fn publish_while_locked(path: &Path, mut calls: Vec<Publish<'_>>) -> Vec<StoreResult<Vec<DeliveryId>>> {
    let lock = rusqlite::Connection::open(path).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut results: Vec<Option<_>> = calls.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (call, result) in calls.iter_mut().zip(&mut results) {
            if let Poll::Ready(done) = call.as_mut().poll(cx) {
                *result = Some(done);
            }
        }
        Poll::Ready(())
    })
    .await;
    lock.execute_batch("COMMIT").unwrap();
    for (call, result) in calls.into_iter().zip(&mut results) {
        if result.is_none() {
            *result = Some(call.await);
        }
    }
    results.into_iter().map(Option::unwrap).collect()
}

fn publish_each<'a>(store: &'a SqliteStore, events: &'a [Event]) -> Vec<Publish<'a>> {
    events
        .iter()
        .map(|event| -> Publish<'a> {
            Box::pin(
                async move { Ok(store.publish(event, Bytes::from_static(b"{\"n\":1}")).await?.deliveries) },
            )
        })
        .collect()
}

/// Frames in the write-ahead log: every commit appends at least one.
fn wal_frames(path: &Path, page_size: u64) -> u64 {
    let wal = std::fs::metadata(format!("{}-wal", path.display())).map(|m| m.len()).unwrap_or(0);
    wal.saturating_sub(32) / (page_size + 24)
}

fn count(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row(sql, [], |row| row.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_commits_and_all_survive_a_reopen() {
    let (store, sub, path, _dir) = fresh(&["job.completed"]).await;
    let page_size = count(&path, "PRAGMA page_size") as u64;
    let frames_before = wal_frames(&path, page_size);
    let events: Vec<Event> = (0..CALLS as i64).map(|n| event("job.completed", n)).collect();

    let results = publish_while_locked(&path, publish_each(&store, &events)).await;

    let ids: Vec<DeliveryId> = results.into_iter().flat_map(|result| result.unwrap()).collect();
    assert_eq!(ids.len(), CALLS);
    // One commit each would append at least one frame each.
    let frames = wal_frames(&path, page_size) - frames_before;
    assert!(frames < CALLS as u64, "{frames} frames for {CALLS} publishes: they did not share commits");

    drop(store);
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.delivery_counts(sub.id).await.unwrap().pending, CALLS as u64);
    for id in ids {
        assert!(reopened.delivery(id).await.unwrap().is_some(), "delivery {id} was lost");
    }
}

/// Makes inserting a delivery of a `job.poisoned` event fail with
/// `RAISE(action, ..)`, after its event row is written.
fn poison(path: &Path, action: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER poison BEFORE INSERT ON deliveries \
             WHEN (SELECT name FROM events WHERE seq = NEW.event_seq) = 'job.poisoned' \
             BEGIN SELECT RAISE({action}, 'poisoned event'); END;"
        ))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_failing_inside_a_shared_transaction_fails_alone() {
    let (store, sub, path, _dir) = fresh(&["job.completed", "job.poisoned"]).await;
    // Fails a publish after its event row is written: only the savepoint
    // can take that row back out.
    poison(&path, "ABORT");
    let poisoned = CALLS / 2;
    let events: Vec<Event> = (0..CALLS as i64)
        .map(|n| event(if n as usize == poisoned { "job.poisoned" } else { "job.completed" }, n))
        .collect();

    let results = publish_while_locked(&path, publish_each(&store, &events)).await;

    for (n, result) in results.iter().enumerate() {
        if n == poisoned {
            let error = ErrorChain(result.as_ref().unwrap_err()).to_string();
            assert!(error.contains("poisoned event"), "{error}");
        } else {
            assert_eq!(result.as_ref().unwrap().len(), 1, "publish {n}");
        }
    }
    drop(store);
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.delivery_counts(sub.id).await.unwrap().pending, CALLS as u64 - 1);
    assert_eq!(count(&path, "SELECT count(*) FROM events"), CALLS as i64 - 1, "no event without deliveries");
    assert_eq!(count(&path, "SELECT count(*) FROM events WHERE name = 'job.poisoned'"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_makes_sqlite_give_up_the_transaction_takes_only_its_group_down() {
    let (store, sub, path, _dir) = fresh(&["job.completed", "job.poisoned"]).await;
    // RAISE(ROLLBACK) ends the whole transaction, not just the statement:
    // every write sharing it is gone, and each must hear so.
    poison(&path, "ROLLBACK");
    let events: Vec<Event> =
        (0..CALLS as i64).map(|n| event(if n == 0 { "job.poisoned" } else { "job.completed" }, n)).collect();

    let results = publish_while_locked(&path, publish_each(&store, &events)).await;

    // The first queued is in the first group; which others share it depends
    // on how fast they queued, so each answer is checked for what it says.
    let error = ErrorChain(results[0].as_ref().unwrap_err()).to_string();
    assert!(error.contains("poisoned event"), "{error}");
    for result in &results[1..] {
        if let Err(error) = result {
            let error = ErrorChain(error).to_string();
            assert!(error.contains("rolled back the transaction"), "{error}");
        }
    }
    let succeeded: Vec<DeliveryId> =
        results.iter().filter_map(|result| result.as_ref().ok()).flatten().copied().collect();
    // The store goes on; what was answered Ok is there, nothing else.
    let after =
        store.publish(&event("job.completed", 99), Bytes::from_static(b"{}")).await.unwrap().deliveries;
    drop(store);
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.delivery_counts(sub.id).await.unwrap().pending, succeeded.len() as u64 + 1);
    for id in succeeded.into_iter().chain(after) {
        assert!(reopened.delivery(id).await.unwrap().is_some(), "delivery {id} was lost");
    }
}
