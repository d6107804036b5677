//! A store that is unavailable for a while is waited out: publishing
//! retries it, and the `send` example finishes with everything delivered.
//! The outages are real: on SQLite another connection holds the file's write
//! lock past the store's busy timeout; on PostgreSQL a server of the test's
//! own is stopped as a crash would stop it, and started again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use webhooks_core::{Preset, Store, Subscription, Webhooks};
use webhooks_examples::{Receiver, Reply};
use webhooks_postgres_tests::{StoppableServer, TestDatabase};
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

/// Two facades on `store`: one that returns a store error at once, one that
/// waits `patience`; with a subscription, so publishing reaches the store.
async fn impatient_and_patient<S: Store + Clone>(store: S, patience: Duration) -> (Webhooks, Webhooks) {
    let facade = |patience| {
        Webhooks::builder()
            .store(store.clone())
            .preset(common::over_http(Preset::deepsmith()))
            .publish_retry(patience)
            .build()
            .unwrap()
    };
    let (impatient, patient) = (facade(Duration::ZERO), facade(patience));
    patient
        .subscribe(Subscription::builder("https://example.com/hooks").event_type("iq.status_updated"))
        .await
        .unwrap();
    (impatient, patient)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_waits_out_a_locked_store_and_without_patience_says_it_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (impatient, patient) = impatient_and_patient(store, Duration::from_secs(30)).await;

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
    let args =
        ["--store", &store, "--preset", "deepsmith", "--url", receiver.url(), "--secret", "k-signing-secret"];
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

// ---------------------------------------------------------------------------
// On PostgreSQL: a server of the test's own, stopped with `pg_ctl stop -m
// immediate` (every connection cut mid-query) and started again; without
// PostgreSQL binaries the tests are ignored.
// ---------------------------------------------------------------------------

/// How long the PostgreSQL server stays down: well past the 1 s outage that
/// once ended a `send` run.
const POSTGRES_DOWN: Duration = Duration::from_secs(5);

/// Stops `server` as a crash would; returns once it is down.
async fn crash(server: &Arc<StoppableServer>) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || server.stop()).await.unwrap().expect("the server stops");
}

/// Starts `server` again; returns once it accepts connections.
async fn restart(server: &Arc<StoppableServer>) {
    let server = Arc::clone(server);
    tokio::task::spawn_blocking(move || server.start()).await.unwrap().expect("the server starts again");
}

#[cfg_attr(
    not(postgres_binaries),
    ignore = "no PostgreSQL binaries to start a server of its own: install postgresql"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_on_postgres_waits_out_a_restart_and_without_patience_says_it_is_transient() {
    let server = Arc::new(StoppableServer::start_new());
    let database = TestDatabase::create_on(server.url()).await.unwrap();
    let store = database.store().await.unwrap();
    let (impatient, patient) = impatient_and_patient(store, Duration::from_secs(60)).await;
    // The pool holds a connection from before the crash: the first call
    // finds it cut, later ones find the server refusing connections.
    impatient.publish("iq.status_updated", json!({"n": 0})).await.unwrap();

    crash(&server).await;
    for n in 1..=2 {
        let error = impatient.publish("iq.status_updated", json!({"n": n})).await.unwrap_err();
        assert!(error.is_transient(), "a server that is down is a transient error: {error}");
        let shown = webhooks_core::ErrorChain(&error).to_string();
        assert!(!shown.contains("webhooks-test-pw"), "no password shown: {shown}");
    }
    let waiting = tokio::spawn({
        let patient = patient.clone();
        async move { patient.publish("iq.status_updated", json!({"n": 3})).await }
    });
    tokio::time::sleep(POSTGRES_DOWN).await;
    assert!(!waiting.is_finished(), "publishing waits while the server is down");
    restart(&server).await;

    let published = waiting.await.unwrap().expect("publishing succeeds once the server is back");
    assert_eq!(published.deliveries.len(), 1);
    let counts = patient.delivery_counts(published_subscription(&patient).await).await.unwrap();
    assert_eq!(counts.pending, 2, "the event before the crash and the one published through it");
}

#[cfg_attr(
    not(postgres_binaries),
    ignore = "no PostgreSQL binaries to start a server of its own: install postgresql"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rides_out_a_postgres_restart_and_delivers_every_line_once() {
    const EVENTS: usize = 200;
    let server = Arc::new(StoppableServer::start_new());
    let database = TestDatabase::create_on(server.url()).await.unwrap();
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(20))).await.unwrap();
    let args = ["--preset", "deepsmith", "--url", receiver.url(), "--secret", "k-signing-secret"];
    let options = ["--allow-private", "--retry-scale", "0", "--timeout-ms", "1000", "--concurrency", "4"];
    let env = [("WEBHOOKS_STORE", database.url().to_owned())];
    let mut child = common::spawn_send(&[&args[..], &options[..]].concat(), &env, Stdio::piped());
    let started = std::time::Instant::now();
    let mut input = child.stdin.take().unwrap();
    let line = |n: usize| format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n");
    let (before, during) = (0..EVENTS / 2, EVENTS / 2..EVENTS);
    input.write_all(before.map(line).collect::<String>().as_bytes()).await.unwrap();
    input.flush().await.unwrap();

    // Mid-run the server goes down; the other half of the lines is read
    // while it is down, and must wait for it, not be rejected.
    receiver.wait_for(10, Duration::from_secs(60)).await;
    let down = std::time::Instant::now();
    crash(&server).await;
    input.write_all(during.map(line).collect::<String>().as_bytes()).await.unwrap();
    input.flush().await.unwrap();
    tokio::time::sleep(POSTGRES_DOWN).await;
    restart(&server).await;
    let outage = down.elapsed();
    drop(input);

    let output =
        tokio::time::timeout(Duration::from_secs(180), child.wait_with_output()).await.unwrap().unwrap();
    let (run, after_crash) = (started.elapsed(), down.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("outage {outage:?}; the run took {run:?}, ending {after_crash:?} after the server went down");
    assert_eq!(output.status.code(), Some(0), "the run ends by itself, well: {stderr}");
    assert!(stderr.contains(&format!("accepted {EVENTS} events")), "no line is rejected: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["delivered"], EVENTS, "{summary}");
    assert_eq!(summary["summary"]["pending"], 0, "{summary}");

    // Each line became one delivery, and that delivery arrived. An attempt
    // in flight when the server went down may arrive twice, under the same
    // delivery id (at least once: receivers drop repeats by that id).
    let mut deliveries: std::collections::HashMap<u64, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    let received = receiver.received();
    for request in &received {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let n = body["data"]["n"].as_u64().unwrap();
        deliveries.entry(n).or_default().insert(request.header("x-webhook-id").to_owned());
    }
    assert_eq!(deliveries.len(), EVENTS, "every line arrived");
    for (n, ids) in &deliveries {
        assert_eq!(ids.len(), 1, "line {n} became one delivery, not one per publish retry: {ids:?}");
    }
    eprintln!("{} requests for {EVENTS} deliveries", received.len());
}

/// How long the deadline tests let `send` wait for a stopped server.
const PATIENCE: Duration = Duration::from_secs(3);

/// Runs `send` on `database` with a patience of [`PATIENCE`], feeding it
/// `before` lines, then (once `down` has run) `after` more; returns its
/// output and how long it ran after `down`.
async fn send_through_an_outage<F: std::future::Future<Output = ()>>(
    database: &TestDatabase,
    receiver: &Receiver,
    before: usize,
    down: F,
    after: usize,
) -> (std::process::Output, Duration) {
    let patience = PATIENCE.as_secs().to_string();
    let args = ["--preset", "deepsmith", "--url", receiver.url(), "--secret", "k-signing-secret"];
    let options = ["--allow-private", "--retry-scale", "0", "--store-patience", &patience];
    let env = [("WEBHOOKS_STORE", database.url().to_owned())];
    let line = |n: usize| format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n");
    let mut child = common::spawn_send(&[&args[..], &options[..]].concat(), &env, Stdio::piped());
    let mut input = child.stdin.take().unwrap();
    input.write_all((0..before).map(line).collect::<String>().as_bytes()).await.unwrap();
    input.flush().await.unwrap();
    down.await;
    let since = std::time::Instant::now();
    // The run may end before it has read them all.
    let _ = input.write_all((before..before + after).map(line).collect::<String>().as_bytes()).await;
    drop(input);
    let output =
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await.unwrap().unwrap();
    (output, since.elapsed())
}

/// What a run that gave up says: exit 1, the reason, and one line when the
/// outage began and one every 5 s, not one per retry or per line.
fn gave_up(output: &std::process::Output, ran: Duration) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("waiting up to 3 s"), "{stderr}");
    assert!(stderr.contains("the store stayed unavailable for 3 s"), "{stderr}");
    let said = stderr.lines().filter(|line| line.contains("unavailable")).count();
    assert!(said <= 3, "{said} lines about the outage: {stderr}");
    assert!(ran >= PATIENCE, "it waited its patience: {ran:?}");
    assert!(ran < PATIENCE + Duration::from_secs(30), "then gave up: {ran:?}");
}

#[cfg_attr(
    not(postgres_binaries),
    ignore = "no PostgreSQL binaries to start a server of its own: install postgresql"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_gives_up_once_its_patience_is_spent_at_start_and_mid_run() {
    let server = Arc::new(StoppableServer::start_new());
    let database = TestDatabase::create_on(server.url()).await.unwrap();
    let receiver = Receiver::scripted(|_, _| Reply::status(200)).await.unwrap();

    // Down before the run starts: it waits as it would mid-run, then ends.
    crash(&server).await;
    let (output, ran) = send_through_an_outage(&database, &receiver, 0, async {}, 3).await;
    gave_up(&output, ran);
    assert!(receiver.received().is_empty());

    // Down mid-run with a thousand lines coming: one deadline for them all.
    restart(&server).await;
    let down = async {
        receiver.wait_for(5, Duration::from_secs(60)).await;
        crash(&server).await;
    };
    let (output, ran) = send_through_an_outage(&database, &receiver, 20, down, 1_000).await;
    gave_up(&output, ran);
    restart(&server).await;
}
