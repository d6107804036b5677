//! The `send` example, driven as a user drives it: arguments, stdin, stdout
//! lines and exit status.

mod common;

use std::collections::HashSet;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use webhooks_core::{DeepSmithScheme, Secret, SignatureScheme, SmartlyQScheme, prelude::*};
use webhooks_examples::{Received, Receiver, Reply};
use webhooks_postgres_tests::TestDatabase;
use webhooks_sqlite::SqliteStore;

async fn send(args: &[&str], stdin: &str) -> Output {
    send_with_env(args, &[], stdin).await
}

/// The arguments of a DeepSmith run to `url`, secret `k-signing-secret`, private addresses
/// allowed and no wait between retries, then `extra` arguments.
fn deepsmith_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let common = [
        "--preset",
        "deepsmith",
        "--url",
        url,
        "--secret",
        "k-signing-secret",
        "--allow-private",
        "--retry-scale",
        "0",
    ];
    [&common[..], extra].concat()
}

/// `send` with [`deepsmith_args`].
async fn send_deepsmith(url: &str, extra: &[&str], stdin: &str) -> Output {
    send(&deepsmith_args(url, extra), stdin).await
}

/// The arguments of a Standard Webhooks run to `url` over allowed `http://`, signed with `secret`.
fn standard_args<'a>(url: &'a str, secret: &'a Secret) -> [&'a str; 8] {
    ["--preset", "standard", "--url", url, "--secret", secret.expose(), "--allow-http", "--allow-private"]
}

/// Checks that `request` carries a DeepSmith signature made with `secret`.
fn assert_deepsmith_signed(request: &Received, secret: &str) {
    DeepSmithScheme
        .verify_header(request.header("x-webhook-signature"), &request.body, &Secret::from(secret))
        .unwrap();
}

/// `send` with environment variables set.
async fn send_with_env(args: &[&str], env: &[(&str, String)], stdin: &str) -> Output {
    let mut child = common::spawn_send(args, env, Stdio::piped());
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("send finishes")
        .unwrap()
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect(l)).collect()
}

#[tokio::test]
async fn deepsmith_retries_then_delivers_and_reports_every_attempt() {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 200 })).await.unwrap();
    let stdin = "{\"event\":\"content.status_updated\",\"data\":{\"id\":1}}\n";
    let output = send_deepsmith(receiver.url(), &[], stdin).await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));

    let lines = lines(&output);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap();
    let positions: Vec<usize> =
        ["delivery_id", "event", "attempt", "status", "error", "outcome", "duration_ms"]
            .iter()
            .map(|key| first.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {first}")))
            .collect();
    assert!(positions.is_sorted(), "fields in the contract's order: {first}");
    assert_eq!(lines[0]["event"], "content.status_updated");
    assert_eq!(
        (&lines[0]["attempt"], &lines[0]["status"], &lines[0]["outcome"]),
        (&1.into(), &500.into(), &"retrying".into())
    );
    assert_eq!(lines[0]["error"], Value::Null);
    assert_eq!(
        (&lines[1]["attempt"], &lines[1]["status"], &lines[1]["outcome"]),
        (&2.into(), &200.into(), &"delivered".into())
    );
    assert_eq!(lines[0]["delivery_id"], lines[1]["delivery_id"]);
    assert_eq!(
        lines[2],
        serde_json::json!({"summary": {"delivered": 1, "dropped": 0, "pending": 0, "endpoint_disabled": false}})
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().last().unwrap(),
        r#"{"summary":{"delivered":1,"dropped":0,"pending":0,"endpoint_disabled":false}}"#
    );

    let request = receiver.received().remove(1);
    assert_eq!(request.header("x-webhook-id"), lines[1]["delivery_id"].as_str().unwrap());
    assert_deepsmith_signed(&request, "k-signing-secret");
}

#[tokio::test]
async fn smartlyq_over_allowed_http_signs_with_the_given_secret_and_drops_after_six() {
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let stdin = "{\"event\":\"job.completed\",\"data\":{\"job_id\":\"j1\"}}\n";
    let output = send(
        &[
            "--preset",
            "smartlyq",
            "--url",
            receiver.url(),
            "--secret",
            "whsec_test-signing-secret",
            "--allow-http",
            "--allow-private",
            "--retry-scale",
            "0.0001",
        ],
        stdin,
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let lines = lines(&output);
    let outcomes: Vec<&str> = lines[..6].iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retrying", "retrying", "retrying", "retrying", "retrying", "dropped"]);
    assert_eq!(lines[6]["summary"]["dropped"], 1);

    let request = receiver.received().remove(0);
    assert_eq!(request.header("x-smartlyq-event"), "job.completed");
    let now = chrono::Utc::now();
    SmartlyQScheme::default()
        .verify_header(
            request.header("x-smartlyq-signature"),
            &request.body,
            &Secret::from("whsec_test-signing-secret"),
            now,
        )
        .unwrap();
}

#[tokio::test]
async fn a_refused_connection_reports_a_null_status_and_the_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", closed.local_addr().unwrap());
    drop(closed);
    let output = send_deepsmith(&url, &[], "{\"event\":\"iq.status_updated\",\"data\":{}}\n").await;
    let lines = lines(&output);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["status"], Value::Null);
    assert!(lines[0]["error"].as_str().unwrap().contains("connection"), "{}", lines[0]);
    assert_eq!(lines[3]["outcome"], "dropped");
}

#[tokio::test]
async fn smartlyq_refuses_http_with_exit_status_2_and_says_why() {
    let output = send(
        &["--preset", "smartlyq", "--url", "http://127.0.0.1:9/hooks", "--secret", "k-signing-secret"],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("https"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn bad_arguments_exit_with_status_2() {
    let valid = ["--preset", "deepsmith", "--url", "https://example.com", "--secret", "k-signing-secret"];
    let (preset, url, secret) = (&valid[..2], &valid[2..4], &valid[4..]);
    let mut refused = vec![
        [url, secret].concat(),
        [&["--preset", "nope"], url, secret].concat(),
        [preset, secret].concat(),
        [preset, url].concat(),
    ];
    for extra in [
        &["--concurrency", "0"][..],
        &["--threads", "0"],
        &["--threads", "two"],
        &["--retry-scale", "-1"],
        &["--events", "job.completed"],
        &["--bogus"],
        &["--store", "sqlite:"],
        &["--store", "postgres"],
    ] {
        refused.push([&valid[..], extra].concat());
    }
    for args in &refused {
        let output = send(args, "").await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} says why");
    }
}

#[tokio::test]
async fn malformed_lines_are_reported_and_skipped_and_the_rest_delivered() {
    let receiver = Receiver::start().await.unwrap();
    let stdin = concat!(
        "{\"event\":\"iq.status_updated\",\"data\":{\"n\":1}}\n",
        "not json\n",
        "{\"event\":\"job.completed\",\"data\":{}}\n",
        "\n",
        "{\"event\":\"topic.status_updated\",\"data\":{\"n\":2}}\n",
    );
    let output = send_deepsmith(receiver.url(), &[], stdin).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: "), "{stderr}");
    assert!(stderr.contains("line 3: ") && stderr.contains("job.completed"), "{stderr}");
    let lines = lines(&output);
    assert_eq!(lines.last().unwrap()["summary"]["delivered"], 2);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn only_the_chosen_event_types_are_sent() {
    let receiver = Receiver::start().await.unwrap();
    let stdin =
        "{\"event\":\"iq.status_updated\",\"data\":{}}\n{\"event\":\"topic.status_updated\",\"data\":{}}\n";
    let output = send_deepsmith(receiver.url(), &["--events", "topic.status_updated"], stdin).await;
    assert_eq!(output.status.code(), Some(0));
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("x-webhook-event"), "topic.status_updated");
}

#[tokio::test]
async fn a_disabled_endpoint_ends_the_run_with_its_deliveries_held() {
    let attempts = ten_failures_disable_the_endpoint(&["--concurrency", "1"]).await;
    assert_eq!(attempts, 10, "one worker: nothing in flight beside the tenth");
}

/// At the default workers, spread over threads, a failing endpoint is
/// still tried one request at a time: its tenth failure disables it with
/// nothing else in flight.
#[tokio::test]
async fn on_several_threads_the_tenth_failure_still_disables_the_endpoint() {
    let attempts = ten_failures_disable_the_endpoint(&["--threads", "3"]).await;
    assert_eq!(attempts, 10, "a failing endpoint's share stays one");
}

/// Three events to an endpoint answering 500, sent with `args`: the tenth
/// attempt disables it, and what is not dropped is held. Returns how many
/// attempts were made.
async fn ten_failures_disable_the_endpoint(args: &[&str]) -> usize {
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let stdin = "{\"event\":\"iq.status_updated\",\"data\":{}}\n".repeat(3);
    let output = send_deepsmith(receiver.url(), args, &stdin).await;
    assert_eq!(output.status.code(), Some(3));
    let mut lines = lines(&output);
    let summary = lines.pop().unwrap()["summary"].clone();
    assert_eq!((&summary["delivered"], &summary["endpoint_disabled"]), (&0.into(), &true.into()));
    let dropped = lines.iter().filter(|l| l["outcome"] == "dropped").count() as u64;
    assert_eq!(summary["dropped"].as_u64(), Some(dropped));
    assert_eq!(summary["pending"].as_u64(), Some(3 - dropped), "the rest is held, not lost");
    assert!(lines.len() >= 10, "{lines:?}");
    assert!(dropped as usize <= lines.len() / 4, "a delivery is dropped at its fourth attempt");
    // The tenth failure disabled the endpoint: its delivery is held, or
    // dropped if that was its last attempt; never "retrying".
    assert!(matches!(lines[9]["outcome"].as_str(), Some("held" | "dropped")), "{:?}", lines[9]);
    assert!(lines[..9].iter().all(|l| l["outcome"] != "held"));
    assert_eq!(receiver.received().len(), lines.len(), "every attempt reported");
    lines.len()
}

#[tokio::test]
async fn a_gone_endpoint_reports_its_delivery_held() {
    let receiver = Receiver::scripted(|_, _| Reply::status(410)).await.unwrap();
    let output = send_deepsmith(receiver.url(), &[], "{\"event\":\"iq.status_updated\",\"data\":{}}\n").await;
    assert_eq!(output.status.code(), Some(3), "stderr: {}", stderr(&output));
    let lines = lines(&output);
    assert_eq!((&lines[0]["status"], &lines[0]["outcome"]), (&410.into(), &"held".into()), "{lines:?}");
    assert_eq!(lines[1]["summary"]["endpoint_disabled"], true);
    assert_eq!(lines[1]["summary"]["pending"], 1);
}

#[tokio::test]
async fn the_secret_and_the_store_can_stay_out_of_the_process_list() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "whsec_from_a_file_secret\n").unwrap();
    let receiver = Receiver::start().await.unwrap();
    let secret_path = secret_file.display().to_string();
    let args =
        ["--preset", "deepsmith", "--url", receiver.url(), "--secret-file", &secret_path, "--allow-private"];
    let output = send(&args, "{\"event\":\"iq.status_updated\",\"data\":{}}\n").await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let request = receiver.received().remove(0);
    assert_deepsmith_signed(&request, "whsec_from_a_file_secret");

    // From the environment: the secret, and a store URL that could hold a password.
    let db = dir.path().join("env.db");
    let env = [
        ("WEBHOOKS_SECRET", "whsec_from_the_environment_secret".to_owned()),
        ("WEBHOOKS_STORE", format!("sqlite:{}", db.display())),
    ];
    let output = send_with_env(
        &["--preset", "deepsmith", "--url", receiver.url(), "--allow-private"],
        &env,
        "{\"event\":\"iq.status_updated\",\"data\":{}}\n",
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let request = receiver.received().remove(1);
    assert_deepsmith_signed(&request, "whsec_from_the_environment_secret");
    assert!(db.exists(), "the store the environment named was used");

    let missing =
        send(&["--preset", "deepsmith", "--url", receiver.url(), "--secret-file", "/nonexistent/secret"], "")
            .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--secret-file /nonexistent/secret"), "{}", stderr(&missing));
}

#[tokio::test]
async fn an_endpoint_url_over_the_limit_is_refused_at_the_door() {
    let url = format!("https://example.com/{}", "a".repeat(5000));
    let output = send(&["--preset", "deepsmith", "--url", &url, "--secret", "k-signing-secret"], "").await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr(&output);
    assert!(stderr.contains("over the 4096-byte limit"), "{stderr}");
    assert!(stderr.len() < 1000, "the refused URL is not echoed whole: {} bytes", stderr.len());
}

/// The `line N: ..` reports on stderr, by line number.
fn reported_lines(output: &Output) -> Vec<(usize, String)> {
    stderr(output)
        .lines()
        .filter_map(|l| l.strip_prefix("line "))
        .filter_map(|l| l.split_once(": "))
        .map(|(number, why)| (number.parse().unwrap(), why.to_owned()))
        .collect()
}

#[tokio::test]
async fn on_several_threads_every_line_is_delivered_once() {
    several_threads_deliver_every_line_once("memory", "3").await;
}

#[tokio::test]
async fn on_several_threads_over_sqlite_every_line_is_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    several_threads_deliver_every_line_once(&format!("sqlite:{}", dir.path().join("send.db").display()), "3")
        .await;
}

/// More threads than the dispatcher has workers (64 in memory, as a machine
/// with more cores than that has by default): as many as the workers.
#[tokio::test]
async fn more_threads_than_workers_run_one_a_worker() {
    several_threads_deliver_every_line_once("memory", "100").await;
}

/// One dispatcher spread over `threads` threads on `store` delivers 500 lines, each once.
async fn several_threads_deliver_every_line_once(store: &str, threads: &str) {
    let receiver = Receiver::start().await.unwrap();
    let stdin: String =
        (1..=500).map(|n| format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n")).collect();
    let output = send_deepsmith(receiver.url(), &["--threads", threads, "--store", store], &stdin).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 500);
    let received: HashSet<u64> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(received, (1..=500).collect(), "every line delivered once");
    assert_eq!(receiver.received().len(), 500);
}

#[tokio::test]
async fn in_batches_every_line_keeps_its_own_outcome() {
    // Written at once, the lines are published many to a store step; the
    // bad ones, among them, are reported alone and the rest all delivered.
    let receiver = Receiver::start().await.unwrap();
    let stdin: String = (1..=1200)
        .map(|n| match n {
            300 => "{\"event\":\"job.completed\",\"data\":{}}\n".to_owned(),
            301 => "{\"event\":\"iq.status_updated\",\"data\":null}\n".to_owned(),
            700 => "{\"event\":\"iq.status_updated\"\n".to_owned(),
            n => format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n"),
        })
        .collect();
    let output = send_deepsmith(receiver.url(), &[], &stdin).await;
    assert_eq!(output.status.code(), Some(1), "a bad line makes the exit status 1");
    let reported = reported_lines(&output);
    let numbers: Vec<usize> = reported.iter().map(|(number, _)| *number).collect();
    assert_eq!(numbers, [300, 301, 700], "{}", stderr(&output));
    assert!(reported[0].1.contains("unknown event type \"job.completed\""), "{reported:?}");
    assert!(reported[1].1.contains("data"), "{reported:?}");
    assert!(reported[2].1.starts_with("not an event object: "), "{reported:?}");
    assert!(stderr(&output).contains("accepted 1197 events"), "{}", stderr(&output));

    let lines = lines(&output);
    assert_eq!(
        lines.last().unwrap()["summary"],
        serde_json::json!({"delivered": 1197, "dropped": 0, "pending": 0, "endpoint_disabled": false})
    );
    let received: HashSet<u64> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["n"].as_u64().unwrap())
        .collect();
    let expected: HashSet<u64> = (1..=1200).filter(|n| ![300, 301, 700].contains(n)).collect();
    assert_eq!(received, expected, "every good line delivered once");
}

#[tokio::test]
async fn an_oversized_line_is_rejected_and_the_lines_after_it_still_go() {
    let receiver = Receiver::start().await.unwrap();
    let event = |size: usize| {
        format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"pad\":\"{}\"}}}}\n", "x".repeat(size))
    };
    // Far over the limit, just over it, and under it but large.
    let stdin = [event(1), event(5 << 20), event(1_100_000), event(700_000), event(2)].concat();
    let output = send_deepsmith(receiver.url(), &[], &stdin).await;
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    let reported = reported_lines(&output);
    assert_eq!(reported.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3], "{reported:?}");
    for (_, why) in &reported {
        assert!(why.starts_with("event body is ") && why.ends_with("over the 1048576-byte limit"), "{why}");
    }
    assert!(stderr(&output).contains("accepted 3 events"), "{}", stderr(&output));
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 3);
    let sizes: Vec<usize> = receiver.received().iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes.len(), 3);
    assert!(sizes.iter().any(|&size| size > 700_000), "the large line under the limit went: {sizes:?}");
}

#[tokio::test]
async fn a_line_typed_by_hand_is_delivered_before_stdin_ends() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let receiver = Receiver::start().await.unwrap();
    let mut child = common::spawn_send(&deepsmith_args(receiver.url(), &[]), &[], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    for n in 1..=2 {
        let line = format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"n\":{n}}}}}\n");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        // stdin stays open: the line is not waiting for more.
        let attempt = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("the line is attempted while stdin is open")
            .unwrap()
            .unwrap();
        let attempt: Value = serde_json::from_str(&attempt).unwrap();
        assert_eq!(attempt["outcome"], "delivered");
    }
    drop(stdin);
    let summary = stdout.next_line().await.unwrap().unwrap();
    assert_eq!(summary, r#"{"summary":{"delivered":2,"dropped":0,"pending":0,"endpoint_disabled":false}}"#);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn standard_adds_the_event_types_stdin_names_as_they_come() {
    // The first line is bad, so the subscription waits for the second to
    // name a type; a type first named hundreds of lines later is added
    // before its events are published.
    let receiver = Receiver::start().await.unwrap();
    let secret = webhooks_core::StandardScheme::generate_secret();
    let stdin: String = std::iter::once("not json\n".to_owned())
        .chain((0..800).map(|n| {
            let event = if n < 600 { "invoice.paid" } else { "user.created" };
            format!("{{\"event\":\"{event}\",\"data\":{{\"n\":{n}}}}}\n")
        }))
        .collect();
    let output = send(&standard_args(receiver.url(), &secret), &stdin).await;
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert_eq!(reported_lines(&output).iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1]);
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 800);
    let received = receiver.received();
    assert_eq!(received.len(), 800);
    let types: HashSet<String> = received
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, HashSet::from(["invoice.paid".to_owned(), "user.created".to_owned()]));
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The secret of a [`HeldDeliveries`] run, stored with its subscription.
const FIRST_SECRET: &str = "whsec_first-signing-secret";

/// The deliveries a first `send` run on a store left held: DeepSmith, signed with
/// [`FIRST_SECRET`], to an endpoint that failed until it was disabled.
struct HeldDeliveries {
    receiver: Receiver,
    store: String,
    /// How many deliveries the run left pending.
    held: u64,
    /// The deliveries the run attempted.
    ids: HashSet<String>,
}

impl HeldDeliveries {
    /// Runs `send` on `store` with `events` events, one at a time, to an endpoint that fails.
    async fn hold(store: &str, events: usize) -> Self {
        let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
        let mut run = Self { receiver, store: store.to_owned(), held: 0, ids: HashSet::new() };
        let args = [&run.args()[..], &["--secret", FIRST_SECRET, "--retry-scale", "0", "--concurrency", "1"]]
            .concat();
        let stdin = "{\"event\":\"iq.status_updated\",\"data\":{}}\n".repeat(events);
        let first = send(&args, &stdin).await;
        assert_eq!(first.status.code(), Some(3), "stderr: {}", stderr(&first));
        assert!(stderr(&first).contains(&format!("accepted {events} events")), "{}", stderr(&first));
        let lines = lines(&first);
        let summary = &lines.last().unwrap()["summary"];
        assert_eq!(summary["endpoint_disabled"], true);
        run.held = summary["pending"].as_u64().unwrap();
        assert!(run.held >= 1, "{summary}");
        run.ids = lines.iter().filter_map(|l| l["delivery_id"].as_str()).map(str::to_owned).collect();
        run
    }

    /// The arguments every run on the store shares: no `--secret`.
    fn args(&self) -> [&str; 7] {
        ["--store", &self.store, "--preset", "deepsmith", "--url", self.receiver.url(), "--allow-private"]
    }

    /// A second run on the same store, nothing on stdin and no `--secret`, the endpoint
    /// now up: the held deliveries go out, signed with the stored secret.
    async fn resume(&self) {
        self.receiver.rescript(|_, _| Reply::status(200));
        let before = self.receiver.received().len();
        let second = send(&self.args(), "").await;
        assert_eq!(second.status.code(), Some(0), "stderr: {}", stderr(&second));
        assert!(stderr(&second).contains("accepted 0 events"), "{}", stderr(&second));
        let lines = lines(&second);
        let summary = &lines.last().unwrap()["summary"];
        assert_eq!(summary["delivered"].as_u64(), Some(self.held), "{summary}");
        assert_eq!((&summary["pending"], &summary["endpoint_disabled"]), (&0.into(), &false.into()));
        let resumed = self.receiver.received().split_off(before);
        assert_eq!(resumed.len() as u64, self.held);
        for request in resumed {
            assert!(self.ids.contains(request.header("x-webhook-id")), "a delivery of the first run");
            assert_deepsmith_signed(&request, FIRST_SECRET);
        }
    }
}

#[tokio::test]
async fn sqlite_resumes_held_deliveries_on_a_second_run_with_the_stored_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let held = HeldDeliveries::hold(&format!("sqlite:{}", path.display()), 3).await;
    held.resume().await;
    let subscriptions = SqliteStore::open(&path).await.unwrap().subscriptions().await.unwrap();
    assert_eq!(subscriptions.len(), 1, "the subscription is reused, not duplicated");
}

#[tokio::test]
async fn sqlite_refuses_a_secret_that_differs_from_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("queue.db").display());
    let receiver = Receiver::start().await.unwrap();
    let url = receiver.url().to_owned();
    let args = |secret: &'static str| {
        let mut args = vec!["--store", &store, "--preset", "deepsmith", "--url", &url, "--allow-private"];
        args.extend(["--secret", secret].iter().filter(|_| !secret.is_empty()));
        args
    };
    let event = "{\"event\":\"iq.status_updated\",\"data\":{}}\n";

    let refused = send(&args(""), event).await;
    assert_eq!(refused.status.code(), Some(2), "no subscription yet, so --secret is required");
    assert!(stderr(&refused).contains("--secret is required"), "{}", stderr(&refused));

    let first = send(&args("whsec_stored-signing-secret"), event).await;
    assert_eq!(first.status.code(), Some(0), "stderr: {}", stderr(&first));

    let second = send(&args("whsec_other-signing-secret"), event).await;
    assert_eq!(second.status.code(), Some(2));
    let message = stderr(&second);
    assert!(message.contains("--secret differs"), "{message}");
    assert!(
        !message.contains("whsec_stored-signing-secret") && !message.contains("whsec_other-signing-secret"),
        "no secret shown: {message}"
    );
    assert!(second.stdout.is_empty());
    assert_eq!(receiver.received().len(), 1, "the refused run sent nothing");
}

#[tokio::test]
async fn standard_delivers_every_event_type_stdin_names_signed_per_the_specification() {
    let receiver = Receiver::start().await.unwrap();
    let secret = webhooks_core::StandardScheme::generate_secret();
    let stdin =
        "{\"event\":\"invoice.paid\",\"data\":{\"n\":1}}\n{\"event\":\"user.created\",\"data\":{\"n\":2}}\n";
    let output = send(&standard_args(receiver.url(), &secret), stdin).await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        webhooks_core::StandardScheme::default()
            .verify(&request.headers, &request.body, std::slice::from_ref(&secret), chrono::Utc::now())
            .unwrap();
    }
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 2);
}

#[tokio::test]
async fn standard_refuses_http_and_a_secret_that_is_not_base64() {
    let output =
        send(&["--preset", "standard", "--url", "http://127.0.0.1:9/", "--secret", "whsec_k"], "").await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("https"));
    let stdin = "{\"event\":\"a.b\",\"data\":{}}\n";
    let output = send(
        &["--preset", "standard", "--url", "https://example.com/", "--secret", "not-base64-but-long-enough!"],
        stdin,
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("base64"));
}

#[tokio::test]
async fn a_secret_too_short_or_too_long_is_refused_before_anything_is_sent() {
    let stdin = "{\"event\":\"iq.status_updated\",\"data\":{}}\n";
    let long = "s".repeat(webhooks_core::MAX_SECRET_BYTES + 1);
    for (secret, said) in [("short", "at least 16 bytes"), (long.as_str(), "at most 1024 bytes")] {
        let output =
            send(&["--preset", "deepsmith", "--url", "https://example.com/", "--secret", secret], stdin)
                .await;
        assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
        assert!(stderr(&output).contains(said), "stderr: {}", stderr(&output));
        assert!(lines(&output).is_empty(), "nothing was attempted");
    }
}

// ---------------------------------------------------------------------------
// On PostgreSQL: a fresh database on the server WEBHOOKS_POSTGRES_URL names
// or one the tests start; without either the test is ignored.
// ---------------------------------------------------------------------------

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn postgres_resumes_held_deliveries_on_a_second_run_with_the_stored_secret() {
    let database = TestDatabase::create().await.unwrap();
    let store = database.url().to_owned();
    let password = store.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(user, _)| user);
    let password = password.and_then(|user| user.split_once(':')).map(|(_, password)| password.to_owned());
    // Four events: the attempts made while the tenth failure is being
    // recorded may finish three.
    let held = HeldDeliveries::hold(&store, 4).await;

    // A run with another secret is refused, and says so without showing
    // either secret or the database's password.
    let refused = send(&[&held.args()[..], &["--secret", "whsec_other-signing-secret"]].concat(), "").await;
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(message.contains("--secret differs"), "{message}");
    assert!(!message.contains(FIRST_SECRET) && !message.contains("whsec_other-signing-secret"), "{message}");
    if let Some(password) = &password {
        assert!(!message.contains(password.as_str()), "no password shown: {message}");
    }

    held.resume().await;
    let subscriptions = database.store().await.unwrap().subscriptions().await.unwrap();
    assert_eq!(subscriptions.len(), 1, "the subscription is reused, not duplicated");
}

#[tokio::test]
async fn a_postgres_store_that_cannot_be_reached_is_an_error_without_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let store = format!("postgresql://someone:pw-7c1e@127.0.0.1:{port}/queue");
    let args = [
        "--store",
        &store,
        "--preset",
        "deepsmith",
        "--url",
        "https://example.com/",
        "--secret",
        "k-signing-secret",
        // A server not up yet is waited for, as an outage is.
        "--store-patience",
        "1",
    ];
    let output = send(&args, "").await;
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("the store stayed unavailable for 1 s"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")) && !message.contains("pw-7c1e"), "{message}");

    let bad =
        send(&["--store", "postgres://someone:pw-7c1e@127.0.0.1:99999/queue", "--preset", "deepsmith"], "")
            .await;
    assert_eq!(bad.status.code(), Some(2), "a URL that cannot be used is a usage error");
    assert!(!stderr(&bad).contains("pw-7c1e"), "{}", stderr(&bad));
}

#[tokio::test]
async fn owners_sharing_a_store_each_reach_only_their_own_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = format!("sqlite:{}", path.display());
    let (alice, bob) = (Receiver::start().await.unwrap(), Receiver::start().await.unwrap());
    let run = |owner: &'static str, url: String, secret: &'static str| {
        let store = store.clone();
        async move {
            let args = [
                "--store",
                &store,
                "--owner",
                owner,
                "--preset",
                "deepsmith",
                "--url",
                &url,
                "--secret",
                secret,
                "--allow-private",
            ];
            let stdin =
                format!("{{\"event\":\"iq.status_updated\",\"data\":{{\"owner\":\"{owner}\"}}}}\n").repeat(3);
            send(&args, &stdin).await
        }
    };
    let first = run("alice", alice.url().to_owned(), "whsec_alice-signing-secret").await;
    assert_eq!(first.status.code(), Some(0), "stderr: {}", stderr(&first));
    let second = run("bob", bob.url().to_owned(), "whsec_bob-signing-secret").await;
    assert_eq!(second.status.code(), Some(0), "stderr: {}", stderr(&second));
    assert_eq!(lines(&second).last().unwrap()["summary"]["delivered"], 3);

    // Both runs have ended: nothing more can reach either receiver.
    for (receiver, owner, secret) in
        [(&alice, "alice", "whsec_alice-signing-secret"), (&bob, "bob", "whsec_bob-signing-secret")]
    {
        let received = receiver.received();
        assert_eq!(received.len(), 3, "{owner} gets its own three events, nothing of the other's");
        for request in received {
            assert!(String::from_utf8_lossy(&request.body).contains(owner));
            assert_deepsmith_signed(&request, secret);
        }
    }
    let subscriptions = SqliteStore::open(&path).await.unwrap().subscriptions().await.unwrap();
    assert_eq!(subscriptions.len(), 2, "each owner keeps its own subscription");
    assert!(subscriptions.iter().all(|s| s.is_enabled()), "the other owner's stays enabled");
    let owners: HashSet<&str> = subscriptions.iter().map(|s| s.owner.as_str()).collect();
    assert_eq!(owners, HashSet::from(["alice", "bob"]));
}

#[tokio::test]
async fn a_repeated_idempotency_key_creates_no_delivery_in_a_run_or_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("queue.db").display());
    let receiver = Receiver::start().await.unwrap();
    let url = receiver.url().to_owned();
    let args = [
        "--store",
        &store,
        "--preset",
        "deepsmith",
        "--url",
        &url,
        "--secret",
        "k-signing-secret",
        "--allow-private",
    ];
    let line = |key: &str| {
        format!(
            "{{\"event\":\"iq.status_updated\",\"idempotency_key\":\"{key}\",\"data\":{{\"key\":\"{key}\"}}}}\n"
        )
    };

    let first = send(&args, &[line("k1"), line("k2"), line("k1")].concat()).await;
    assert_eq!(first.status.code(), Some(0), "stderr: {}", stderr(&first));
    assert!(stderr(&first).contains("accepted 3 events"), "a repeat is no error: {}", stderr(&first));
    assert_eq!(lines(&first).last().unwrap()["summary"]["delivered"], 2);
    // The run has ended: what reached the receiver is all that will.
    assert_eq!(receiver.received().len(), 2);

    let second = send(&args, &[line("k2"), line("k3"), line("k1")].concat()).await;
    assert_eq!(second.status.code(), Some(0), "stderr: {}", stderr(&second));
    let received = receiver.received();
    assert_eq!(received.len(), 3, "only k3 is new");
    let ids: HashSet<&str> = received.iter().map(|r| r.header("x-webhook-id")).collect();
    assert_eq!(ids.len(), 3, "three deliveries, each once");
    assert!(String::from_utf8_lossy(&received[2].body).contains("k3"));
}

#[tokio::test]
async fn help_prints_the_usage_and_a_byte_order_mark_before_the_first_line_is_skipped() {
    let help = send(&["--help"], "").await;
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: send --preset"), "{help:?}");

    let receiver = Receiver::start().await.unwrap();
    let stdin = "\u{FEFF}{\"event\":\"iq.status_updated\",\"data\":{}}\n{\"event\":\"iq.status_updated\",\"data\":{}}\n";
    let output = send_deepsmith(receiver.url(), &[], stdin).await;
    assert_eq!(output.status.code(), Some(0), "every event delivered: {}", stderr(&output));
    assert!(!stderr(&output).contains("line 1"), "{}", stderr(&output));
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 2);
}

#[tokio::test]
async fn stdout_that_cannot_be_written_ends_the_run_with_exit_1() {
    let receiver = Receiver::start().await.unwrap();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("Linux's /dev/full");
    let mut child = common::spawn_send(&deepsmith_args(receiver.url(), &[]), &[], Stdio::from(full));
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"{\"event\":\"iq.status_updated\",\"data\":{}}\n").await.unwrap();
    drop(input);
    let output =
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("ends").unwrap();
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert!(stderr(&output).contains("cannot write to stdout"), "stderr: {}", stderr(&output));
}

#[tokio::test]
async fn a_run_on_sqlite_closes_the_file_and_leaves_no_wal_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = format!("sqlite:{}", path.display());
    let receiver = Receiver::start().await.unwrap();
    let output = send_deepsmith(
        receiver.url(),
        &["--store", &store],
        &"{\"event\":\"iq.status_updated\",\"data\":{}}\n".repeat(3),
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(path.exists());
    assert!(!dir.path().join("queue.db-wal").exists(), "the WAL was checkpointed and removed");
    let reopened = SqliteStore::open(&path).await.unwrap();
    let subscription = reopened.subscriptions().await.unwrap().remove(0);
    assert_eq!(
        reopened.delivery_counts(subscription.id).await.unwrap().delivered,
        3,
        "the file holds the run"
    );
}

#[tokio::test]
async fn data_reaches_the_receiver_byte_for_byte_as_written() {
    let receiver = Receiver::start().await.unwrap();
    let data = r#"{"big":18446744073709551616123,"id":12345678901234567890123,"e":1E2,"neg0":-0,"x":1,"x":2, "spaced" : [ 1.50 ]}"#;
    let stdin = format!("{{\"event\":\"iq.status_updated\",\"data\":  {data}  }}\n");
    let output = send_deepsmith(receiver.url(), &[], &stdin).await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let request = receiver.received().remove(0);
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(body.ends_with(&format!(",\"data\":{data}}}")), "{body}");
    assert_deepsmith_signed(&request, "k-signing-secret");
}

#[tokio::test]
async fn a_key_from_the_environment_seals_the_secret_in_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    let store = format!("sqlite:{}", path.display());
    let receiver = Receiver::start().await.unwrap();
    let secret = "whsec_SealedInTheFileNeverClear";
    let args = ["--store", &store, "--preset", "deepsmith", "--url", receiver.url(), "--allow-private"];
    let key = [("WEBHOOKS_SECRET_KEY", webhooks_core::SecretKeys::generate_key())];
    let line = "{\"event\":\"iq.status_updated\",\"data\":{}}\n";

    let first = send_with_env(&[&args[..], &["--secret", secret]].concat(), &key, line).await;
    assert_eq!(first.status.code(), Some(0), "stderr: {}", stderr(&first));
    let request = receiver.received().remove(0);
    assert_deepsmith_signed(&request, secret);
    let file = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(!file.contains(secret) && file.contains("sealed:v1:"), "the file holds it sealed");

    // The next run needs the key: with it, the stored secret signs.
    let again = send_with_env(&args, &key, line).await;
    assert_eq!(again.status.code(), Some(0), "stderr: {}", stderr(&again));
    let request = receiver.received().remove(1);
    assert_deepsmith_signed(&request, secret);
    let without = send(&args, line).await;
    assert_eq!(without.status.code(), Some(1), "stderr: {}", stderr(&without));
    assert!(stderr(&without).contains("sealed"), "stderr: {}", stderr(&without));
}

#[tokio::test]
async fn a_line_may_name_the_channels_its_event_is_published_on() {
    let receiver = Receiver::scripted(|_, _| Reply::status(200)).await.unwrap();
    let stdin = concat!(
        "{\"event\":\"content.status_updated\",\"channels\":[\"store-eu\",\"region:1\"],\"data\":{\"n\":1}}\n",
        "{\"event\":\"content.status_updated\",\"channels\":[\"not a channel\"],\"data\":{\"n\":2}}\n",
        "{\"event\":\"content.status_updated\",\"channels\":[],\"data\":{\"n\":3}}\n",
    );
    let output = send_deepsmith(receiver.url(), &[], stdin).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a refused line fails the run: {stderr}");
    assert!(stderr.contains("line 2: ") && stderr.contains("channels"), "{stderr}");
    assert!(stderr.contains("accepted 2 events"), "{stderr}");
    // The run's subscription names no channel: it hears both events.
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(lines(&output).last().unwrap()["summary"]["delivered"], 2);
}
