//! The Standard Webhooks preset: the specification's published vectors, and
//! deliveries a receiver verifies end to end.

mod common;

use std::time::Duration;

use chrono::DateTime;
use common::{Running, recorded, webhooks};
use serde::Deserialize;
use serde_json::json;
use webhooks_core::{
    Clock, Error, Preset, Secret, SignatureScheme, StandardScheme, Subscription, VerifyError,
};
use webhooks_examples::Receiver;

#[derive(Deserialize)]
struct Vectors {
    secret: String,
    msg_id: String,
    timestamp: i64,
    payload: String,
    signature: String,
    wrong_signatures: Vec<String>,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("data/standard_webhooks.json")).expect("the vectors parse")
}

#[test]
fn signs_the_specifications_vector_byte_for_byte() {
    let v = vectors();
    let at = DateTime::from_timestamp(v.timestamp, 0).unwrap();
    let signature =
        StandardScheme::default().signature(&v.msg_id, at, v.payload.as_bytes(), &Secret::from(v.secret));
    assert_eq!(signature.as_deref(), Some(v.signature.as_str()));
}

#[test]
fn verifies_the_vector_among_others_and_refuses_the_wrong_ones() {
    let v = vectors();
    let scheme = StandardScheme::default();
    let now = DateTime::from_timestamp(v.timestamp + 10, 0).unwrap();
    let secrets = [Secret::from(v.secret.as_str())];
    let ts = v.timestamp.to_string();
    let listed = format!("{} {} v1a,aGVsbG8= {}", v.wrong_signatures[1], v.signature, v.wrong_signatures[2]);
    assert_eq!(scheme.verify_values(&v.msg_id, &ts, &listed, v.payload.as_bytes(), &secrets, now), Ok(()));
    let wrong = v.wrong_signatures.join(" ");
    assert_eq!(
        scheme.verify_values(&v.msg_id, &ts, &wrong, v.payload.as_bytes(), &secrets, now),
        Err(VerifyError::SignatureMismatch)
    );
    let late = DateTime::from_timestamp(v.timestamp + 301, 0).unwrap();
    assert!(matches!(
        scheme.verify_values(&v.msg_id, &ts, &v.signature, v.payload.as_bytes(), &secrets, late),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    for (id, ts, signatures) in [
        ("", ts.as_str(), v.signature.as_str()),
        (&v.msg_id, "x", &v.signature),
        (&v.msg_id, &ts, "v1"),
        (&v.msg_id, &ts, "v1,***"),
    ] {
        assert!(matches!(
            scheme.verify_values(id, ts, signatures, v.payload.as_bytes(), &secrets, now),
            Err(VerifyError::MalformedHeader { .. })
        ));
    }
}

#[tokio::test]
async fn deliveries_carry_the_three_headers_and_verify() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::standard());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("invoice.paid")).await.unwrap();
    assert!(subscription.secret.expose().starts_with("whsec_"));
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("invoice.paid", json!({"invoice": "in_1"})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;

    let request = receiver.received().remove(0);
    assert_eq!(request.header("webhook-id"), id.to_string());
    assert_eq!(request.header("webhook-timestamp"), clock.now().timestamp().to_string());
    assert!(request.header("webhook-signature").starts_with("v1,"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!((&body["type"], &body["data"]), (&json!("invoice.paid"), &json!({"invoice": "in_1"})));
    StandardScheme::default()
        .verify(&request.headers, &request.body, std::slice::from_ref(&subscription.secret), clock.now())
        .unwrap();
}

#[tokio::test]
async fn a_rotation_sends_both_signatures_space_separated() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::standard());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("invoice.paid")).await.unwrap();
    let new = webhooks.rotate_secret(subscription.id, Duration::from_secs(600)).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("invoice.paid", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;

    let request = receiver.received().remove(0);
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    for secret in [subscription.secret, new] {
        StandardScheme::default().verify(&request.headers, &request.body, &[secret], clock.now()).unwrap();
    }
}

#[tokio::test]
async fn any_dotted_name_is_an_event_type_and_https_is_required() {
    let webhooks = webhooks_core::Webhooks::builder()
        .store(webhooks_memory::MemoryStore::new())
        .preset(Preset::standard())
        .build()
        .unwrap();
    webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("any.thing_here"))
        .await
        .unwrap();
    assert_eq!(webhooks.publish("any.thing_here", json!({})).await.unwrap().deliveries.len(), 1);
    assert!(webhooks.publish("no..dots", json!({})).await.is_err());
    let error =
        webhooks.subscribe(Subscription::builder("http://example.com/").event_type("a.b")).await.unwrap_err();
    assert!(matches!(error, Error::InsecureUrl { .. }));
    let error = webhooks
        .subscribe(
            Subscription::builder("https://example.com/")
                .event_type("a.b")
                .secret("not base64 but long enough!"),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("base64"), "{error}");
}
