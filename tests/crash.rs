//! `kill -9` in the middle of a run loses no accepted event: the `send`
//! example on a SQLite file is killed while it delivers, then run again on
//! the same file with nothing on stdin, and every event reaches the receiver.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::{Instant, timeout_at};
use webhooks_examples::{Receiver, Reply};

const EVENTS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_delivery_resumes_and_every_event_arrives() {
    // The killed run's claims come back when their leases end (the 1 s
    // request timeout + 15 s), so the whole test takes about 17 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(40))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("q.db").display());
    let args = [
        "--store",
        &store,
        "--preset",
        "deepsmith",
        "--url",
        receiver.url(),
        "--secret",
        "k-signing-secret",
        "--allow-private",
        "--retry-scale",
        "0",
        "--timeout-ms",
        "1000",
        "--concurrency",
        "4",
    ];

    // First run: killed once every event is accepted and some, not all,
    // have arrived. Its stdout is not read, so it must not fill a pipe.
    let mut first = common::spawn_send(&args, &[], Stdio::null());
    let events: String = (0..EVENTS)
        .map(|n| format!("{{\"event\":\"content.status_updated\",\"data\":{{\"n\":{n}}}}}\n"))
        .collect();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(events.as_bytes()).await.unwrap();
    drop(stdin);
    let mut stderr = BufReader::new(first.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let accepted = timeout_at(deadline, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line == format!("accepted {EVENTS} events") {
                return true;
            }
            said.push(line);
        }
        false
    })
    .await;
    assert_eq!(accepted, Ok(true), "the first run accepts every event; it said: {said:?}");
    let arrived = receiver.wait_for(20, deadline - Instant::now()).await.len();
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let at_kill = receiver.received().len();
    println!("killed the first run after {arrived} requests ({at_kill} once it was dead)");
    assert!(arrived >= 20, "the first run delivered before the kill");
    assert!(at_kill < EVENTS as usize, "the kill came before the end: {at_kill} requests");

    // Second run on the same file, nothing on stdin: it resumes.
    let mut second = common::spawn_send(&args, &[], Stdio::piped());
    drop(second.stdin.take());
    let output = timeout_at(deadline, second.wait_with_output())
        .await
        .expect("the second run finishes within 60 s of the test's start")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.contains("accepted 0 events"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"summary": {"delivered": EVENTS, "dropped": 0, "pending": 0, "endpoint_disabled": false}})
    );

    // Every event arrived, every request under its delivery's stable id.
    let received = receiver.received();
    let mut event_of_delivery = HashMap::new();
    let mut events_seen = BTreeSet::new();
    for request in &received {
        let id = request.header("x-webhook-id");
        assert!(!id.is_empty(), "every request carries its delivery id");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let n = body["data"]["n"].as_u64().unwrap();
        if let Some(before) = event_of_delivery.insert(id.to_owned(), n) {
            assert_eq!(before, n, "a delivery id always carries the same event");
        }
        events_seen.insert(n);
    }
    assert_eq!(events_seen, (0..EVENTS).collect(), "every event reached the receiver");
    assert_eq!(event_of_delivery.len(), EVENTS as usize, "one delivery per event");
    let duplicates = received.len() - event_of_delivery.len();
    println!(
        "{} requests for {EVENTS} events: {duplicates} duplicates, detectable by x-webhook-id",
        received.len()
    );
}
