//! The portal's JSON API and its forms over real HTTP, in a real host app
//! with a real receiver: every route scoped to the signed-in owner, errors
//! with stable codes, CSRF and JSON-only protection, secrets shown once.

#[path = "portal/mod.rs"]
mod common;

use reqwest::Method;
use serde_json::{Value, json};

use common::{Host, Receiver, csrf_of};

async fn create(host: &Host, owner: &str, url: &str) -> Value {
    let (status, created) = host
        .api(owner, Method::POST, "/endpoints", Some(json!({"url": url, "event_types": ["order.created"]})))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test]
async fn the_api_manages_one_owners_endpoints_and_deliveries() {
    let host = Host::start().await;
    let receiver = Receiver::start().await;

    let created = create(&host, "alice", &receiver.url).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");

    let (status, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret), "the secret is shown at creation only: {listed}");
    let (_, shown) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert!(!shown.to_string().contains(&secret));
    assert_eq!(shown["enabled"], true);

    let (_, catalogue) = host.api("alice", Method::GET, "/event-types", None).await;
    let order_created =
        catalogue["event_types"].as_array().unwrap().iter().find(|t| t["name"] == "order.created");
    let order_created = order_created.unwrap_or_else(|| panic!("{catalogue}"));
    assert_eq!(order_created["description"], "A customer placed an order.");
    assert_eq!(order_created["example"], json!({"order": 1}));
    assert_eq!(order_created["schema"]["required"], json!(["order"]));
    assert_eq!(catalogue["fixed"], true);

    // A test event, then a real one, both delivered and signed with the secret.
    let (status, test) = host.api("alice", Method::POST, &format!("/endpoints/{id}/test"), None).await;
    assert_eq!(status, 202, "{test}");
    let test_id = test["delivery_id"].as_str().unwrap();
    let delivered = host.wait_delivery("alice", test_id, |d| d["state"] == "delivered").await;
    assert_eq!(delivered["event_type"], "webhook.test");
    assert_eq!(delivered["log"][0]["status"], 200);
    assert_eq!(delivered["log"][0]["response_body"], "thanks");
    let (headers, body) = receiver.received().remove(0);
    let signature = headers["x-webhook-signature"].to_str().unwrap();
    webhooks_core::DeepSmithScheme
        .verify_header(signature, &body, &webhooks_core::Secret::from(secret.clone()))
        .unwrap();

    host.webhooks.publish_for("alice", "order.created", json!({"order": 1})).await.unwrap();
    let (status, page) = host
        .api("alice", Method::GET, &format!("/deliveries?endpoint={id}&event_type=order.created"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1, "{page}");
    let (_, first) = host.api("alice", Method::GET, "/deliveries?limit=1", None).await;
    assert_eq!(first["deliveries"][0]["id"], test_id);
    let (_, second) = host
        .api(
            "alice",
            Method::GET,
            &format!("/deliveries?limit=1&after={}", first["next"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(second["deliveries"][0]["event_type"], "order.created", "the cursor pages on: {second}");

    // Update, disable, enable, rotate.
    let (status, updated) = host
        .api(
            "alice",
            Method::PATCH,
            &format!("/endpoints/{id}"),
            Some(json!({"event_types": ["order.created", "content.status_updated"]})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["event_types"], json!(["content.status_updated", "order.created"]));
    let (status, _) = host
        .api(
            "alice",
            Method::POST,
            &format!("/endpoints/{id}/disable"),
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, shown) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!(
        (shown["enabled"].clone(), shown["disabled_reason"].clone()),
        (json!(false), json!("maintenance"))
    );
    let (status, _) = host.api("alice", Method::POST, &format!("/endpoints/{id}/enable"), None).await;
    assert_eq!(status, 204);
    let (status, rotated) = host
        .api(
            "alice",
            Method::POST,
            &format!("/endpoints/{id}/rotate-secret"),
            Some(json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], secret.as_str());

    let (status, stats) = host.api("alice", Method::GET, &format!("/endpoints/{id}/stats"), None).await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats["attempts"].as_u64().unwrap() >= 1, "{stats}");
    let hours = stats["last_day"]["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(
        hours.iter().map(|h| h["attempts"].as_u64().unwrap()).sum::<u64>(),
        stats["attempts"].as_u64().unwrap()
    );
    let (_, totals) = host.api("alice", Method::GET, "/stats", None).await;
    assert_eq!(totals["endpoints"], 1, "{totals}");

    let (status, recovered) = host
        .api(
            "alice",
            Method::POST,
            &format!("/endpoints/{id}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((status, recovered["recovered"].clone()), (200, json!(0)), "{recovered}");

    let (status, _) = host.api("alice", Method::DELETE, &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, gone) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!((status, gone["code"].clone()), (404, json!("not_found")));
}

#[tokio::test]
async fn another_owners_ids_answer_exactly_like_unknown_ids() {
    let host = Host::start().await;
    let receiver = Receiver::start().await;
    let id = create(&host, "alice", &receiver.url).await["id"].as_str().unwrap().to_owned();
    let (_, test) = host.api("alice", Method::POST, &format!("/endpoints/{id}/test"), None).await;
    let delivery = test["delivery_id"].as_str().unwrap().to_owned();
    host.wait_delivery("alice", &delivery, |d| d["state"] == "delivered").await;

    let unknown_endpoint = webhooks_core::SubscriptionId::new().to_string();
    let unknown_delivery = webhooks_core::DeliveryId::new().to_string();
    let routes = |endpoint: &str, delivery: &str| {
        vec![
            (Method::GET, format!("/endpoints/{endpoint}"), None),
            (Method::PATCH, format!("/endpoints/{endpoint}"), Some(json!({"url": "https://bob.example/"}))),
            (Method::POST, format!("/endpoints/{endpoint}/enable"), None),
            (Method::POST, format!("/endpoints/{endpoint}/disable"), None),
            (Method::POST, format!("/endpoints/{endpoint}/rotate-secret"), None),
            (Method::POST, format!("/endpoints/{endpoint}/test"), None),
            (Method::GET, format!("/endpoints/{endpoint}/stats"), None),
            (
                Method::POST,
                format!("/endpoints/{endpoint}/recover"),
                Some(json!({"since": "2020-01-01T00:00:00Z"})),
            ),
            (Method::GET, format!("/deliveries?endpoint={endpoint}"), None),
            (Method::DELETE, format!("/endpoints/{endpoint}"), None),
            (Method::GET, format!("/deliveries/{delivery}"), None),
            (Method::POST, format!("/deliveries/{delivery}/resend"), None),
        ]
    };
    for ((method, alices, body), (_, unknown, _)) in
        routes(&id, &delivery).into_iter().zip(routes(&unknown_endpoint, &unknown_delivery))
    {
        let as_bob = host.api("bob", method.clone(), &alices, body.clone()).await;
        let never = host.api("bob", method.clone(), &unknown, body).await;
        assert_eq!(as_bob.0, 404, "{method} {alices} as Bob: {}", as_bob.1);
        assert_eq!(as_bob, never, "{method} {alices}: Alice's id and an unknown one look the same to Bob");
    }
    let (status, bobs) = host.api("bob", Method::GET, "/deliveries", None).await;
    assert_eq!((status, bobs["deliveries"].clone()), (200, json!([])));
    // And nothing of Alice's changed.
    let (_, still) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!((still["enabled"].clone(), still["url"].clone()), (json!(true), json!(receiver.url)));

    // The pages answer the same 404 for Alice's delivery and an unknown one.
    let (status, page) = host.page("bob", &format!("/portal/deliveries/{delivery}")).await;
    let (_, unknown_page) = host.page("bob", &format!("/portal/deliveries/{unknown_delivery}")).await;
    assert_eq!(status, 404);
    assert_eq!(page, unknown_page);
    let (status, _) = host.page("bob", &format!("/portal/endpoints/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn errors_have_stable_codes() {
    let host = Host::start().await;
    let call = |owner: &'static str, method: Method, path: &'static str, body: Option<Value>| {
        let host = &host;
        async move { host.api(owner, method, path, body).await }
    };
    let (status, body) = call(
        "alice",
        Method::POST,
        "/endpoints",
        Some(json!({"url": "ftp://x", "event_types": ["order.created"]})),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_url")), "{body}");
    let (status, body) = call(
        "alice",
        Method::POST,
        "/endpoints",
        Some(json!({"url": "https://alice.example/", "event_types": ["order.craeted"]})),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, json!("unknown_event_type")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("order.craeted"));
    let (status, body) = call("alice", Method::POST, "/endpoints", Some(json!({"url": 5}))).await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_request")), "{body}");
    let (status, body) = call("alice", Method::GET, "/deliveries?state=lost", None).await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_request")), "{body}");
    let (status, body) = call("alice", Method::GET, "/deliveries?created_from=yesterday", None).await;
    assert_eq!((status, body["code"].clone()), (400, json!("invalid_request")), "{body}");
    let (status, body) = call("alice", Method::GET, "/endpoints/not-an-id", None).await;
    assert_eq!((status, body["code"].clone()), (404, json!("not_found")), "{body}");

    // Nobody signed in.
    let response = host.client.get(format!("{}/portal/api/endpoints", host.base)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "unauthorized");
    let response = host.client.get(format!("{}/portal", host.base)).send().await.unwrap();
    assert_eq!(response.status(), 401, "the pages too");

    // A state-changing call that a cross-site form could send is refused.
    let response = host
        .request("alice", Method::POST, "/portal/api/endpoints")
        .header("content-type", "text/plain")
        .body(json!({"url": "https://alice.example/", "event_types": ["order.created"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"], json!([]), "nothing was created");
}

#[tokio::test]
async fn forms_need_the_owners_csrf_token_and_the_secret_is_shown_once() {
    let host = Host::start().await;
    let receiver = Receiver::start().await;
    let fields = [("url", receiver.url.as_str()), ("event_type", "order.created")];

    let (status, _, body) = host.submit_with("alice", "/portal/endpoints", "", &fields).await;
    assert_eq!(status, 403, "{body}");
    let (_, bobs_index) = host.page("bob", "/portal").await;
    let (status, _, _) = host.submit_with("alice", "/portal/endpoints", &csrf_of(&bobs_index), &fields).await;
    assert_eq!(status, 403, "Bob's token does not pass for Alice");
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"], json!([]), "nothing was created without a token");

    let (status, _, created) = host.submit("alice", "/portal/endpoints", &fields).await;
    assert_eq!(status, 201, "{created}");
    let at = created.find(r#"id="secret">"#).expect("the secret on the page") + r#"id="secret">"#.len();
    let secret = &created[at..at + created[at..].find('<').unwrap()];
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(created.contains("X-Webhook-Signature"), "how to verify, for this preset");

    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    let id = listed["endpoints"][0]["id"].as_str().unwrap().to_owned();
    for page in ["/portal".to_owned(), format!("/portal/endpoints/{id}"), "/portal/deliveries".to_owned()] {
        let (status, html) = host.page("alice", &page).await;
        assert_eq!(status, 200, "{page}");
        assert!(!html.contains(secret), "{page} shows the secret again");
    }

    // A bad URL in the form is refused with the library's reason, escaped.
    let (status, _, refused) = host
        .submit(
            "alice",
            "/portal/endpoints",
            &[("url", "javascript:<b>alert(1)</b>"), ("event_type", "order.created")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(refused.contains("&lt;b&gt;") && !refused.contains("<b>"), "{refused}");

    // Rotating shows the new secret once and says how DeepSmith signs
    // during the grace: with the new secret alone.
    let (status, _, rotated) = host.submit("alice", &format!("/portal/endpoints/{id}/rotate"), &[]).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated.contains("signed with the new secret from now on"), "{rotated}");
    assert!(!rotated.contains("signed with the old secret too"), "{rotated}");

    // Disable through the form, then recover.
    let (status, location, _) = host.submit("alice", &format!("/portal/endpoints/{id}/disable"), &[]).await;
    assert_eq!((status, location.as_str()), (303, format!("/portal/endpoints/{id}?done=disabled").as_str()));
    let (_, shown) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!(shown["enabled"], false);
    let (status, _, _) =
        host.submit("alice", &format!("/portal/endpoints/{id}/recover"), &[("hours", "24")]).await;
    assert_eq!(status, 303);
    let (_, shown) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!(shown["enabled"], true);
    // Deleting asks first: the endpoint page's button leads to a page that
    // says what goes, and a post without that page's confirmation deletes
    // nothing.
    let (status, asked) = host.page("alice", &format!("/portal/endpoints/{id}/delete")).await;
    assert_eq!(status, 200);
    assert!(asked.contains("This cannot be undone") && asked.contains(&receiver.url), "{asked}");
    let (status, _, _) = host.submit("alice", &format!("/portal/endpoints/{id}/delete"), &[]).await;
    assert_eq!(status, 400, "not confirmed");
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1, "still there");
    let (status, _, _) =
        host.submit("alice", &format!("/portal/endpoints/{id}/delete"), &[("confirm", "yes")]).await;
    assert_eq!(status, 303);
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"], json!([]));
}

#[tokio::test]
async fn a_forms_token_passes_only_in_the_session_it_was_rendered_in() {
    let host = Host::start().await;
    let receiver = Receiver::start().await;
    let fields = [("url", receiver.url.as_str()), ("event_type", "order.created")];

    // Alice's own token, from a page of her other session.
    let (_, other_index) = host.page_in("alice", Some("session-2"), "/portal").await;
    let other_token = csrf_of(&other_index);
    let (status, _, body) = host.submit_with("alice", "/portal/endpoints", &other_token, &fields).await;
    assert_eq!(status, 403, "a token from another session: {body}");
    assert!(body.contains("expired or did not come from this site"), "{body}");
    let (_, index) = host.page("alice", "/portal").await;
    let (status, _, _) = host.submit_in("alice", None, "/portal/endpoints", &csrf_of(&index), &fields).await;
    assert_eq!(status, 403, "a form posted from no session");
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"], json!([]), "nothing was created");

    // In the session it was rendered in, it passes.
    let (status, _, created) =
        host.submit_in("alice", Some("session-2"), "/portal/endpoints", &other_token, &fields).await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test]
async fn a_forms_token_expires() {
    let clock = webhooks_core::ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    let host = Host::start_with_clock(clock.clone()).await;
    let receiver = Receiver::start().await;
    let fields = [("url", receiver.url.as_str()), ("event_type", "order.created")];
    let (_, index) = host.page("alice", "/portal").await;
    let token = csrf_of(&index);

    clock.advance(webhooks_axum::DEFAULT_CSRF_LIFETIME - std::time::Duration::from_secs(1));
    let (status, _, created) = host.submit_with("alice", "/portal/endpoints", &token, &fields).await;
    assert_eq!(status, 201, "in its last second: {created}");

    clock.advance(std::time::Duration::from_secs(1));
    let (status, _, body) = host.submit_with("alice", "/portal/endpoints", &token, &fields).await;
    assert_eq!(status, 403, "expired: {body}");
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1, "only the first was created: {listed}");

    // A page rendered now carries a fresh token.
    let (status, _, created) = host.submit("alice", "/portal/endpoints", &fields).await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test]
async fn owners_pick_an_offered_retry_policy_and_a_disable_threshold() {
    let host = Host::start().await;
    let created = create(&host, "alice", "https://alice.example/hooks").await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["retry"], json!({"named": "DeepSmith"}), "{created}");
    assert_eq!(created["disable"], json!(null), "the preset's rule");
    assert_eq!(created["held_limit"], 10_000);

    let path = format!("/endpoints/{id}");
    let change = json!({"retry_policy": "premium", "disable_after_failures": 3});
    let (status, changed) = host.api("alice", Method::PATCH, &path, Some(change)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["retry"], json!({"named": "premium"}));
    assert_eq!(changed["disable"], json!({"after_consecutive_failures": 3, "on_gone": true}));
    let subscription = host.webhooks.subscription(id.parse().unwrap()).await.unwrap();
    assert_eq!(subscription.settings.retry, Some(webhooks_core::RetryChoice::named("premium")));

    for refused in [json!({"retry_policy": "Standard Webhooks"}), json!({"disable_after_failures": 0})] {
        let (status, error) = host.api("alice", Method::PATCH, &path, Some(refused.clone())).await;
        assert_eq!(status, 400, "{refused}: {error}");
    }
    let (_, shown) = host.api("alice", Method::GET, &path, None).await;
    assert_eq!(shown["retry"], json!({"named": "premium"}), "a refused change changes nothing");

    // The endpoint's page says the same.
    let (status, page) = host.page("alice", &format!("/portal/endpoints/{id}")).await;
    assert_eq!(status, 200);
    for said in
        ["the premium schedule", "3 failed attempts in a row; at once on 410 Gone", "up to 10000 deliveries"]
    {
        assert!(page.contains(said), "{said}: {page}");
    }

    // The held cap, up to the host's limit.
    let (status, changed) = host.api("alice", Method::PATCH, &path, Some(json!({"held_limit": 500}))).await;
    assert_eq!((status, &changed["held_limit"]), (200, &json!(500)), "{changed}");
    let (status, error) = host.api("alice", Method::PATCH, &path, Some(json!({"held_limit": 10_001}))).await;
    assert_eq!(status, 400, "{error}");
    assert!(error.to_string().contains("held_limit: must be at most 10000"), "{error}");
}

#[tokio::test]
async fn the_endpoint_page_changes_the_delivery_policy_and_lists_operational_events() {
    let host = Host::start().await;
    let created = create(&host, "alice", "https://alice.example/hooks").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let page_path = format!("/portal/endpoints/{id}");
    let policy = format!("/portal/endpoints/{id}/policy");
    let settings = || async { host.webhooks.subscription(id.parse().unwrap()).await.unwrap().settings };

    let (_, page) = host.page("alice", &page_path).await;
    for shown in [
        r#"<option value="DeepSmith" selected>"#,
        r#"name="disable_after_failures" min="1" value="10""#,
        r#"value="10000""#,
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    // Saved as shown, nothing changes: the endpoint still follows the preset's rule.
    let unchanged =
        [("retry_policy", "DeepSmith"), ("disable_after_failures", "10"), ("held_limit", "10000")];
    let (status, location, _) = host.submit("alice", &policy, &unchanged).await;
    assert_eq!((status, location), (303, format!("{page_path}?done=policy")));
    assert_eq!((settings().await.disable, settings().await.held_limit), (None, None));

    let changed = [("retry_policy", "premium"), ("disable_after_failures", "4"), ("held_limit", "250")];
    let (status, _, _) = host.submit("alice", &policy, &changed).await;
    assert_eq!(status, 303);
    let (_, shown) = host.api("alice", Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!(shown["retry"], json!({"named": "premium"}));
    assert_eq!(shown["disable"], json!({"after_consecutive_failures": 4, "on_gone": true}));
    assert_eq!(shown["held_limit"], 250);
    let (_, page) = host.page("alice", &format!("{page_path}?done=policy")).await;
    for said in [
        "The delivery policy is saved",
        "the premium schedule",
        "4 failed attempts in a row",
        "up to 250 deliveries",
    ] {
        assert!(page.contains(said), "{said}: {page}");
    }

    for (field, value) in
        [("held_limit", "many"), ("held_limit", "10001"), ("retry_policy", "Standard Webhooks")]
    {
        let (status, _, refused) = host.submit("alice", &policy, &[(field, value)]).await;
        assert_eq!(status, 400, "{field}={value}: {refused}");
        assert!(refused.contains(field), "{refused}");
    }
    assert_eq!(settings().await.held_limit, Some(250), "a refused form changes nothing");
    let (status, _, _) = host.submit("bob", &policy, &changed).await;
    assert_eq!(status, 404, "another owner's endpoint");

    // Operational events: nothing yet, then the disabling with its reason.
    let events = format!("/endpoints/{id}/operational-events");
    let (status, listed) = host.api("alice", Method::GET, &events, None).await;
    assert_eq!((status, &listed["events"]), (200, &json!([])));
    let (_, page) = host.page("alice", &page_path).await;
    assert!(page.contains("Nothing to report"), "{page}");
    let too_long = json!({"reason": "r".repeat(webhooks_core::MAX_REASON_BYTES + 1)});
    let (status, error) =
        host.api("alice", Method::POST, &format!("/endpoints/{id}/disable"), Some(too_long)).await;
    assert_eq!((status, &error["code"]), (400, &json!("invalid")), "{error}");
    let reason = json!({"reason": "paused for the <audit>"});
    let (status, _) =
        host.api("alice", Method::POST, &format!("/endpoints/{id}/disable"), Some(reason)).await;
    assert_eq!(status, 204);
    let (_, listed) = host.api("alice", Method::GET, &events, None).await;
    assert_eq!(listed["events"][0]["type"], "endpoint.disabled", "{listed}");
    assert_eq!(listed["events"][0]["reason"], "paused for the <audit>");
    assert_eq!(listed["events"][0]["subscription_id"], id.as_str());
    let (_, page) = host.page("alice", &page_path).await;
    assert!(page.contains("paused for the &lt;audit&gt;"), "{page}");
    let (status, error) = host.api("alice", Method::GET, &format!("{events}?since=yesterday"), None).await;
    assert_eq!(status, 400, "{error}");
    let (status, _) = host.api("bob", Method::GET, &events, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_portal_answers_at_its_mount_path_with_and_without_the_trailing_slash() {
    let host = Host::start().await;
    create(&host, "alice", "https://alice.example/hooks").await;
    let (status, page) = host.page("alice", "/portal").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("https://alice.example/hooks"), "{page}");
    let answer = host.request("alice", reqwest::Method::GET, "/portal/").send().await.unwrap();
    assert_eq!(answer.status(), 308, "the trailing slash is sent to the mount path");
    assert_eq!(answer.headers()["location"], "/portal");
}

#[tokio::test]
async fn the_catalogue_page_shows_what_each_event_type_carries() {
    let host = Host::start().await;
    let (status, page) = host.page("alice", "/portal/event-types").await;
    assert_eq!(status, 200);
    for shown in ["order.created", "A customer placed an order.", "&quot;order&quot;: 1", "iq.status_updated"]
    {
        assert!(page.contains(shown), "{shown} missing from {page}");
    }
    let (_, index) = host.page("alice", "/portal").await;
    assert!(index.contains("A customer placed an order."), "the picker describes each type: {index}");

    let refused = host.webhooks.publish_for("alice", "order.created", json!({"id": 1})).await.unwrap_err();
    assert!(
        matches!(refused, webhooks_core::Error::DataDoesNotMatchSchema { ref path, .. } if path == "/"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_endpoint_listens_on_the_channels_its_owner_names() {
    let host = Host::start().await;
    let (status, created) = host
        .api(
            "alice",
            Method::POST,
            "/endpoints",
            Some(json!({"url": "https://alice.example/eu", "event_types": ["order.created"], "channels": ["store-eu"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["channels"], json!(["store-eu"]));
    let id = created["id"].as_str().unwrap().to_owned();
    let publish = |channel: &'static str| {
        let publish = webhooks_core::Publish::new("order.created", json!({"order": 1})).owner("alice");
        host.webhooks.publish_event(publish.channel(channel))
    };
    assert_eq!(publish("store-us").await.unwrap().deliveries.len(), 0);
    assert_eq!(publish("store-eu").await.unwrap().deliveries.len(), 1);

    let (status, changed) =
        host.api("alice", Method::PATCH, &format!("/endpoints/{id}"), Some(json!({"channels": []}))).await;
    assert_eq!((status, &changed["channels"]), (200, &json!([])), "{changed}");
    assert_eq!(publish("store-us").await.unwrap().deliveries.len(), 1, "no channel: every channel");
    let (status, refused) = host
        .api("alice", Method::PATCH, &format!("/endpoints/{id}"), Some(json!({"channels": ["no spaces"]})))
        .await;
    assert_eq!((status, &refused["code"]), (400, &json!("invalid")), "{refused}");

    // The form: a channels field on the add form, shown on the endpoint page.
    let fields = [
        ("url", "https://alice.example/forms"),
        ("event_type", "order.created"),
        ("channels", "store-eu, store-jp"),
    ];
    let (status, _, _) = host.submit("alice", "/portal/endpoints", &fields).await;
    assert_eq!(status, 201);
    let formed = host.webhooks.subscriptions(&"alice".parse().unwrap()).await.unwrap();
    let formed = formed.iter().find(|s| s.url.as_str() == "https://alice.example/forms").unwrap();
    assert_eq!(formed.channels.iter().collect::<Vec<_>>(), ["store-eu", "store-jp"]);
    let (_, page) = host.page("alice", &format!("/portal/endpoints/{}", formed.id)).await;
    assert!(page.contains("store-jp") && page.contains("name=\"channels\""), "{page}");
}
