//! Sends the events read from stdin to one endpoint, printing every attempt.
//!
//! ```text
//! cargo run --release -q --example send -- --preset smartlyq|deepsmith --url URL --secret SECRET [options] < events.jsonl
//! ```
//!
//! stdin holds one JSON object a line: `{"event":"job.completed","data":{...}}`.
//! stdout gets one JSON line per attempt, then a summary line. Exit status: 0
//! when done, 2 for bad arguments or a refused subscription, 1 otherwise
//! (for example a malformed input line, reported on stderr and skipped).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks_core::{AttemptOutcome, Preset, Subscription, UrlRule, Webhooks};
use webhooks_memory::MemoryStore;

const USAGE: &str = "usage: send --preset smartlyq|deepsmith --url URL --secret SECRET \
[--store memory] [--retry-scale F] [--allow-http] [--allow-private] [--events a,b] \
[--concurrency N] [--timeout-ms MS] < events.jsonl";

struct Args {
    preset: Preset,
    url: String,
    secret: String,
    store: String,
    events: Option<Vec<String>>,
    concurrency: usize,
    timeout: Duration,
    allow_private: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut preset = None;
    let (mut url, mut secret, mut events) = (None, None, None);
    let mut store = "memory".to_owned();
    let mut retry_scale = 1.0;
    let (mut allow_http, mut allow_private, mut concurrency, mut timeout_ms) = (false, false, 64, 15_000u64);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => {
                preset = Some(match value()?.as_str() {
                    "smartlyq" => Preset::smartlyq(),
                    "deepsmith" => Preset::deepsmith(),
                    other => return Err(format!("unknown preset {other:?}: use smartlyq or deepsmith")),
                })
            }
            "--url" => url = Some(value()?),
            "--secret" => secret = Some(value()?),
            "--store" => store = value()?,
            "--retry-scale" => {
                retry_scale = value()?.parse().map_err(|_| "--retry-scale needs a number".to_owned())?
            }
            "--events" => events = Some(value()?.split(',').map(|e| e.trim().to_owned()).collect()),
            "--concurrency" => {
                concurrency = value()?.parse().map_err(|_| "--concurrency needs a whole number".to_owned())?
            }
            "--timeout-ms" => {
                timeout_ms = value()?.parse().map_err(|_| "--timeout-ms needs a whole number".to_owned())?
            }
            "--allow-http" => allow_http = true,
            "--allow-private" => allow_private = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mut preset = preset.ok_or("--preset is required")?;
    if allow_http {
        preset = preset.with_url_rule(UrlRule { require_https: false });
    }
    let preset = preset.with_retry_scale(retry_scale).map_err(|e| e.to_string())?;
    Ok(Args {
        preset,
        url: url.ok_or("--url is required")?,
        secret: secret.ok_or("--secret is required")?,
        store,
        events,
        concurrency,
        timeout: Duration::from_millis(timeout_ms),
        allow_private,
    })
}

/// One input line.
#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// One output line per attempt; the fields in the order of the contract.
#[derive(Serialize)]
struct AttemptLine<'a> {
    delivery_id: String,
    event: &'a str,
    attempt: u32,
    status: Option<u16>,
    error: Option<String>,
    outcome: &'static str,
    duration_ms: u128,
}

#[derive(Serialize)]
struct SummaryLine {
    summary: Summary,
}

/// The fields in the order of the contract.
#[derive(Serialize)]
struct Summary {
    delivered: u64,
    dropped: u64,
    pending: u64,
    endpoint_disabled: bool,
}

fn print_attempt(outcome: &AttemptOutcome) {
    let line = AttemptLine {
        delivery_id: outcome.delivery_id.to_string(),
        event: &outcome.event_type,
        attempt: outcome.attempt.number,
        status: outcome.attempt.status(),
        error: outcome.attempt.error(),
        outcome: outcome.verdict.as_str(),
        duration_ms: outcome.attempt.duration.as_millis(),
    };
    if let Ok(json) = serde_json::to_string(&line) {
        let _ = writeln!(std::io::stdout().lock(), "{json}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Run(String),
}

async fn run(args: Args) -> Result<ExitCode, Failure> {
    let run_error = |e: webhooks_core::Error| Failure::Run(e.to_string());
    let webhooks = match args.store.as_str() {
        "memory" => Webhooks::builder().store(MemoryStore::new()),
        other => return Err(Failure::Usage(format!("unsupported --store {other:?}: use memory"))),
    }
    .preset(args.preset.clone())
    .build()
    .map_err(|e| Failure::Usage(e.to_string()))?;

    let events = match args.events {
        Some(events) => events,
        None => args.preset.catalogue().names().into_iter().flatten().cloned().collect(),
    };
    let subscription = webhooks
        .subscribe(Subscription::builder(&args.url).event_types(events).secret(args.secret))
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;

    let progress = Arc::new(Notify::new());
    let dispatcher = webhooks
        .dispatcher()
        .concurrency(args.concurrency)
        // One endpoint: it may have every slot.
        .per_endpoint_concurrency(args.concurrency)
        .allow_private_networks(args.allow_private)
        .request_timeout(args.timeout)
        .on_outcome({
            let progress = Arc::clone(&progress);
            move |outcome| {
                print_attempt(outcome);
                progress.notify_one();
            }
        })
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));

    let mut malformed = false;
    let lines = tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().collect::<Vec<_>>())
        .await
        .map_err(|e| Failure::Run(e.to_string()))?;
    for (index, line) in lines.into_iter().enumerate() {
        let number = index + 1;
        let published = match line {
            Err(error) => Err(format!("unreadable: {error}")),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match serde_json::from_str::<Line>(&text) {
                Err(error) => Err(format!("not an event object: {error}")),
                Ok(line) => webhooks.publish(&line.event, line.data).await.map_err(|e| e.to_string()),
            },
        };
        if let Err(why) = published {
            eprintln!("line {number}: {why}");
            malformed = true;
        }
    }

    // Done when nothing is left to attempt: every delivery delivered or
    // dropped, or held because the endpoint was disabled.
    let summary = loop {
        let wake = progress.notified();
        let counts = webhooks.delivery_counts(subscription.id).await.map_err(run_error)?;
        let enabled = webhooks.subscription(subscription.id).await.map_err(run_error)?.is_enabled();
        if counts.pending == 0 || !enabled {
            break Summary {
                delivered: counts.delivered,
                dropped: counts.dropped,
                pending: counts.pending,
                endpoint_disabled: !enabled,
            };
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), wake).await;
    };
    shutdown.cancel();
    running.await.map_err(|e| Failure::Run(e.to_string()))?;

    if let Ok(json) = serde_json::to_string(&SummaryLine { summary }) {
        let _ = writeln!(std::io::stdout().lock(), "{json}");
    }
    Ok(if malformed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
