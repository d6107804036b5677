//! Helpers shared by the end-to-end tests.

#![allow(dead_code)] // each test file uses its own subset

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use webhooks_core::{DeliveryId, ManualClock, Preset, Subscription, UrlRule, Webhooks};
use webhooks_memory::MemoryStore;

/// When the manual clock starts: 2026-03-02T14:30:00Z.
pub fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_461_800, 0).unwrap()
}

/// A preset that also accepts the local receiver's `http://` URL.
pub fn over_http(preset: Preset) -> Preset {
    preset.with_url_rule(UrlRule::allow_http())
}

/// A facade on a fresh memory store with a manual clock.
pub fn webhooks(preset: Preset) -> (Webhooks, ManualClock) {
    let clock = ManualClock::new(start());
    let webhooks = Webhooks::builder()
        .store(MemoryStore::new())
        .preset(over_http(preset))
        .clock(clock.clone())
        .build()
        .unwrap();
    (webhooks, clock)
}

/// A subscription of `url` to `iq.status_updated`, the tests' event.
pub async fn listening(webhooks: &Webhooks, url: &str) -> Subscription {
    webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap()
}

/// A dispatcher running in the background: cancelled when dropped, with
/// `stop`, `settle` and `advance`.
#[allow(unused_imports)] // as dead_code above: not every test file runs a dispatcher
pub use webhooks_testkit::TestDispatcher as Running;

/// Polls `check` until it is true, failing the test after 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `count` attempts of `delivery` are recorded.
pub async fn recorded(webhooks: &Webhooks, delivery: DeliveryId, count: usize) {
    eventually(&format!("{count} recorded attempts"), || async {
        webhooks.attempts(delivery).await.unwrap().len() >= count
    })
    .await;
}

/// The binary of the example `name`, built on first use in this test
/// process (a no-op when `cargo test` has built it already).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    use std::sync::{Mutex, PoisonError};
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !built.iter().any(|done| done == name) {
        let profile: &[&str] = if cfg!(debug_assertions) { &[] } else { &["--release"] };
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "--example", name])
            .args(profile)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the {name} example builds");
        built.push(name.to_owned());
    }
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Starts an example that prints `listening on URL` first; returns the child
/// (killed when dropped) and the URL. The rest of its output is drained.
pub async fn start_listening(name: &str, args: &[&std::ffi::OsStr]) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(example_binary(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").expect("the first line names the URL").to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// The `send` example started with `args` and the environment variables
/// `env`, stdin and stderr piped, stdout where the caller says (a run whose
/// stdout is not read must not fill a pipe).
pub fn spawn_send(
    args: &[&str],
    env: &[(&str, String)],
    stdout: std::process::Stdio,
) -> tokio::process::Child {
    tokio::process::Command::new(example_binary("send"))
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A SQLite store in a new temporary directory, kept as long as the guard.
pub async fn sqlite_store() -> (std::sync::Arc<dyn webhooks_core::Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = webhooks_sqlite::SqliteStore::open(dir.path().join("webhooks.db")).await.unwrap();
    (std::sync::Arc::new(store), dir)
}

/// Each check (an `async fn(Arc<dyn Store>)` of the calling file) as a test
/// on the memory store, on SQLite and on PostgreSQL (reported ignored where
/// no server can be had).
#[macro_export]
macro_rules! on_every_store {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(std::sync::Arc::new(webhooks_memory::MemoryStore::new())).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _dir) = super::common::sqlite_store().await;
                    super::$check(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
                #[tokio::test]
                async fn $check() {
                    let database = webhooks_postgres_tests::TestDatabase::create().await.unwrap();
                    super::$check(std::sync::Arc::new(database.store().await.unwrap())).await;
                }
            )*
        }
    };
}

/// Waits until `count` deliveries of `subscription` are delivered.
pub async fn delivered(webhooks: &Webhooks, subscription: webhooks_core::SubscriptionId, count: u64) {
    eventually(&format!("{count} deliveries delivered"), || async {
        webhooks.delivery_counts(subscription).await.unwrap().delivered == count
    })
    .await;
}
