//! Publishing returns a handle to await each delivery's final outcome.

mod common;

use std::time::Duration;

use common::{Running, listening, webhooks};
use serde_json::json;
use webhooks_core::{Outcome, Preset};
use webhooks_examples::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_handle_reports_delivered_dropped_and_held() {
    let ok = Receiver::start().await.unwrap();
    let failing = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let gone = Receiver::scripted(|_, _| Reply::status(410)).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith().with_retry_scale(0.0).unwrap());
    for receiver in [&ok, &failing, &gone] {
        listening(&webhooks, receiver.url()).await;
    }
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    let published = webhooks.publish("iq.status_updated", json!({"n": 1})).await.unwrap();
    let outcomes = tokio::time::timeout(WAIT, published.outcomes()).await.expect("settles").unwrap();
    running.stop().await;

    assert_eq!(outcomes.len(), 3);
    let mut seen: Vec<Outcome> = outcomes.iter().map(|(_, outcome)| *outcome).collect();
    seen.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(seen, vec![Outcome::Delivered, Outcome::Dropped, Outcome::Held]);
    for (id, outcome) in outcomes {
        let delivery = webhooks.delivery(id).await.unwrap().unwrap();
        let subscription = webhooks.subscription(delivery.subscription_id).await.unwrap();
        let expected_url = match outcome {
            Outcome::Delivered => ok.url(),
            Outcome::Dropped => failing.url(),
            Outcome::Held => gone.url(),
        };
        assert_eq!(subscription.url.as_str(), expected_url);
    }
}

#[tokio::test]
async fn the_handle_waits_while_retries_are_pending() {
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let (webhooks, clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let published = webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let waiting = tokio::spawn({
        let published = published.clone();
        async move { published.outcomes().await }
    });
    receiver.wait_for(1, WAIT).await;
    // Settled: the failed attempt is recorded and nothing is due until the
    // clock moves, so the handle has all it will hear until then.
    running.settle().await;
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "a delivery waiting for its retry has no outcome yet");

    receiver.rescript(|_, _| Reply::status(200));
    clock.advance(Duration::from_secs(10));
    let outcomes = tokio::time::timeout(WAIT, waiting).await.expect("settles").unwrap().unwrap();
    assert_eq!(outcomes, vec![(published.deliveries[0], Outcome::Delivered)]);
    running.stop().await;
}
