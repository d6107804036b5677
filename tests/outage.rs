//! A store that is unavailable for a while is waited out: publishing
//! retries it, and the `send` example finishes with everything delivered.
//! The outage is real: another connection holds the SQLite file's write lock
//! past the store's busy timeout.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use webhooks_core::{Preset, Subscription, Webhooks};
use webhooks_examples::{Receiver, Reply};
use webhooks_sqlite::{SqliteStore, rusqlite};

/// Holds `path`'s write lock from another connection for `held`, on a
/// thread of its own; returns once the lock is taken.
fn lock_for(path: &Path, held: Duration) -> std::thread::JoinHandle<()> {
    let path: PathBuf = path.to_owned();
    let (taken, locked) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection.busy_timeout(Duration::from_secs(30)).unwrap();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        taken.send(()).unwrap();
        std::thread::sleep(held);
        connection.execute_batch("COMMIT").unwrap();
    });
    locked.recv().unwrap();
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_waits_out_a_locked_store_and_without_patience_says_it_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let facade = |patience| {
        Webhooks::builder()
            .store(store.clone())
            .preset(common::over_http(Preset::deepsmith()))
            .publish_retry(patience)
            .build()
            .unwrap()
    };
    let (impatient, patient) = (facade(Duration::ZERO), facade(Duration::from_secs(30)));
    patient
        .subscribe(Subscription::builder("https://example.com/hooks").event_type("iq.status_updated"))
        .await
        .unwrap();

    // Longer than the store's 5 s busy timeout.
    let holder = lock_for(&path, Duration::from_secs(7));
    let error = impatient.publish("iq.status_updated", json!({"n": 1})).await.unwrap_err();
    assert!(error.is_transient(), "a locked file is a transient error: {error}");
    let published = patient.publish("iq.status_updated", json!({"n": 2})).await.unwrap();
    assert_eq!(published.deliveries.len(), 1);
    holder.join().unwrap();
    assert_eq!(patient.delivery_counts(published_subscription(&patient).await).await.unwrap().pending, 1);
}

async fn published_subscription(webhooks: &Webhooks) -> webhooks_core::SubscriptionId {
    webhooks.all_subscriptions().await.unwrap()[0].id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rides_out_a_locked_store_and_delivers_everything() {
    const EVENTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = format!("sqlite:{}", path.display());
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(20))).await.unwrap();
    let args = ["--store", &store, "--preset", "deepsmith", "--url", receiver.url(), "--secret", "k"];
    let options = ["--allow-private", "--retry-scale", "0", "--timeout-ms", "1000", "--concurrency", "4"];
    let mut child = common::spawn_send(&[&args[..], &options[..]].concat(), &[], Stdio::piped());
    let mut input = child.stdin.take().unwrap();
    let events: String = (0..EVENTS)
        .map(|n| format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n"))
        .collect();
    input.write_all(events.as_bytes()).await.unwrap();
    drop(input);

    // Mid-run, the file is locked for longer than the busy timeout.
    receiver.wait_for(10, Duration::from_secs(30)).await;
    let holder = lock_for(&path, Duration::from_secs(7));
    tokio::task::spawn_blocking(move || holder.join().unwrap()).await.unwrap();

    let output =
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "the run ends by itself, well: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["delivered"], EVENTS, "{summary}");
    assert_eq!(summary["summary"]["pending"], 0, "{summary}");
    let arrived: std::collections::HashSet<String> =
        receiver.received().iter().map(|r| r.header("x-webhook-id").to_owned()).collect();
    assert_eq!(arrived.len(), EVENTS, "every event arrived (some perhaps twice)");
}
