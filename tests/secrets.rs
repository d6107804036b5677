//! Secrets never reach logs, `Debug` output or errors. Its own test binary:
//! the subscriber that captures the logs is process-wide.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, recorded, webhooks};
use serde_json::json;
use webhooks_core::{Preset, Secret, Subscription};
use webhooks_examples::{Receiver, Reply};

/// A writer the test can read back: everything the library logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_debug_output_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Process-wide: a thread-local subscriber misses callsites whose
    // interest another thread cached first.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let secret = "whsec_NeverPrintThisSecretAnywhere0";
    let token = "NeverPrintThisGatewayToken";
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 200 })).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith().with_retry_scale(0.0).unwrap());
    let subscription = webhooks
        .subscribe(
            // A path and a query may carry tokens too.
            Subscription::builder(format!(
                "{}hooks/NeverLogThisPath?token=NeverLogThisQuery",
                receiver.url()
            ))
            .event_type("iq.status_updated")
            .secret(secret)
            .secret_header("Authorization", format!("Bearer {token}")),
        )
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id =
        webhooks.publish("iq.status_updated", json!({"private": "payload-text"})).await.unwrap().deliveries
            [0];
    recorded(&webhooks, id, 2).await;
    running.stop().await;

    let rotated = webhooks.rotate_secret(subscription.id, Duration::from_secs(60)).await.unwrap();
    let subscription = webhooks.subscription(subscription.id).await.unwrap();
    let debug = format!("{subscription:?} {webhooks:?} {rotated:?} {:?}", Secret::from(secret));
    let error = webhooks
        .subscribe(
            Subscription::builder(format!("https://user:{secret}@example.com/"))
                .event_type("iq.status_updated"),
        )
        .await
        .unwrap_err();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();

    assert!(logs.contains("webhooks.attempt"), "the attempt spans were logged:\n{logs}");
    // The spans carry what an operator searches by.
    for field in [
        format!("delivery_id={id}"),
        format!("subscription_id={}", subscription.id),
        "event_type=iq.status_updated".to_owned(),
        "attempt=1".to_owned(),
        "status=500".to_owned(),
        "outcome=\"retrying\"".to_owned(),
        "status=200".to_owned(),
        "outcome=\"delivered\"".to_owned(),
        "duration_ms=".to_owned(),
        "webhooks.publish".to_owned(),
        "host=127.0.0.1".to_owned(),
    ] {
        assert!(logs.contains(&field), "{field} in the logs:\n{logs}");
    }
    // The receiver got the header; nothing else ever shows it.
    assert_eq!(receiver.received()[0].header("authorization"), format!("Bearer {token}"));
    let admin = serde_json::to_string(&subscription.settings).unwrap();
    for text in [&logs, &debug, &error.to_string(), &format!("{error:?}"), &admin] {
        assert!(!text.contains(token), "a secret header leaked into: {text}");
        assert!(!text.contains(secret), "a secret leaked into: {text}");
        assert!(!text.contains(rotated.expose()), "a secret leaked into: {text}");
    }
    assert!(!logs.contains("payload-text"), "bodies stay out of logs:\n{logs}");
    for part in ["NeverLogThisPath", "NeverLogThisQuery"] {
        assert!(!logs.contains(part), "an endpoint's path and query stay out of logs:\n{logs}");
    }
}
