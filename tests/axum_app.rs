//! The `axum_app` example, driven over real HTTP: create a subscription,
//! publish, list deliveries, read one, resend it, and stop on Ctrl-C.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use webhooks_examples::Receiver;

struct App {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl App {
    async fn start(db: &std::path::Path) -> Self {
        let args = ["--port", "0", "--allow-private", "--db"].map(std::ffi::OsStr::new);
        let (child, base) =
            common::start_listening("axum_app", &[&args[..], &[db.as_os_str()]].concat()).await;
        Self { child, base, client: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn interrupt(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        status.code()
    }
}

#[tokio::test]
async fn the_routes_subscribe_publish_list_show_and_resend() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await.unwrap();
    let app = App::start(&dir.path().join("app.db")).await;
    use reqwest::Method;

    let (status, created) = app
        .call(
            Method::POST,
            "/subscriptions",
            Some(json!({"url": receiver.url(), "event_types": ["content.status_updated"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let subscription = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    let (status, published) = app
        .call(Method::POST, "/events", Some(json!({"event": "content.status_updated", "data": {"id": 7}})))
        .await;
    assert_eq!(status, 202, "{published}");
    let delivery = published["deliveries"][0].as_str().unwrap().to_owned();

    let request = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    webhooks_core::DeepSmithScheme
        .verify_header(
            request.header("x-webhook-signature"),
            &request.body,
            &webhooks_core::Secret::from(secret),
        )
        .unwrap();

    let mut listed = Value::Null;
    for _ in 0..200 {
        let (status, page) =
            app.call(Method::GET, &format!("/deliveries?subscription={subscription}"), None).await;
        assert_eq!(status, 200);
        if page["deliveries"][0]["state"] == "delivered" {
            listed = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed["deliveries"][0]["id"], delivery.as_str(), "{listed}");
    assert_eq!(listed["next"], Value::Null);

    let (status, shown) = app.call(Method::GET, &format!("/deliveries/{delivery}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["log"][0]["status"], 204, "{shown}");

    let (status, _) = app.call(Method::POST, &format!("/deliveries/{delivery}/resend"), None).await;
    assert_eq!(status, 202);
    let again = receiver.wait_for(2, Duration::from_secs(10)).await.remove(1);
    assert_eq!(again.header("x-webhook-id"), delivery);
    assert_eq!(again.body, request.body);

    assert_eq!(app.interrupt().await, Some(0), "Ctrl-C stops it cleanly");
}

#[tokio::test]
async fn bad_input_and_unknown_ids_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir.path().join("app.db")).await;
    use reqwest::Method;
    let (status, body) = app
        .call(
            Method::POST,
            "/subscriptions",
            Some(json!({"url": "ftp://x", "event_types": ["iq.status_updated"]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("scheme"), "{body}");
    let (status, body) = app.call(Method::POST, "/events", Some(json!({"event": "nope", "data": {}}))).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    let missing = webhooks_core::DeliveryId::new();
    let (status, _) = app.call(Method::GET, &format!("/deliveries/{missing}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.call(Method::POST, &format!("/deliveries/{missing}/resend"), None).await;
    assert_eq!(status, 404);
    let (status, _) = app.call(Method::GET, "/deliveries?state=lost", None).await;
    assert_eq!(status, 400);
    assert_eq!(app.interrupt().await, Some(0));
}
