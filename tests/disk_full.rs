//! A full disk under SQLite: writes fail as a transient "disk full" (said
//! once per episode), nothing half-written stays, and once space is freed
//! the store recovers by itself, gives the WAL back, and delivers every
//! event accepted. Runs on a 2 MB tmpfs, so only as root on Linux.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Running, over_http};
use serde_json::json;
use webhooks_core::{Preset, Store, Subscription, Webhooks};
use webhooks_examples::Receiver;
use webhooks_sqlite::SqliteStore;

/// A tmpfs of `size` mounted on a temporary directory, unmounted (then the
/// directory removed) when dropped.
struct Mounted(PathBuf, #[allow(dead_code)] tempfile::TempDir);

/// What the tests log, kept to be read.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Mounted {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status();
        assert!(status.is_ok_and(|status| status.success()), "mount a tmpfs at {}", path.display());
        Self(path, dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system at `dir` to the last byte with one file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
    path
}

#[cfg_attr(not(tmpfs), ignore = "needs a tmpfs of its own: run as root on Linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_said_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let mounted = Mounted::new("2m");
    let sqlite = SqliteStore::open(mounted.0.join("webhooks.db")).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let webhooks = Webhooks::builder()
        .shared_store(Arc::clone(&store))
        .preset(over_http(Preset::deepsmith()))
        .publish_retry(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let receiver = Receiver::start().await.unwrap();
    webhooks.subscribe(Subscription::builder(receiver.url()).event_type("iq.status_updated")).await.unwrap();
    webhooks.publish("iq.status_updated", json!({"n": 0})).await.unwrap();
    // Delivering all along: claims and records meet the full disk too.
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    // Full: a publish fails as transient, says why, and keeps nothing.
    let filler = fill(&mounted.0);
    let mut refused = 0;
    for n in 1..=50 {
        match webhooks.publish("iq.status_updated", json!({"n": n, "pad": "x".repeat(2000)})).await {
            Ok(_) => {}
            Err(error) => {
                let why = webhooks_core::ErrorChain(&error).to_string();
                assert!(error.is_transient(), "{why}");
                assert!(why.contains("the disk is full"), "{why}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the disk filled up");
    let accepted = 51 - refused;

    // Space back: the next writes succeed, the WAL is given back, and every
    // accepted event is delivered.
    std::fs::remove_file(filler).unwrap();
    webhooks.publish("iq.status_updated", json!({"n": "after"})).await.unwrap();
    let wal = std::fs::metadata(mounted.0.join("webhooks.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 64 * 1024, "the WAL was checkpointed and truncated: {wal} bytes");
    running.settle().await;
    running.stop().await;
    let received = receiver.received().len();
    assert_eq!(store.pending_count().await.unwrap(), 0, "every accepted event was delivered");
    let page = webhooks.delivery_logs(webhooks_core::DeliveryQuery::new().limit(1000)).await.unwrap();
    assert_eq!(page.logs.len(), accepted + 1, "only the accepted events became deliveries");
    let recorded: usize = page.logs.iter().map(|log| log.attempts.len()).sum();
    assert_eq!(recorded, received, "every request that left is in the log");
    sqlite.close().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("the disk is full: writes fail").count(),
        1,
        "said once for the episode:\n{logs}"
    );
    assert!(logs.matches("failed to claim").count() <= 1, "the dispatcher too:\n{logs}");
    assert_eq!(logs.matches("disk space is back").count(), 1, "and once when it ended:\n{logs}");
}
