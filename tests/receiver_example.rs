//! The `receiver` example verifies what the library sends, for every preset.

mod common;

use common::{Running, over_http, recorded};
use serde_json::json;
use webhooks_core::{AttemptResult, DeliveryState, Preset, StandardScheme, Subscription, Webhooks};
use webhooks_memory::MemoryStore;

/// Starts the example on a free port; returns it and its URL.
async fn start_receiver(preset: &str, secret: &str) -> (tokio::process::Child, String) {
    let args = ["--preset", preset, "--secret", secret, "--port", "0"].map(std::ffi::OsStr::new);
    common::start_listening("receiver", &args).await
}

async fn deliver(preset: Preset, event: &str, url: &str, secret: &str) -> AttemptResult {
    // The system clock: the receiver checks timestamps against its own.
    let webhooks = Webhooks::builder().store(MemoryStore::new()).preset(over_http(preset)).build().unwrap();
    webhooks.subscribe(Subscription::builder(url).event_type(event).secret(secret)).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish(event, json!({"n": 1})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let delivered = webhooks.delivery(id).await.unwrap().unwrap().state == DeliveryState::Delivered;
    let result = webhooks.attempts(id).await.unwrap().remove(0).result;
    assert_eq!(delivered, matches!(result, AttemptResult::Response { status: 204, .. }));
    result
}

#[tokio::test]
async fn each_preset_verifies_with_the_right_secret_and_refuses_a_wrong_one() {
    let standard_secret = StandardScheme::generate_secret();
    let cases = [
        ("smartlyq", Preset::smartlyq(), "job.completed", "whsec_receiver_test_secret".to_owned()),
        ("deepsmith", Preset::deepsmith(), "iq.status_updated", "k-signing-secret".to_owned()),
        ("standard", Preset::standard(), "invoice.paid", standard_secret.expose().to_owned()),
    ];
    for (name, preset, event, secret) in cases {
        let (_child, url) = start_receiver(name, &secret).await;
        let ok = deliver(preset.clone(), event, &url, &secret).await;
        assert!(matches!(ok, AttemptResult::Response { status: 204, .. }), "{name}: {ok:?}");
        let wrong = if name == "standard" {
            StandardScheme::generate_secret().expose().to_owned()
        } else {
            "a-wrong-signing-secret".into()
        };
        let refused = deliver(preset, event, &url, &wrong).await;
        assert!(matches!(refused, AttemptResult::Response { status: 401, .. }), "{name}: {refused:?}");
    }
}
