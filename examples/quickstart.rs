//! The main job in one run: a local receiver, a subscription, a few events,
//! verified deliveries and a retry, on the in-memory store.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks_core::{Preset, SmartlyQScheme, Subscription, UrlRule, Verdict, Webhooks};
use webhooks_examples::{Receiver, Reply};
use webhooks_memory::MemoryStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The other end: a real HTTP server on 127.0.0.1.
    let receiver = Receiver::start().await?;
    println!("receiver listening on {}", receiver.url());

    // SmartlyQ, its retry waits scaled from minutes down to milliseconds, and
    // plain http allowed for the local receiver.
    let preset = Preset::smartlyq().with_url_rule(UrlRule::allow_http()).with_retry_scale(0.001)?;
    let webhooks = Webhooks::builder().store(MemoryStore::new()).preset(preset).build()?;

    let subscription = webhooks
        .subscribe(Subscription::builder(receiver.url()).event_types(["job.completed", "wallet.low"]))
        .await?;
    println!("subscribed {} (secret shown once: {})", subscription.id, subscription.secret.expose());

    // The receiver verifies every request as a customer's server would, and
    // turns the first one away so the retry shows.
    let secret = subscription.secret.clone();
    let verified = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&verified);
    receiver.rescript(move |n, request| {
        let header = request.header(SmartlyQScheme::SIGNATURE);
        let verdict =
            match SmartlyQScheme::default().verify_header(header, &request.body, &secret, chrono::Utc::now())
            {
                Ok(()) => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    "signature verified"
                }
                Err(_) => "signature INVALID",
            };
        let status = if n == 0 { 503 } else { 204 };
        println!(
            "  receiver: {} delivery {} ({verdict}), answering {status}",
            request.header(SmartlyQScheme::EVENT),
            request.header(SmartlyQScheme::DELIVERY),
        );
        Reply::status(status)
    });

    let settled = Arc::new((AtomicUsize::new(0), Notify::new()));
    let dispatcher = webhooks
        .dispatcher()
        // The receiver is on 127.0.0.1, which is refused by default.
        .allow_private_networks(true)
        .on_outcome({
            let settled = Arc::clone(&settled);
            move |outcome| {
                println!(
                    "  attempt {} of {}: {} -> {}",
                    outcome.attempt.number,
                    outcome.delivery_id,
                    outcome.attempt.status().map_or("no response".to_owned(), |s| s.to_string()),
                    outcome.verdict.as_str()
                );
                if !matches!(outcome.verdict, Verdict::Retry { .. }) {
                    settled.0.fetch_add(1, Ordering::SeqCst);
                    settled.1.notify_one();
                }
            }
        })
        .build()?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));

    let events = [
        ("job.completed", json!({"job_id": "job_abc123", "status": "completed", "result": {"words": 1200}})),
        ("wallet.low", json!({"balance": "4.99", "currency": "USD"})),
    ];
    for (name, data) in events {
        let published = webhooks.publish(name, data).await?;
        println!("published {name}: {} delivery", published.deliveries.len());
    }

    while settled.0.load(Ordering::SeqCst) < 2 {
        tokio::time::timeout(Duration::from_secs(10), settled.1.notified()).await?;
    }
    shutdown.cancel();
    running.await?;
    println!(
        "done: {} requests received, {} with a valid signature",
        receiver.received().len(),
        verified.load(Ordering::SeqCst)
    );
    Ok(())
}
