//! Bad input gets a typed error that names the problem, and nothing panics.

mod common;

use std::time::Duration;

use common::webhooks;
use serde_json::json;
use webhooks_core::{
    Error, Exponential, MAX_DESCRIPTION_BYTES, MAX_HEADER_VALUE_BYTES, MAX_HEADERS, MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES, MAX_REASON_BYTES, MAX_SECRET_BYTES, MIN_SECRET_BYTES, MIN_WHSEC_SECRET_BYTES,
    Preset, Schedule, Subscription, Webhooks,
};
use webhooks_memory::MemoryStore;

fn invalid_field(error: &Error) -> &'static str {
    match error {
        Error::Invalid { field, .. } => field,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_facade_needs_a_store_a_preset_and_a_body_limit() {
    let error = Webhooks::builder().preset(Preset::smartlyq()).build().unwrap_err();
    assert_eq!(invalid_field(&error), "store");
    let error = Webhooks::builder().store(MemoryStore::new()).build().unwrap_err();
    assert_eq!(invalid_field(&error), "preset");
    let error = Webhooks::builder()
        .store(MemoryStore::new())
        .preset(Preset::smartlyq())
        .max_body_bytes(0)
        .build()
        .unwrap_err();
    assert_eq!(invalid_field(&error), "max body bytes");
}

#[tokio::test]
async fn dispatcher_settings_out_of_range_are_refused_by_name() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let cases = [
        (webhooks.dispatcher().concurrency(0), "concurrency"),
        (webhooks.dispatcher().concurrency(1_000_000), "concurrency"),
        (webhooks.dispatcher().per_endpoint_concurrency(0), "per-endpoint concurrency"),
        (webhooks.dispatcher().request_timeout(Duration::ZERO), "request timeout"),
        (webhooks.dispatcher().request_timeout(Duration::from_secs(86_400)), "request timeout"),
        (webhooks.dispatcher().poll_interval(Duration::ZERO), "poll interval"),
    ];
    for (builder, field) in cases {
        let error = builder.build().unwrap_err();
        assert_eq!(invalid_field(&error), field);
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[tokio::test]
async fn absurd_retry_settings_are_refused_by_name() {
    assert_eq!(invalid_field(&Exponential::new(Duration::ZERO, 2.0, 5).unwrap_err()), "retry base");
    assert_eq!(
        invalid_field(&Exponential::new(Duration::from_secs(1), -2.0, 5).unwrap_err()),
        "retry factor"
    );
    assert_eq!(
        invalid_field(&Exponential::new(Duration::from_secs(1), 2.0, 101).unwrap_err()),
        "max retries"
    );
    let error = Exponential::new(Duration::from_secs(1), 2.0, 3).unwrap().with_jitter(1.5).unwrap_err();
    assert_eq!(invalid_field(&error), "retry jitter");
    let error = Schedule::new(vec![Duration::from_secs(1); 101]).unwrap_err();
    assert_eq!(invalid_field(&error), "retry schedule");
    assert_eq!(
        invalid_field(&Preset::smartlyq().with_retry_scale(f64::INFINITY).unwrap_err()),
        "retry scale"
    );
    assert_eq!(invalid_field(&Preset::smartlyq().with_retry_scale(-0.5).unwrap_err()), "retry scale");
}

#[tokio::test]
async fn bad_endpoint_urls_are_refused_with_the_reason() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    for url in [
        "",
        "not a url",
        "ftp://example.com/",
        "file:///etc/passwd",
        "https://user:pw@example.com/",
        "http://",
    ] {
        let error = webhooks
            .subscribe(Subscription::builder(url).event_type("iq.status_updated"))
            .await
            .expect_err(url);
        assert!(matches!(error, Error::InvalidUrl { .. }), "{url}: {error:?}");
        assert!(!error.to_string().contains("pw@"), "{error}");
    }
}

#[tokio::test]
async fn a_subscription_needs_event_types_and_a_non_empty_secret() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let error = webhooks.subscribe(Subscription::builder("https://example.com/")).await.unwrap_err();
    assert_eq!(invalid_field(&error), "event types");
    let error = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("iq.status_updated").secret(""))
        .await
        .unwrap_err();
    assert_eq!(invalid_field(&error), "secret");
}

#[tokio::test]
async fn secrets_reasons_and_header_values_outside_their_bounds_are_refused_by_name() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let endpoint = || Subscription::builder("https://example.com/").event_type("iq.status_updated");
    for (secret, accepted) in [
        ("s".repeat(MIN_SECRET_BYTES - 1), false),
        ("s".repeat(MIN_SECRET_BYTES), true),
        (format!("whsec_{}", "s".repeat(MIN_WHSEC_SECRET_BYTES - 7)), false),
        (format!("whsec_{}", "s".repeat(MIN_WHSEC_SECRET_BYTES - 6)), true),
        ("s".repeat(MAX_SECRET_BYTES), true),
        ("s".repeat(MAX_SECRET_BYTES + 1), false),
    ] {
        let subscribed = webhooks.subscribe(endpoint().secret(secret.as_str())).await;
        match subscribed {
            Ok(_) => assert!(accepted, "{} bytes accepted", secret.len()),
            Err(error) => {
                assert!(!accepted, "{} bytes refused: {error}", secret.len());
                assert_eq!(invalid_field(&error), "secret");
                assert!(error.to_string().contains("bytes"), "{error}");
            }
        }
    }

    let subscription = webhooks.subscribe(endpoint()).await.unwrap();
    let error = webhooks.disable(subscription.id, &"r".repeat(MAX_REASON_BYTES + 1)).await.unwrap_err();
    assert_eq!(invalid_field(&error), "reason");
    assert!(
        webhooks.subscription(subscription.id).await.unwrap().is_enabled(),
        "a refused call changes nothing"
    );
    webhooks.disable(subscription.id, &"r".repeat(MAX_REASON_BYTES)).await.unwrap();

    let error = webhooks
        .subscribe(endpoint().header("X-Route", "v".repeat(MAX_HEADER_VALUE_BYTES + 1)))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("X-Route") || error.to_string().contains("x-route"), "{error}");
    let too_many = (0..=MAX_HEADERS).fold(endpoint(), |builder, n| builder.header(format!("X-H{n}"), "v"));
    assert_eq!(invalid_field(&webhooks.subscribe(too_many).await.unwrap_err()), "headers");
}

#[tokio::test]
async fn descriptions_and_metadata_over_their_limits_are_refused_by_name() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let endpoint = || Subscription::builder("https://example.com/").event_type("iq.status_updated");
    let at_the_limits = (0..MAX_METADATA_ENTRIES).fold(
        endpoint().description("d".repeat(MAX_DESCRIPTION_BYTES)),
        |builder, n| {
            builder
                .metadata(format!("{n:0>width$}", width = MAX_METADATA_BYTES), "v".repeat(MAX_METADATA_BYTES))
        },
    );
    assert!(webhooks.subscribe(at_the_limits).await.is_ok());

    let error =
        webhooks.subscribe(endpoint().description("d".repeat(MAX_DESCRIPTION_BYTES + 1))).await.unwrap_err();
    assert_eq!(invalid_field(&error), "description");
    let too_many =
        (0..=MAX_METADATA_ENTRIES).fold(endpoint(), |builder, n| builder.metadata(n.to_string(), "v"));
    assert_eq!(invalid_field(&webhooks.subscribe(too_many).await.unwrap_err()), "metadata");
    for (key, value) in [
        (String::new(), "v".to_owned()),
        ("k".repeat(MAX_METADATA_BYTES + 1), "v".to_owned()),
        ("k".to_owned(), "v".repeat(MAX_METADATA_BYTES + 1)),
    ] {
        let error = webhooks.subscribe(endpoint().metadata(key, value)).await.unwrap_err();
        assert_eq!(invalid_field(&error), "metadata");
    }
}

#[tokio::test]
async fn event_data_may_be_any_json_but_null() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    for data in [json!({"id": 7}), json!([1, 2]), json!("text"), json!(42), json!(true)] {
        assert!(webhooks.publish("iq.status_updated", data.clone()).await.is_ok(), "{data}");
    }
    let error = webhooks.publish("iq.status_updated", serde_json::Value::Null).await.unwrap_err();
    assert_eq!(invalid_field(&error), "data");
}

#[tokio::test]
async fn event_names_outside_the_catalogue_or_not_ascii_are_refused() {
    let (webhooks, _clock) = webhooks(Preset::smartlyq().with_event_types(["naïve.event", "ok.event"]));
    let error = webhooks.publish("job.exploded", json!({})).await.unwrap_err();
    assert!(matches!(error, Error::UnknownEventType { ref name, .. } if name == "job.exploded"));
    for name in ["", "naïve.event", "bad name", "new\nline"] {
        let error = webhooks.publish(name, json!({})).await.unwrap_err();
        assert_eq!(invalid_field(&error), "event type", "{name:?}");
    }
    assert!(webhooks.publish("ok.event", json!({})).await.is_ok());
}

#[tokio::test]
async fn empty_and_oversized_payloads_are_refused() {
    let webhooks = Webhooks::builder()
        .store(MemoryStore::new())
        .preset(Preset::smartlyq())
        .max_body_bytes(200)
        .build()
        .unwrap();
    let error = webhooks.publish("job.completed", serde_json::Value::Null).await.unwrap_err();
    assert_eq!(invalid_field(&error), "data");
    let error = webhooks.publish("job.completed", json!({"text": "x".repeat(500)})).await.unwrap_err();
    assert!(matches!(error, Error::BodyTooLarge { limit: 200, size } if size > 500), "{error:?}");
    assert!(webhooks.publish("job.completed", json!({"text": "small"})).await.is_ok());
}

#[tokio::test]
async fn unknown_subscriptions_are_named_in_the_error() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let id = webhooks_core::SubscriptionId::new();
    let error = webhooks.subscription(id).await.unwrap_err();
    assert!(matches!(error, Error::SubscriptionNotFound { id: missing } if missing == id));
    let error = webhooks.rotate_secret(id, Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(error, Error::SubscriptionNotFound { .. }));
    assert!(webhooks.enable(id).await.is_err());
    assert!(error.to_string().contains(&id.to_string()));
}

#[tokio::test]
async fn a_grace_period_over_thirty_days_is_refused() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let subscription = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("iq.status_updated"))
        .await
        .unwrap();
    let error = webhooks.rotate_secret(subscription.id, Duration::from_secs(31 * 86_400)).await.unwrap_err();
    assert_eq!(invalid_field(&error), "grace period");
}

#[tokio::test]
async fn one_bad_event_in_a_batch_stores_none_of_it() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("iq.status_updated"))
        .await
        .unwrap();
    let batch = vec![("iq.status_updated", json!({"n": 1})), ("job.completed", json!({}))];
    let error = webhooks.publish_many(batch).await.unwrap_err();
    assert!(matches!(error, Error::UnknownEventType { ref name, .. } if name == "job.completed"));
    let stored = webhooks.deliveries(webhooks_core::DeliveryQuery::default()).await.unwrap();
    assert!(stored.deliveries.is_empty());
    let published = webhooks
        .publish_many(vec![("iq.status_updated", json!({"n": 1})), ("iq.status_updated", json!({"n": 2}))])
        .await
        .unwrap();
    assert_eq!(published.iter().map(|p| p.deliveries.len()).collect::<Vec<_>>(), vec![1, 1]);
}

#[tokio::test]
async fn an_endpoint_url_over_the_limit_is_refused_with_its_length_not_echoed() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let long = format!("https://example.com/{}", "a".repeat(webhooks_core::MAX_URL_BYTES));
    let error =
        webhooks.subscribe(Subscription::builder(long).event_type("iq.status_updated")).await.unwrap_err();
    match &error {
        Error::InvalidUrl { url, reason } => {
            assert!(reason.contains("over the 4096-byte limit"), "{reason}");
            assert!(url.len() < 300, "the URL is shown cut: {} bytes", url.len());
        }
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
    // At the limit it is accepted.
    let at_limit = format!("https://example.com/{}", "a".repeat(webhooks_core::MAX_URL_BYTES - 20));
    assert!(
        webhooks.subscribe(Subscription::builder(at_limit).event_type("iq.status_updated")).await.is_ok()
    );
}

#[tokio::test]
async fn channels_are_few_short_and_plain_on_events_and_subscriptions() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let long = "c".repeat(webhooks_core::MAX_CHANNEL_BYTES + 1);
    let many: Vec<String> = (0..=webhooks_core::MAX_CHANNELS).map(|n| format!("c{n}")).collect();
    for bad in [vec!["with space".to_owned()], vec![String::new()], vec![long], many] {
        let publish = webhooks_core::Publish::new("iq.status_updated", json!({})).channels(bad.clone());
        let error = webhooks.publish_event(publish).await.unwrap_err();
        assert_eq!(invalid_field(&error), "channels", "{bad:?}");
        let subscription =
            Subscription::builder("https://example.com/").event_type("iq.status_updated").channels(bad);
        assert_eq!(invalid_field(&webhooks.subscribe(subscription).await.unwrap_err()), "channels");
    }
    let fine =
        Subscription::builder("https://example.com/").event_type("iq.status_updated").channel("region:eu-1");
    let subscription = webhooks.subscribe(fine).await.unwrap();
    let update = webhooks_core::SubscriptionUpdate::new().channels(["bad channel"]);
    let error = webhooks.update_subscription(subscription.id, update).await.unwrap_err();
    assert_eq!(invalid_field(&error), "channels");
    assert_eq!(webhooks.subscription(subscription.id).await.unwrap().channels.len(), 1, "nothing changed");
}
