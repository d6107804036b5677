//! Sends the events read from stdin to one endpoint, printing every attempt.
//!
//! ```text
//! cargo run --release -q --example send -- --preset smartlyq|deepsmith|standard --url URL --secret SECRET [options] < events.jsonl
//! ```
//!
//! stdin holds one JSON object a line: `{"event":"job.completed","data":{...}}`.
//! stdout gets one JSON line per attempt, then a summary line. Exit status: 0
//! when done, 2 for bad arguments or a refused subscription, 1 otherwise
//! (for example a malformed input line, reported on stderr and skipped).
//! Once stdin is read and every event in it published, stderr gets
//! `accepted N events`.
//!
//! With `--store sqlite:PATH` the queue outlives the run: a later run on the
//! same file (stdin may be empty) resumes every pending delivery, and reuses
//! the subscription to `--url` with its stored secret, so `--secret` may be
//! left out; a `--secret` that differs from the stored one is refused
//! (exit 2). A subscription that was disabled is enabled again.
//!
//! `--store postgres://USER:PASSWORD@HOST/DATABASE` (or `postgresql://`,
//! the whole URL) keeps the queue in PostgreSQL with the same resume
//! behaviour; runs on several machines may share the database at once, each
//! delivering its part. Messages never repeat the URL's password.
//!
//! `--preset standard` (Standard Webhooks) has no fixed catalogue: without
//! `--events` the subscription listens to every event type stdin names.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    AttemptOutcome, Preset, Subscription, SubscriptionId, SubscriptionStatus, UrlRule, Webhooks, prelude::*,
};
use webhooks_memory::MemoryStore;
use webhooks_postgres::PostgresStore;
use webhooks_sqlite::SqliteStore;

const USAGE: &str = "usage: send --preset smartlyq|deepsmith|standard --url URL [--secret SECRET] \
[--store memory|sqlite:PATH|postgres://URL] [--retry-scale F] [--allow-http] [--allow-private] [--events a,b] \
[--concurrency N] [--timeout-ms MS] < events.jsonl";

struct Args {
    preset: Preset,
    url: String,
    /// Required unless the store has a subscription to `url` already.
    secret: Option<String>,
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
                let name = value()?;
                preset = Some(
                    Preset::by_name(&name)
                        .ok_or(format!("unknown preset {name:?}: use smartlyq, deepsmith or standard"))?,
                )
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
        secret,
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

async fn open_store(spec: &str) -> Result<Arc<dyn Store>, Failure> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return match PostgresStore::connect(spec).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(error @ webhooks_postgres::Error::InvalidUrl { .. }) => {
                Err(Failure::Usage(error.to_string()))
            }
            Err(error) => Err(Failure::Run(error.to_string())),
        };
    }
    match spec.split_once(':') {
        None if spec == "memory" => Ok(Arc::new(MemoryStore::new())),
        Some(("sqlite", path)) if !path.is_empty() => {
            Ok(Arc::new(SqliteStore::open(path).await.map_err(|e| Failure::Run(e.to_string()))?))
        }
        _ => Err(Failure::Usage(format!(
            "unsupported --store {:?}: use memory, sqlite:PATH or postgres://URL",
            shown_store(spec)
        ))),
    }
}

/// `--store` as it may be printed: a URL's password replaced by `***`.
fn shown_store(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else { return spec.to_owned() };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority.len()..])
        }
        _ => spec.to_owned(),
    }
}

/// The subscription to `--url`: the store's own when a run before this one
/// made it, with the secret it stored, or a new one with `--secret`. It
/// listens to `--events`, else to the preset's whole catalogue, else (an
/// open catalogue) to the event types stdin names.
async fn subscription(webhooks: &Webhooks, args: &Args, named: &[&str]) -> Result<SubscriptionId, Failure> {
    let usage = |e: webhooks_core::Error| Failure::Usage(e.to_string());
    let run_error = |e: webhooks_core::StoreError| Failure::Run(e.to_string());
    let preset = webhooks.preset();
    let open = preset.catalogue().names().is_none();
    let url = preset.url_rule().check(&args.url, preset.name()).map_err(usage)?;
    let stored = webhooks.store().subscriptions().await.map_err(run_error)?;
    let stored = stored.into_iter().find(|s| s.url == url);
    let mut events: BTreeSet<String> = match &args.events {
        Some(events) => events.iter().cloned().collect(),
        None if open => {
            named.iter().filter(|n| preset.check_event_type(n).is_ok()).map(|n| (*n).to_owned()).collect()
        }
        None => preset.catalogue().names().cloned().unwrap_or_default(),
    };
    if open && args.events.is_none() {
        events.extend(stored.iter().flat_map(|s| s.event_types.iter().cloned()));
        if events.is_empty() && stored.is_none() {
            return Err(Failure::Usage(format!(
                "{} has no fixed event types: name them with --events, or send at least one event",
                preset.name()
            )));
        }
    }
    let Some(mut subscription) = stored else {
        let secret = args.secret.clone().ok_or(Failure::Usage("--secret is required".to_owned()))?;
        let new = Subscription::builder(&args.url).event_types(events).secret(secret);
        return Ok(webhooks.subscribe(new).await.map_err(usage)?.id);
    };
    if args.secret.as_deref().is_some_and(|secret| secret != subscription.secret.expose()) {
        return Err(Failure::Usage(format!(
            "--secret differs from the secret stored for {url} in {}; leave --secret out to use the stored one",
            shown_store(&args.store)
        )));
    }
    if !events.is_empty() && events != subscription.event_types {
        for name in &events {
            preset.check_event_type(name).map_err(usage)?;
        }
        subscription.event_types = events;
        webhooks.store().update_subscription(&subscription).await.map_err(run_error)?;
    }
    if let SubscriptionStatus::Disabled { reason, .. } = &subscription.status {
        eprintln!("{url} was disabled ({reason}); enabling it again to resume its deliveries");
        webhooks.enable(subscription.id).await.map_err(|e| Failure::Run(e.to_string()))?;
    }
    Ok(subscription.id)
}

async fn run(args: Args) -> Result<ExitCode, Failure> {
    let run_error = |e: webhooks_core::Error| Failure::Run(e.to_string());
    let webhooks = Webhooks::builder()
        .shared_store(open_store(&args.store).await?)
        .preset(args.preset.clone())
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    // Read first: with an open catalogue the lines name the event types.
    let lines = tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().collect::<Vec<_>>())
        .await
        .map_err(|e| Failure::Run(e.to_string()))?;
    let parsed: Vec<Option<Result<Line, String>>> = lines
        .into_iter()
        .map(|line| match line {
            Err(error) => Some(Err(format!("unreadable: {error}"))),
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => {
                Some(serde_json::from_str::<Line>(&text).map_err(|e| format!("not an event object: {e}")))
            }
        })
        .collect();
    let named: Vec<&str> = parsed.iter().flatten().flatten().map(|line| line.event.as_str()).collect();
    let subscription = subscription(&webhooks, &args, &named).await?;

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

    let (mut malformed, mut accepted) = (false, 0u64);
    for (index, line) in parsed.into_iter().enumerate() {
        let number = index + 1;
        let published = match line {
            None => continue,
            Some(Err(why)) => Err(why),
            Some(Ok(line)) => webhooks.publish(&line.event, line.data).await.map_err(|e| e.to_string()),
        };
        match published {
            Ok(_) => accepted += 1,
            Err(why) => {
                eprintln!("line {number}: {why}");
                malformed = true;
            }
        }
    }
    // Every event is in the store now; with a durable one, none can be lost.
    eprintln!("accepted {accepted} events");

    // Done when nothing is left to attempt: every delivery delivered or
    // dropped, or held because the endpoint was disabled.
    loop {
        let wake = progress.notified();
        // The status before and after the counts: an attempt that drops a
        // delivery and disables the endpoint commits both in one step, and
        // may land between two reads (another process's store, a server).
        let enabled = webhooks.subscription(subscription).await.map_err(run_error)?.is_enabled();
        let counts = webhooks.delivery_counts(subscription).await.map_err(run_error)?;
        if webhooks.subscription(subscription).await.map_err(run_error)?.is_enabled() != enabled {
            continue;
        }
        if counts.pending == 0 || !enabled {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), wake).await;
    }
    // Attempts still in flight finish and are printed; the summary comes
    // after them, from the store as they left it.
    shutdown.cancel();
    running.await.map_err(|e| Failure::Run(e.to_string()))?;
    let counts = webhooks.delivery_counts(subscription).await.map_err(run_error)?;
    let enabled = webhooks.subscription(subscription).await.map_err(run_error)?.is_enabled();
    let summary = Summary {
        delivered: counts.delivered,
        dropped: counts.dropped,
        pending: counts.pending,
        endpoint_disabled: !enabled,
    };

    if let Ok(json) = serde_json::to_string(&SummaryLine { summary }) {
        let _ = writeln!(std::io::stdout().lock(), "{json}");
    }
    Ok(if malformed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
