//! What is refused by default, secret rotation, and the receiver's signals
//! (`Retry-After`, `410 Gone`), end to end against real local servers.

mod common;

use std::time::Duration;

use common::{Running, listening, recorded, start, webhooks};
use serde_json::json;
use webhooks_core::{
    AttemptResult, Clock, DeepSmithScheme, DeliveryState, DisablePolicy, Preset, Secret, SmartlyQScheme,
    Subscription, SubscriptionStatus, Webhooks,
};
use webhooks_examples::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

/// Sends one event to `url` through a dispatcher with the default address
/// guard; returns the first attempt's result.
async fn guarded_attempt(url: &str) -> AttemptResult {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let delivery = webhooks.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Pending, "a refusal is a failed attempt; the schedule goes on");
    assert!(delivery.next_attempt_at.is_some());
    webhooks.attempts(id).await.unwrap().remove(0).result
}

fn assert_refused(result: &AttemptResult) {
    assert!(
        matches!(result, AttemptResult::Error(e) if e.contains("not a public address")),
        "expected a refusal, got {result:?}"
    );
}

#[tokio::test]
async fn loopback_targets_are_refused_by_default() {
    let receiver = Receiver::start().await.unwrap();
    assert_refused(&guarded_attempt(receiver.url()).await);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let receiver = Receiver::start().await.unwrap();
    let url = receiver.url().replace("127.0.0.1", "localhost");
    assert_refused(&guarded_attempt(&url).await);
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn numeric_spellings_of_loopback_are_refused() {
    let receiver = Receiver::start().await.unwrap();
    let port = receiver.url().rsplit(':').next().unwrap().to_owned();
    for host in ["0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]"] {
        let url = format!("http://{host}:{port}");
        assert_refused(&guarded_attempt(&url).await);
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused_without_a_connection() {
    assert_refused(&guarded_attempt("http://169.254.169.254/latest/meta-data/").await);
}

#[tokio::test]
async fn private_targets_can_be_allowed_explicitly() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    assert_eq!(webhooks.delivery(id).await.unwrap().unwrap().state, DeliveryState::Delivered);
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_until_its_grace_ends() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::smartlyq());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("job.completed")).await.unwrap();
    let old = subscription.secret.clone();
    let new = webhooks.rotate_secret(subscription.id, Duration::from_secs(3600)).await.unwrap();
    assert_ne!(old, new);
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    webhooks.publish("job.completed", json!({"n": 1})).await.unwrap();
    let during = receiver.wait_for(1, WAIT).await.remove(0);
    let header = during.header("x-smartlyq-signature");
    assert_eq!(header.matches("v1=").count(), 2, "{header}");
    let scheme = SmartlyQScheme::default();
    scheme.verify_header(header, &during.body, &old, clock.now()).unwrap();
    scheme.verify_header(header, &during.body, &new, clock.now()).unwrap();

    clock.advance(Duration::from_secs(3601));
    webhooks.publish("job.completed", json!({"n": 2})).await.unwrap();
    let after = receiver.wait_for(2, WAIT).await.remove(1);
    let header = after.header("x-smartlyq-signature");
    assert_eq!(header.matches("v1=").count(), 1, "{header}");
    scheme.verify_header(header, &after.body, &new, clock.now()).unwrap();
    assert!(scheme.verify_header(header, &after.body, &old, clock.now()).is_err());
    running.stop().await;
}

#[tokio::test]
async fn deepsmith_signs_with_the_new_secret_and_receivers_may_hold_both() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let subscription = listening(&webhooks, receiver.url()).await;
    let new = webhooks.rotate_secret(subscription.id, Duration::from_secs(3600)).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    let header = request.header("x-webhook-signature");
    DeepSmithScheme.verify_header(header, &request.body, &new).unwrap();
    assert!(
        DeepSmithScheme.verify_header(header, &request.body, &subscription.secret).is_err(),
        "the header carries one signature: a receiver on the old secret alone fails during the grace"
    );
    DeepSmithScheme.verify_header_any(header, &request.body, &[subscription.secret.clone(), new]).unwrap();
    running.stop().await;
}

/// Answers `first` once, then 200; returns when the first attempt's retry is
/// due, as seconds after the attempt.
async fn retry_wait_after(first: Reply) -> i64 {
    let receiver = Receiver::scripted(move |n, _| if n == 0 { first.clone() } else { Reply::status(200) })
        .await
        .unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let due = webhooks.delivery(id).await.unwrap().unwrap().next_attempt_at.unwrap();
    (due - start()).num_seconds()
}

#[tokio::test]
async fn retry_after_seconds_lengthen_the_wait() {
    let wait = retry_wait_after(Reply::status(503).header("retry-after", "120")).await;
    assert_eq!(wait, 120);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // The manual clock stands at 2026-03-02T14:30:00Z.
    let wait =
        retry_wait_after(Reply::status(429).header("retry-after", "Mon, 02 Mar 2026 14:33:00 GMT")).await;
    assert_eq!(wait, 180);
}

#[tokio::test]
async fn retry_after_is_capped_at_the_policys_longest_wait() {
    let wait = retry_wait_after(Reply::status(503).header("retry-after", "86400")).await;
    assert_eq!(wait, 300, "DeepSmith's longest wait is 5 minutes");
}

#[tokio::test]
async fn retry_after_never_shortens_the_schedule() {
    let wait = retry_wait_after(Reply::status(429).header("retry-after", "1")).await;
    assert_eq!(wait, 10);
}

#[tokio::test]
async fn retry_after_on_other_statuses_is_ignored() {
    let wait = retry_wait_after(Reply::status(500).header("retry-after", "120")).await;
    assert_eq!(wait, 10);
}

#[tokio::test]
async fn gone_disables_the_endpoint_at_once_with_the_reason() {
    let receiver = Receiver::scripted(|_, _| Reply::status(410)).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::smartlyq());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("job.completed")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("job.completed", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let status = webhooks.subscription(subscription.id).await.unwrap().status;
    assert!(
        matches!(status, SubscriptionStatus::Disabled { ref reason, .. } if reason.contains("410")),
        "{status:?}"
    );
    assert_eq!(webhooks.delivery(id).await.unwrap().unwrap().state, DeliveryState::Held, "held, not lost");
}

#[tokio::test]
async fn gone_can_be_left_to_the_retry_schedule() {
    let receiver = Receiver::scripted(|_, _| Reply::status(410)).await.unwrap();
    let preset = Preset::smartlyq().with_disable_policy(DisablePolicy::never().disable_on_gone(false));
    let (webhooks, _clock) = webhooks(preset);
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("job.completed")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("job.completed", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    assert!(webhooks.subscription(subscription.id).await.unwrap().is_enabled());
}

#[tokio::test]
async fn verification_rejections_are_typed() {
    let webhooks = Webhooks::builder()
        .store(webhooks_memory::MemoryStore::new())
        .preset(Preset::smartlyq())
        .build()
        .unwrap();
    let scheme = webhooks.preset().scheme();
    let secret = [Secret::from("k")];
    let headers = http::HeaderMap::new();
    let error = scheme.verify(&headers, b"{}", &secret, chrono::Utc::now()).unwrap_err();
    assert_eq!(error, webhooks_core::VerifyError::MissingHeader { name: "x-smartlyq-signature" });
}

#[tokio::test]
async fn a_proxy_cannot_carry_requests_past_the_guard() {
    // The "proxy" is a local receiver: a proxied POST would reach it.
    let proxy = Receiver::start().await.unwrap();
    let target = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let url = target.url().replace("127.0.0.1", "localhost");
    webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap();
    let through_proxy = reqwest::Client::builder().proxy(reqwest::Proxy::all(proxy.url()).unwrap());
    let running = Running::start(webhooks.dispatcher().client_builder(through_proxy).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    assert!(proxy.received().is_empty(), "the request went through the proxy");
    assert!(target.received().is_empty());
    assert_refused(&webhooks.attempts(id).await.unwrap().remove(0).result);
}

#[tokio::test]
async fn an_allowed_network_is_reached_and_no_other() {
    let receiver = Receiver::start().await.unwrap();
    let attempt = |network: &'static str| {
        let url = receiver.url().to_owned();
        async move {
            let (webhooks, _clock) = webhooks(Preset::deepsmith());
            webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap();
            let running = Running::start(webhooks.dispatcher().allow_network(network).build().unwrap());
            let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
            recorded(&webhooks, id, 1).await;
            running.stop().await;
            webhooks.attempts(id).await.unwrap().remove(0).result
        }
    };
    assert!(matches!(attempt("127.0.0.0/8").await, AttemptResult::Response { status: 204, .. }));
    assert_refused(&attempt("10.0.0.0/8").await);
    assert_eq!(receiver.received().len(), 1);

    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let error = webhooks.dispatcher().allow_network("10.0.0.0/33").build().unwrap_err();
    assert!(matches!(error, webhooks_core::Error::Invalid { field: "allowed network", .. }), "{error}");
}

#[tokio::test]
async fn an_egress_proxy_carries_every_request_and_ip_literals_are_still_checked() {
    // The "proxy" is a local receiver: a proxied POST reaches it in absolute
    // form, for a name only the proxy would resolve.
    let proxy = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    webhooks
        .subscribe(
            Subscription::builder("http://hooks.customer.invalid/hooks").event_type("iq.status_updated"),
        )
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().egress_proxy(proxy.url()).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    let first = webhooks.attempts(id).await.unwrap();
    assert_eq!(webhooks.delivery(id).await.unwrap().unwrap().state, DeliveryState::Delivered, "{first:?}");
    assert_eq!(proxy.received().len(), 1, "the request went through the proxy");

    let literal = webhooks
        .subscribe(Subscription::builder("http://10.1.2.3/hooks").event_type("iq.status_updated"))
        .await
        .unwrap();
    let to_literal = webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    for delivery in &to_literal.deliveries {
        recorded(&webhooks, *delivery, 1).await;
    }
    running.stop().await;
    let mut refused = 0;
    for delivery in &to_literal.deliveries {
        if webhooks.delivery(*delivery).await.unwrap().unwrap().subscription_id == literal.id {
            assert_refused(&webhooks.attempts(*delivery).await.unwrap().remove(0).result);
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
    assert_eq!(
        proxy.received().len(),
        2,
        "the other delivery of the second event went through; the literal did not"
    );

    let (fresh, _clock) = common::webhooks(Preset::deepsmith());
    let error = fresh.dispatcher().egress_proxy("not a url").build().unwrap_err();
    // reqwest's own reason stays as the source.
    assert!(matches!(error, webhooks_core::Error::HttpClient { what: "egress proxy", .. }), "{error}");
    assert!(std::error::Error::source(&error).is_some(), "{error}");
}
