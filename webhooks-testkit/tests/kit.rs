//! The kit against a real dispatcher on an in-memory store.

use std::time::Duration;

use serde_json::json;
use webhooks_core::{AttemptResult, ManualClock, Preset, Subscription, UrlRule, VerifyError, Webhooks};
use webhooks_testkit::{Outcomes, Receiver, Reply, TestDispatcher};

const WAIT: Duration = Duration::from_secs(10);

fn deepsmith(clock: &ManualClock) -> (Webhooks, Preset) {
    let preset = Preset::deepsmith().with_url_rule(UrlRule::allow_http());
    let webhooks = Webhooks::builder()
        .store(webhooks_memory::MemoryStore::new())
        .preset(preset.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    (webhooks, preset)
}

#[tokio::test]
async fn a_verifying_receiver_refuses_a_wrong_signature_and_accepts_the_right_one() {
    let receiver = Receiver::start().await.unwrap();
    let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    let (webhooks, preset) = deepsmith(&clock);
    let subscription = webhooks
        .subscribe(Subscription::builder(receiver.url()).event_type("iq.status_updated"))
        .await
        .unwrap();
    receiver.verify_with(&preset, ["not-the-secret".into()], clock.clone());
    let (builder, mut outcomes) = Outcomes::collect(webhooks.dispatcher().allow_private_networks(true));
    let dispatcher = TestDispatcher::start(builder.build().unwrap());

    webhooks.publish("iq.status_updated", json!({"n": 1})).await.unwrap();
    dispatcher.settle().await;
    let refused = outcomes.next(WAIT).await.unwrap();
    assert!(
        matches!(refused.attempt.result, AttemptResult::Response { status: 401, ref body } if body.contains("signature")),
        "{:?}",
        refused.attempt.result
    );
    assert_eq!(receiver.received()[0].verified, Some(Err(VerifyError::SignatureMismatch)));

    receiver.verify_with(&preset, [subscription.secret.clone()], clock.clone());
    dispatcher.advance(&clock, Duration::from_secs(10)).await;
    assert_eq!(outcomes.next(WAIT).await.unwrap().as_str(), "delivered");
    assert_eq!(receiver.received()[1].verified, Some(Ok(())));
    dispatcher.stop().await;
}

#[tokio::test]
async fn without_verification_nothing_is_verified_and_the_script_answers() {
    let receiver = Receiver::scripted(|_, _| Reply::status(202)).await.unwrap();
    let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    let (webhooks, _preset) = deepsmith(&clock);
    webhooks.subscribe(Subscription::builder(receiver.url()).event_type("iq.status_updated")).await.unwrap();
    let (builder, mut outcomes) = Outcomes::collect(webhooks.dispatcher().allow_private_networks(true));
    let dispatcher = TestDispatcher::start(builder.build().unwrap());
    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let outcome = outcomes.next(WAIT).await.unwrap();
    assert!(matches!(outcome.attempt.result, AttemptResult::Response { status: 202, .. }));
    assert_eq!(receiver.received()[0].verified, None);
    dispatcher.stop().await;
}

#[tokio::test]
#[should_panic(expected = "did not settle within")]
async fn settle_fails_the_test_while_an_attempt_outlasts_the_patience() {
    let receiver = Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_secs(5))).await.unwrap();
    let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    let (webhooks, _preset) = deepsmith(&clock);
    webhooks.subscribe(Subscription::builder(receiver.url()).event_type("iq.status_updated")).await.unwrap();
    let dispatcher =
        TestDispatcher::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap())
            .patience(Duration::from_millis(100));
    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    receiver.wait_for(1, WAIT).await;
    dispatcher.settle().await;
}
