//! The portal in a real browser: headless Chromium renders its pages (and
//! runs whatever script they would let run) in a real host app with a real
//! receiver. Forms are submitted over HTTP with the token the browser's page
//! carries. Without a Chromium binary (Debian's `chromium`, or CHROMIUM
//! naming one) these tests are reported as ignored, never as passed.
//!
//! With WEBHOOKS_PORTAL_SCREENSHOTS set to a directory, the screenshots of
//! the main pages are saved there (the README's are made this way).

#[path = "portal/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use common::{Host, Receiver, csrf_of};

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()).unwrap_or("/usr/bin/chromium".into()).into()
}

/// Runs headless Chromium with a fresh profile on `url` with `action`
/// (`--dump-dom`, `--screenshot=..`); returns its stdout.
async fn chromium_run(url: &str, action: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-extensions", "--hide-scrollbars"])
        // Time for scripts, if a page let any run, before the DOM is read.
        .arg("--virtual-time-budget=2000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output()).await.unwrap().unwrap();
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The host's login for `owner`, then `path`: the URL a browser opens.
fn signed_in(host: &Host, owner: &str, path: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("as", owner)
        .append_pair("next", path)
        .finish();
    format!("{}/login?{query}", host.base)
}

/// The DOM of `path` as `owner` sees it in the browser, after any script ran.
async fn browse(host: &Host, owner: &str, path: &str) -> String {
    chromium_run(&signed_in(host, owner, path), &["--dump-dom"]).await
}

async fn screenshot(url: &str, name: &str, height: u32, dir: &Path) {
    let file = dir.join(name);
    let size = format!("--window-size=1280,{height}");
    chromium_run(url, &[&size, &format!("--screenshot={}", file.display())]).await;
    let png = std::fs::read(&file).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{name} is a real picture");
    if let Some(keep) = std::env::var_os("WEBHOOKS_PORTAL_SCREENSHOTS") {
        std::fs::copy(&file, Path::new(&keep).join(name)).unwrap();
    }
}

/// Whether script ran and marked the page's body.
fn pwned(dom: &str) -> bool {
    let body = &dom[dom.find("<body").expect("a body")..];
    body[..body.find('>').unwrap()].contains("data-pwned")
}

/// Attempt rows on a delivery page.
fn attempt_rows(dom: &str) -> usize {
    dom.matches(" ms</td>").count()
}

const HOSTILE: &str = r#"<script>document.body.setAttribute('data-pwned','script')</script><img src="x" onerror="document.body.setAttribute('data-pwned','img')">"#;

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(not(chromium), ignore = "no Chromium: install Debian's chromium or set CHROMIUM")]
async fn a_customer_manages_endpoints_and_reads_the_log_in_a_browser() {
    let host = Host::start().await;
    let receiver = Receiver::start().await;
    let shots = tempfile::tempdir().unwrap();

    // An empty portal, with the form to add an endpoint and its event types.
    let dom = browse(&host, "alice", "/portal").await;
    assert!(dom.contains("No endpoints yet"), "{dom}");
    assert!(dom.contains("Signed in as <strong>alice</strong>"), "{dom}");
    assert!(dom.contains(r#"value="order.created""#), "the catalogue's event types to pick: {dom}");

    // Add one with the token of the browser's page: the secret is shown once.
    let fields = [("url", receiver.url.as_str()), ("event_type", "order.created")];
    let (status, _, created) = host.submit_with("alice", "/portal/endpoints", &csrf_of(&dom), &fields).await;
    assert_eq!(status, 201, "{created}");
    let at = created.find(r#"id="secret">"#).unwrap() + r#"id="secret">"#.len();
    let secret = created[at..at + created[at..].find('<').unwrap()].to_owned();
    let created_file = shots.path().join("created.html");
    std::fs::write(&created_file, &created).unwrap();
    let (_, listed) = host.api("alice", Method::GET, "/endpoints", None).await;
    let endpoint = listed["endpoints"][0]["id"].as_str().unwrap().to_owned();
    let dom = browse(&host, "alice", "/portal").await;
    assert!(dom.contains(&receiver.url), "the endpoint is listed: {dom}");
    assert!(!dom.contains(&secret), "the secret is not shown again");

    // Publish: the delivery appears with its attempt and the receiver's answer.
    let published = host.webhooks.publish_for("alice", "order.created", json!({"order": 42})).await.unwrap();
    let first = published.deliveries[0].to_string();
    host.wait_delivery("alice", &first, |d| d["state"] == "delivered").await;
    let (headers, body) = receiver.received().remove(0);
    webhooks_core::DeepSmithScheme
        .verify_header(
            headers["x-webhook-signature"].to_str().unwrap(),
            &body,
            &webhooks_core::Secret::from(secret),
        )
        .unwrap();
    let dom = browse(&host, "alice", &format!("/portal/deliveries/{first}")).await;
    assert_eq!(attempt_rows(&dom), 1, "{dom}");
    assert!(dom.contains(">200<") && dom.contains("thanks") && dom.contains("delivered"), "{dom}");
    assert!(dom.contains("&quot;order&quot;: 42") || dom.contains("\"order\": 42"), "the payload: {dom}");

    // The receiver fails, answering with markup and script: shown as text,
    // never run. The control page proves this browser runs such script
    // where a page lets it.
    receiver.answer(500, HOSTILE);
    let published = host.webhooks.publish_for("alice", "order.created", json!({"order": 43})).await.unwrap();
    let failed = published.deliveries[0].to_string();
    host.wait_delivery("alice", &failed, |d| d["state"] == "dropped").await;
    let control = chromium_run(
        &format!(
            "{}/unsafe?{}",
            host.base,
            form_urlencoded::Serializer::new(String::new()).append_pair("text", HOSTILE).finish()
        ),
        &["--dump-dom"],
    )
    .await;
    assert!(pwned(&control), "the control page runs the receiver's script: {control}");
    let dom = browse(&host, "alice", &format!("/portal/deliveries/{failed}")).await;
    assert_eq!(attempt_rows(&dom), 2, "the attempt and its retry: {dom}");
    assert!(!pwned(&dom), "no script ran: {dom}");
    assert!(!dom.contains("<script") && !dom.contains("<img"), "no element from the receiver: {dom}");
    assert!(dom.contains("&lt;script&gt;document.body.setAttribute"), "its answer shown as text: {dom}");
    assert!(dom.contains(">500<") && dom.contains("dropped"), "{dom}");
    screenshot(
        &signed_in(&host, "alice", &format!("/portal/deliveries/{failed}")),
        "portal-delivery.png",
        1100,
        shots.path(),
    )
    .await;

    // Resend with the delivery page's form once the receiver is back.
    receiver.answer(200, "ok");
    let (status, location, _) =
        host.submit_with("alice", &format!("/portal/deliveries/{failed}/resend"), &csrf_of(&dom), &[]).await;
    assert_eq!((status, location), (303, format!("/portal/deliveries/{failed}?done=resent")));
    host.wait_delivery("alice", &failed, |d| d["state"] == "delivered").await;
    let dom = browse(&host, "alice", &format!("/portal/deliveries/{failed}?done=resent")).await;
    assert_eq!(attempt_rows(&dom), 3, "{dom}");
    assert!(dom.contains("queued to be sent again"), "{dom}");

    // An outage: two deliveries dropped, the endpoint disabled, one of them
    // resent and held; then recover from the endpoint page.
    receiver.answer(503, "down for maintenance");
    let mut outage = Vec::new();
    for order in [44, 45] {
        let published =
            host.webhooks.publish_for("alice", "order.created", json!({"order": order})).await.unwrap();
        outage.push(published.deliveries[0].to_string());
    }
    for id in &outage {
        host.wait_delivery("alice", id, |d| d["state"] == "dropped").await;
    }
    let page = browse(&host, "alice", &format!("/portal/endpoints/{endpoint}")).await;
    let (status, _, _) = host
        .submit_with("alice", &format!("/portal/endpoints/{endpoint}/disable"), &csrf_of(&page), &[])
        .await;
    assert_eq!(status, 303);
    let (status, _, _) = host
        .submit_with("alice", &format!("/portal/deliveries/{}/resend", outage[0]), &csrf_of(&page), &[])
        .await;
    assert_eq!(status, 303);
    let dom = browse(&host, "alice", &format!("/portal/deliveries?endpoint={endpoint}")).await;
    assert!(dom.contains(">held<") && dom.contains(">dropped<"), "{dom}");
    let page = browse(&host, "alice", &format!("/portal/endpoints/{endpoint}")).await;
    assert!(page.contains("disabled by its owner"), "the disabled reason: {page}");
    screenshot(&signed_in(&host, "alice", "/portal/deliveries"), "portal-log.png", 760, shots.path()).await;
    receiver.answer(200, "ok");
    let (status, _, _) = host
        .submit_with(
            "alice",
            &format!("/portal/endpoints/{endpoint}/recover"),
            &csrf_of(&page),
            &[("hours", "24")],
        )
        .await;
    assert_eq!(status, 303);
    for id in &outage {
        host.wait_delivery("alice", id, |d| d["state"] == "delivered").await;
    }
    let page = browse(&host, "alice", &format!("/portal/endpoints/{endpoint}?done=recovered")).await;
    assert!(page.contains(">enabled<") && page.contains("failed deliveries are queued again"), "{page}");
    screenshot(
        &signed_in(&host, "alice", &format!("/portal/endpoints/{endpoint}")),
        "portal-endpoint.png",
        1250,
        shots.path(),
    )
    .await;
    screenshot(&signed_in(&host, "alice", "/portal"), "portal-endpoints.png", 820, shots.path()).await;
    let catalogue = browse(&host, "alice", "/portal/event-types").await;
    assert!(
        catalogue.contains("A customer placed an order.") && catalogue.contains("\"order\": 1"),
        "{catalogue}"
    );
    screenshot(
        &signed_in(&host, "alice", "/portal/event-types"),
        "portal-event-types.png",
        900,
        shots.path(),
    )
    .await;
    screenshot(&format!("file://{}", created_file.display()), "portal-secret.png", 620, shots.path()).await;

    // Bob, signed in, cannot read Alice's delivery: it is as unknown as an
    // id that never existed.
    let bobs = browse(&host, "bob", &format!("/portal/deliveries/{first}")).await;
    let unknown =
        browse(&host, "bob", &format!("/portal/deliveries/{}", webhooks_core::DeliveryId::new())).await;
    assert!(
        bobs.contains("no such delivery") && !bobs.contains("order.created") && !bobs.contains(&first),
        "{bobs}"
    );
    assert_eq!(bobs, unknown);
    let (status, _): (u16, Value) = host.api("bob", Method::GET, &format!("/deliveries/{first}"), None).await;
    assert_eq!(status, 404);
}
