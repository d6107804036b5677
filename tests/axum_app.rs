//! The `axum_app` example, driven over real HTTP: two customers, each with
//! an endpoint; orders reach their own customer's endpoint only, once;
//! listing, reading and resending see one customer's deliveries; deleting a
//! customer; the portal behind the toy login, its forms bound to the
//! login's session; and stopping on Ctrl-C.

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
async fn each_customer_sees_and_receives_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_hooks, bob_hooks) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    let app = App::start(&dir.path().join("app.db")).await;
    use reqwest::Method;

    let mut secrets = Vec::new();
    for (customer, receiver) in [("alice", &alice_hooks), ("bob", &bob_hooks)] {
        let (status, created) = app
            .call(
                Method::POST,
                &format!("/customers/{customer}/subscriptions"),
                Some(json!({"url": receiver.url(), "event_types": ["order.created"]})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["owner"], customer, "{created}");
        secrets.push(created["secret"].as_str().unwrap().to_owned());
    }
    // Listed, an endpoint's secret is redacted.
    let (_, listed) = app.call(Method::GET, "/customers/alice/subscriptions", None).await;
    assert_eq!(listed["subscriptions"][0]["secret"], "<redacted>", "{listed}");
    assert!(!listed.to_string().contains(&secrets[0]), "{listed}");

    // Alice orders twice (the second a retried request): one event, to her.
    let order = json!({"id": "o-1", "total": 1200});
    let (status, placed) = app.call(Method::POST, "/customers/alice/orders", Some(order.clone())).await;
    assert_eq!(status, 202, "{placed}");
    assert_eq!(placed["repeated"], false);
    let delivery = placed["deliveries"][0].as_str().unwrap().to_owned();
    let (_, again) = app.call(Method::POST, "/customers/alice/orders", Some(order)).await;
    assert_eq!(
        (again["repeated"].clone(), again["deliveries"].clone()),
        (json!(true), placed["deliveries"].clone())
    );
    let (_, bobs) =
        app.call(Method::POST, "/customers/bob/orders", Some(json!({"id": "o-1", "total": 5}))).await;
    assert_eq!(bobs["repeated"], false, "Bob's o-1 is another order: {bobs}");

    let request = alice_hooks.wait_for(1, Duration::from_secs(10)).await.remove(0);
    webhooks_core::DeepSmithScheme
        .verify_header(
            request.header("x-webhook-signature"),
            &request.body,
            &webhooks_core::Secret::from(secrets[0].clone()),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&request.body).contains("1200"));
    let to_bob = bob_hooks.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert!(String::from_utf8_lossy(&to_bob.body).contains("\"total\":5"), "Bob gets his own order only");

    let mut listed = Value::Null;
    for _ in 0..200 {
        let (status, page) = app.call(Method::GET, "/customers/alice/deliveries", None).await;
        assert_eq!(status, 200);
        if page["deliveries"][0]["state"] == "delivered" {
            listed = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["deliveries"][0]["id"], delivery.as_str(), "{listed}");
    assert_eq!(listed["deliveries"][0]["body"]["data"]["total"], 1200, "the body as JSON: {listed}");
    let (_, filtered) = app
        .call(Method::GET, "/customers/alice/deliveries?state=delivered&event_type=order.created", None)
        .await;
    assert_eq!(filtered["deliveries"][0]["id"], delivery.as_str(), "{filtered}");
    let (_, none) = app.call(Method::GET, "/customers/alice/deliveries?state=held", None).await;
    assert_eq!(none["deliveries"], json!([]), "{none}");
    let (_, not_bobs) = app.call(Method::GET, "/customers/bob/deliveries?owner=alice", None).await;
    assert_eq!(
        not_bobs["deliveries"].as_array().unwrap().len(),
        1,
        "a query names no other owner: {not_bobs}"
    );
    assert_ne!(not_bobs["deliveries"][0]["id"], delivery.as_str(), "{not_bobs}");
    // Each customer has one delivery in the store, Alice's delivered: what
    // reached the receivers is all that can.
    assert_eq!(alice_hooks.received().len(), 1, "Alice got her order once and nothing of Bob's");
    assert_eq!(bob_hooks.received().len(), 1, "Bob got nothing of Alice's");

    let (status, shown) =
        app.call(Method::GET, &format!("/customers/alice/deliveries/{delivery}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["delivery"]["state"], "delivered", "{shown}");
    assert_eq!(shown["attempts"][0]["response"]["status"], 204, "{shown}");
    assert_eq!(shown["attempts"][0]["cycle"], 1, "{shown}");
    assert!(shown["attempts"][0]["duration_ms"].is_number(), "{shown}");
    let (status, stats) = app.call(Method::GET, "/customers/alice/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (stats["subscriptions"].clone(), stats["deliveries"]["delivered"].clone()),
        (json!(1), json!(1))
    );
    // Bob cannot read or resend Alice's delivery: it does not exist for him.
    let (status, _) = app.call(Method::GET, &format!("/customers/bob/deliveries/{delivery}"), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        app.call(Method::POST, &format!("/customers/bob/deliveries/{delivery}/resend"), None).await;
    assert_eq!(status, 404);

    let (status, _) =
        app.call(Method::POST, &format!("/customers/alice/deliveries/{delivery}/resend"), None).await;
    assert_eq!(status, 202);
    let again = alice_hooks.wait_for(2, Duration::from_secs(10)).await.remove(1);
    assert_eq!(again.header("x-webhook-id"), delivery);
    assert_eq!(again.body, request.body);

    // Alice's account goes; Bob's stays.
    let (status, deleted) = app.call(Method::DELETE, "/customers/alice", None).await;
    assert_eq!((status, deleted["deleted_subscriptions"].clone()), (200, json!(1)));
    let (_, hers) = app.call(Method::GET, "/customers/alice/subscriptions", None).await;
    assert_eq!(hers["subscriptions"], json!([]));
    let (_, his) = app.call(Method::GET, "/customers/bob/subscriptions", None).await;
    assert_eq!(his["subscriptions"].as_array().unwrap().len(), 1);

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
            "/customers/alice/subscriptions",
            Some(json!({"url": "ftp://x", "event_types": ["order.created"]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("scheme"), "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/customers/alice/subscriptions",
            Some(json!({"url": "https://alice.example/", "event_types": ["order.craeted"]})),
        )
        .await;
    assert_eq!(status, 400, "a typo in an event type is refused");
    assert!(body["error"].as_str().unwrap().contains("order.craeted"), "{body}");
    let missing = webhooks_core::DeliveryId::new();
    let (status, _) = app.call(Method::GET, &format!("/customers/alice/deliveries/{missing}"), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        app.call(Method::POST, &format!("/customers/alice/deliveries/{missing}/resend"), None).await;
    assert_eq!(status, 404);
    let (status, body) = app.call(Method::GET, "/customers/alice/deliveries?state=lost", None).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("lost"), "{body}");
    let (status, body) = app.call(Method::GET, "/customers/alice/deliveries?after=yesterday", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(app.interrupt().await, Some(0));
}

#[tokio::test]
async fn the_portal_is_mounted_behind_the_toy_login() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await.unwrap();
    let app = App::start(&dir.path().join("app.db")).await;
    use reqwest::Method;
    let (status, created) = app
        .call(
            Method::POST,
            "/customers/alice/subscriptions",
            Some(json!({"url": receiver.url(), "event_types": ["order.created"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");

    // The login sets the cookies the portal reads, the customer's and a
    // new session's, and opens the portal.
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = || async {
        let response = no_redirects.get(format!("{}/login?customer=alice", app.base)).send().await.unwrap();
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/portal");
        let cookies = response.headers().get_all("set-cookie").iter();
        let cookies: Vec<String> =
            cookies.map(|cookie| cookie.to_str().unwrap().split(';').next().unwrap().to_owned()).collect();
        assert_eq!(cookies[0], "customer=alice");
        cookies[1].strip_prefix("session=").expect("a session cookie").to_owned()
    };
    let (session, later_session) = (sign_in().await, sign_in().await);
    assert_ne!(session, later_session, "each sign-in starts a session");
    let as_customer = |customer: &str, path: &str| {
        app.client.get(format!("{}{path}", app.base)).header("cookie", format!("customer={customer}")).send()
    };
    let page = as_customer("alice", "/portal").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as <strong>alice</strong>") && html.contains(receiver.url()), "{html}");
    let api = as_customer("alice", "/portal/api/endpoints").await.unwrap().text().await.unwrap();
    let listed: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(listed["endpoints"][0]["id"], created["id"], "{listed}");
    let bobs: Value = serde_json::from_str(
        &as_customer("bob", "/portal/api/endpoints").await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(bobs["endpoints"], json!([]), "Bob sees none of Alice's");

    // A form passes in the session its page was rendered in, and only there.
    let in_session = |session: &str| format!("customer=alice; session={session}");
    let page = app.client.get(format!("{}/portal", app.base)).header("cookie", in_session(&session));
    let page = page.send().await.unwrap().text().await.unwrap();
    let at = page.find(r#"name="csrf" value=""#).expect("a form") + r#"name="csrf" value=""#.len();
    let token = &page[at..at + page[at..].find('"').unwrap()];
    let disable = |session: &str| {
        let form = form_urlencoded::Serializer::new(String::new()).append_pair("csrf", token).finish();
        no_redirects
            .post(format!("{}/portal/endpoints/{}/disable", app.base, created["id"].as_str().unwrap()))
            .header("cookie", in_session(session))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    assert_eq!(disable(&later_session).await.unwrap().status(), 403, "another session's form");
    assert_eq!(disable(&session).await.unwrap().status(), 303);

    let anonymous = app.client.get(format!("{}/portal", app.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "nobody signed in");
    let home = app.client.get(format!("{}/", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(home.contains(r#"action="/login""#), "{home}");
    assert_eq!(app.interrupt().await, Some(0));
}
