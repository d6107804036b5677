//! Attempts are counted and timed through the `metrics` facade. Its own test
//! binary: the recorder is process-wide.

mod common;

use std::time::Duration;

use common::{Running, listening, webhooks};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use webhooks_core::Preset;
use webhooks_examples::{Receiver, Reply};

#[tokio::test]
async fn attempts_outcomes_latency_and_disables_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder in this binary");

    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 410 })).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith().with_retry_scale(0.0).unwrap());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let published = webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), published.outcomes()).await.unwrap().unwrap();
    running.stop().await;

    let mut counters = Vec::new();
    let mut histogram_samples = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key.key().labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                counters.push((key.key().name().to_owned(), labels.join(","), n))
            }
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                assert_eq!(key.key().name(), "webhooks_attempt_duration_seconds");
                histogram_samples += samples.len();
            }
            _ => {}
        }
    }
    counters.sort();
    assert_eq!(
        counters,
        vec![
            ("webhooks_attempts_total".to_owned(), "outcome=retrying".to_owned(), 2),
            ("webhooks_deliveries_created_total".to_owned(), String::new(), 1),
            ("webhooks_endpoints_disabled_total".to_owned(), String::new(), 1),
        ]
    );
    assert_eq!(histogram_samples, 2);
}
