//! The dispatcher: claims due deliveries, signs, POSTs and records outcomes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Error;
use crate::http;
use crate::model::{Attempt, AttemptResult, DeliveryId, SubscriptionId};
use crate::scheme::Message;
use crate::store::{AttemptRecord, Claim, Recorded, Store, StoreError, StoreResult, Verdict};
use crate::webhooks::Webhooks;

/// An attempt as recorded, handed to [`DispatcherBuilder::on_outcome`].
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its subscription.
    pub subscription_id: SubscriptionId,
    /// Its event type.
    pub event_type: String,
    /// The attempt, as logged.
    pub attempt: Attempt,
    /// What happens to the delivery next.
    pub verdict: Verdict,
    /// What the attempt did to the subscription.
    pub recorded: Recorded,
}

type OutcomeHook = Arc<dyn Fn(&AttemptOutcome) + Send + Sync>;

/// Configures a [`Dispatcher`]; from [`Webhooks::dispatcher`].
///
/// ```
/// use std::time::Duration;
/// # use webhooks_core::{Preset, Webhooks};
/// # let webhooks = Webhooks::builder()
/// #     .store(webhooks_memory::MemoryStore::new())
/// #     .preset(Preset::deepsmith())
/// #     .build()
/// #     .unwrap();
/// let dispatcher = webhooks
///     .dispatcher()
///     .concurrency(32)
///     .request_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// ```
pub struct DispatcherBuilder {
    webhooks: Webhooks,
    client: Option<reqwest::ClientBuilder>,
    concurrency: usize,
    per_endpoint: Option<usize>,
    allow_private: bool,
    request_timeout: Duration,
    response_body_limit: usize,
    poll_interval: Duration,
    on_outcome: Option<OutcomeHook>,
}

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("allow_private", &self.allow_private)
            .field("request_timeout", &self.request_timeout)
            .field("response_body_limit", &self.response_body_limit)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// How much longer than a request a lease lasts: room to claim (a store busy
/// with another writer waits a few seconds at most) and to record the
/// outcome. Short, because a crashed worker's claims come back only when
/// their leases end.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// What an attempt leaves of its lease for recording its outcome: the
/// request is cut short rather than let the lease run out under it.
const RECORD_MARGIN: Duration = Duration::from_secs(10);

impl DispatcherBuilder {
    pub(crate) fn new(webhooks: Webhooks) -> Self {
        Self {
            webhooks,
            client: None,
            concurrency: 64,
            per_endpoint: None,
            allow_private: false,
            request_timeout: Duration::from_secs(15),
            response_body_limit: 4096,
            poll_interval: Duration::from_secs(1),
            on_outcome: None,
        }
    }

    /// Requests in flight at most (1 to 10 000); 64 by default.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// The longest one exchange may take, connect to last byte read; 15 s by
    /// default. Past it the attempt fails.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How much of a response body is read and logged; 4 KiB by default.
    pub fn response_body_limit(mut self, bytes: usize) -> Self {
        self.response_body_limit = bytes;
        self
    }

    /// How often an idle dispatcher looks at the store for work it was not
    /// told about (another process's publish); 1 s by default. Publishes
    /// through the same [`Webhooks`] wake it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Requests in flight to one endpoint at most, so one slow endpoint
    /// cannot take every slot; half the concurrency by default (at least 1).
    /// What an endpoint has due past its share waits in the queue while
    /// other endpoints' deliveries are claimed.
    pub fn per_endpoint_concurrency(mut self, requests: usize) -> Self {
        self.per_endpoint = Some(requests);
        self
    }

    /// Allows loopback, private-network, link-local and other non-public
    /// targets (development, tests, endpoints inside your own network). Off
    /// by default: customer URLs must not reach into the host's network.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Builds the HTTP client from this builder (TLS roots, pool settings,
    /// proxies). The dispatcher still turns redirects off, sets its connect
    /// timeout and user agent, and, unless private networks are allowed,
    /// adds the address guard and turns proxies off (a proxy resolves names
    /// itself, past the guard: allow private networks to use one, and let
    /// the proxy refuse internal targets).
    pub fn client_builder(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.client = Some(builder);
        self
    }

    /// Calls `hook` with every recorded attempt, e.g. to alert when an
    /// endpoint is disabled. It runs on the attempt's task: keep it quick.
    pub fn on_outcome(mut self, hook: impl Fn(&AttemptOutcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<Dispatcher, Error> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(Error::invalid("concurrency", "must be between 1 and 10000"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return Err(Error::invalid("request timeout", "must be between 1 ms and 1 hour"));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(3600) {
            return Err(Error::invalid("poll interval", "must be between 1 ms and 1 hour"));
        }
        let per_endpoint = self.per_endpoint.unwrap_or((self.concurrency / 2).max(1));
        if per_endpoint == 0 {
            return Err(Error::invalid("per-endpoint concurrency", "must be at least 1"));
        }
        let client = http::client(self.client.unwrap_or_default(), self.request_timeout, self.allow_private)
            .map_err(|e| Error::invalid("http client", e.to_string()))?;
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                webhooks: self.webhooks,
                client,
                request_timeout: self.request_timeout,
                response_body_limit: self.response_body_limit,
                allow_private: self.allow_private,
                on_outcome: self.on_outcome,
            }),
            concurrency: self.concurrency,
            per_endpoint: per_endpoint.min(self.concurrency),
            poll_interval: self.poll_interval,
        })
    }
}

/// Delivers the queue: a future the host runs on its own runtime and stops
/// with a [`CancellationToken`].
///
/// ```no_run
/// # use webhooks_core::{Preset, Webhooks};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run(webhooks: Webhooks) -> Result<(), webhooks_core::Error> {
/// let shutdown = CancellationToken::new();
/// let dispatcher = webhooks.dispatcher().build()?;
/// let running = tokio::spawn(dispatcher.run(shutdown.clone()));
/// // ... on SIGTERM:
/// shutdown.cancel();
/// running.await.expect("dispatcher panicked");
/// # Ok(())
/// # }
/// ```
pub struct Dispatcher {
    shared: Arc<Shared>,
    concurrency: usize,
    per_endpoint: usize,
    poll_interval: Duration,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("request_timeout", &self.shared.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What every attempt task needs.
struct Shared {
    webhooks: Webhooks,
    client: reqwest::Client,
    request_timeout: Duration,
    response_body_limit: usize,
    allow_private: bool,
    on_outcome: Option<OutcomeHook>,
}

/// The most attempt records committed in one store transaction.
const RECORD_BATCH: usize = 256;

/// How often the pending-deliveries gauge is refreshed from the store.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// An attempt waiting to be recorded, and where to hand back the result.
struct ToRecord {
    record: AttemptRecord,
    done: oneshot::Sender<(AttemptRecord, StoreResult<Recorded>)>,
}

impl Dispatcher {
    /// How long a claim is held: longer than the longest possible attempt
    /// (the request timeout bounds the whole exchange) plus time to record
    /// it, so no live attempt's delivery is handed to another worker.
    pub fn lease(&self) -> Duration {
        self.shared.request_timeout + LEASE_MARGIN
    }

    /// Delivers until `shutdown` is cancelled, then lets the attempts in
    /// flight finish and be recorded (each is bounded by the request timeout)
    /// and returns. Nothing claimed is left behind: every claim is attempted
    /// and recorded, and a failed record is retried by lease expiry.
    pub async fn run(self, shutdown: CancellationToken) {
        let webhooks = &self.shared.webhooks;
        let store = webhooks.store();
        let clock = webhooks.clock();
        let lease = chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::MAX);
        let poll = chrono::Duration::from_std(self.poll_interval).unwrap_or(chrono::Duration::MAX);
        // A store that pays per call (a commit) claims for a quarter of the
        // slots at a time and records through one recorder, in batches.
        let batches = store.prefers_batches();
        let claim_batch = if batches { (self.concurrency / 4).max(1) } else { 1 };
        let (to_record, records) = mpsc::unbounded_channel();
        let recorder = batches.then(|| tokio::spawn(record_in_batches(Arc::clone(store), records)));
        let mut in_flight = JoinSet::new();
        let mut per_endpoint: HashMap<SubscriptionId, usize> = HashMap::new();
        // Which endpoint each task in flight serves, to free its slot however
        // the task ends.
        let mut endpoints: HashMap<tokio::task::Id, SubscriptionId> = HashMap::new();
        let mut gauge_refreshed: Option<Instant> = None;
        tracing::info!(
            concurrency = self.concurrency,
            per_endpoint = self.per_endpoint,
            "dispatcher started"
        );

        while !shutdown.is_cancelled() {
            // Registered before looking at the store, so a publish that
            // lands while we look still wakes us.
            let work = webhooks.work().notified();
            tokio::pin!(work);
            work.as_mut().enable();

            if gauge_refreshed.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                gauge_refreshed = Some(Instant::now());
                match store.pending_count().await {
                    Ok(pending) => metrics::gauge!("webhooks_pending_deliveries").set(pending as f64),
                    Err(error) => tracing::warn!(%error, "store failed to count pending deliveries"),
                }
            }

            let free = self.concurrency - in_flight.len();
            let now = clock.now();
            let mut wait_until = now + poll;
            if free >= claim_batch || in_flight.is_empty() {
                // Endpoints with their share in flight wait in the queue.
                let busy: Vec<SubscriptionId> = per_endpoint
                    .iter()
                    .filter(|(_, load)| **load >= self.per_endpoint)
                    .map(|(id, _)| *id)
                    .collect();
                match store.claim_due(now, free, now + lease, &busy).await {
                    Ok(claims) => {
                        let more_due = claims.len() == free;
                        let mut over_share = Vec::new();
                        for claim in claims {
                            let load = per_endpoint.entry(claim.subscription.id).or_default();
                            if *load >= self.per_endpoint {
                                over_share.push(claim.delivery.id);
                                continue;
                            }
                            *load += 1;
                            let shared = Arc::clone(&self.shared);
                            let to_record = recorder.is_some().then(|| to_record.clone());
                            let span = attempt_span(&claim);
                            let endpoint = claim.subscription.id;
                            let lease_until = now + lease;
                            let task = in_flight.spawn(
                                async move { shared.attempt(claim, lease_until, to_record).await }
                                    .instrument(span),
                            );
                            endpoints.insert(task.id(), endpoint);
                        }
                        // More of one endpoint than its share came in one
                        // batch: back at once; the next claim passes it over.
                        if !over_share.is_empty()
                            && let Err(error) = store.release(&over_share, now).await
                        {
                            tracing::error!(%error, "store failed to release claims; their leases will end");
                        }
                        if more_due && self.concurrency - in_flight.len() >= claim_batch {
                            continue;
                        }
                        if more_due {
                            // Every slot is taken: look again when one frees.
                            wait_until = DateTime::<Utc>::MAX_UTC;
                        } else {
                            match store.next_due_at().await {
                                // Due now yet not claimed: it is a busy endpoint's,
                                // claimable when one of its attempts ends.
                                Ok(Some(due)) if due <= now => {}
                                Ok(Some(due)) => wait_until = wait_until.min(due),
                                Ok(None) => {}
                                Err(error) => {
                                    tracing::error!(%error, "store failed to tell the next due time")
                                }
                            }
                        }
                    }
                    Err(error) => tracing::error!(%error, "store failed to claim deliveries"),
                }
            } else {
                wait_until = DateTime::<Utc>::MAX_UTC;
            }

            if wait_until <= clock.now() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = &mut work => {}
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    finished(done, &mut endpoints, &mut per_endpoint);
                }
                () = clock.sleep_until(wait_until) => {}
            }
        }

        tracing::info!(in_flight = in_flight.len(), "dispatcher stopping; finishing attempts in flight");
        while let Some(done) = in_flight.join_next_with_id().await {
            finished(done, &mut endpoints, &mut per_endpoint);
        }
        drop(to_record);
        if let Some(recorder) = recorder
            && let Err(error) = recorder.await
        {
            tracing::error!(%error, "the recorder failed");
        }
        tracing::info!("dispatcher stopped");
    }
}

/// Records attempts as they come, every one queued meanwhile in the same
/// transaction: a durable store pays one commit for many attempts.
async fn record_in_batches(store: Arc<dyn Store>, mut queue: mpsc::UnboundedReceiver<ToRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let (records, done): (Vec<AttemptRecord>, Vec<_>) =
            batch.drain(..).map(|t| (t.record, t.done)).unzip();
        let results = match store.record_attempts(&records).await {
            Ok(results) if results.len() == records.len() => results,
            Ok(_) => {
                records.iter().map(|_| Err(StoreError::backend("the store recorded a short batch"))).collect()
            }
            Err(error) => {
                let message = error.to_string();
                records.iter().map(|_| Err(StoreError::backend(message.clone()))).collect()
            }
        };
        for ((record, result), done) in records.into_iter().zip(results).zip(done) {
            let _ = done.send((record, result));
        }
    }
}

fn attempt_span(claim: &Claim) -> tracing::Span {
    tracing::info_span!(
        "webhooks.attempt",
        delivery_id = %claim.delivery.id,
        subscription_id = %claim.subscription.id,
        event_type = %claim.delivery.event_type,
        attempt = claim.delivery.attempts + 1,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Frees the endpoint's slot of a finished attempt, even one whose task
/// panicked (in the host's outcome hook, say): a lost slot would stall the
/// endpoint once its share is used up.
fn finished(
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    endpoints: &mut HashMap<tokio::task::Id, SubscriptionId>,
    per_endpoint: &mut HashMap<SubscriptionId, usize>,
) {
    let task = match done {
        Ok((task, ())) => task,
        Err(error) => {
            // Its lease ends and the delivery is attempted again.
            tracing::error!(%error, "an attempt task failed");
            error.id()
        }
    };
    let Some(endpoint) = endpoints.remove(&task) else { return };
    if let Some(load) = per_endpoint.get_mut(&endpoint) {
        *load -= 1;
        if *load == 0 {
            per_endpoint.remove(&endpoint);
        }
    }
}

impl Shared {
    /// Makes one attempt and records it, all before `lease_until`.
    /// `to_record` is the recorder's queue when the store records in batches.
    async fn attempt(
        &self,
        claim: Claim,
        lease_until: DateTime<Utc>,
        to_record: Option<mpsc::UnboundedSender<ToRecord>>,
    ) {
        let Claim { delivery, subscription } = claim;
        let webhooks = &self.webhooks;
        let preset = webhooks.preset();
        let clock = webhooks.clock();
        let number = delivery.attempts + 1;

        let started_at = clock.now();
        // A claim that waited long for a busy store has less of its lease
        // left: the request gets what remains after room to record.
        let left = (lease_until - started_at).to_std().ok().and_then(|left| left.checked_sub(RECORD_MARGIN));
        let Some(timeout) = left.filter(|left| !left.is_zero()).map(|left| left.min(self.request_timeout))
        else {
            if let Err(error) = webhooks.store().release(&[delivery.id], started_at).await {
                tracing::error!(%error, "could not release a claim whose lease ran short");
            }
            return;
        };
        let message = Message {
            delivery_id: delivery.id,
            event_type: &delivery.event_type,
            body: &delivery.body,
            timestamp: started_at,
        };
        let headers = preset.scheme().headers(&message, &subscription.signing_secrets(started_at));
        let timer = Instant::now();
        let exchange = http::post(
            &self.client,
            &subscription.url,
            headers,
            delivery.body.clone(),
            timeout,
            self.response_body_limit,
            self.allow_private,
        )
        .await;
        let attempt = Attempt {
            delivery_id: delivery.id,
            number,
            started_at,
            duration: timer.elapsed(),
            result: exchange.result,
        };

        let now = clock.now();
        let retry = preset.retry();
        let verdict = if attempt.succeeded() {
            Verdict::Delivered
        } else {
            match retry.next_delay(number) {
                // A receiver's Retry-After may lengthen the wait up to the
                // policy's longest, never shorten it.
                Some(delay) => {
                    let asked = exchange.retry_after.map(|r| r.delay_from(now).min(retry.longest_delay()));
                    Verdict::Retry { at: later(now, asked.map_or(delay, |asked| asked.max(delay))) }
                }
                None => Verdict::Dropped,
            }
        };
        let gone = attempt.status() == Some(410) && preset.disable_policy().on_gone();
        let span = tracing::Span::current();
        if let Some(status) = attempt.status() {
            span.record("status", status);
        }
        span.record("duration_ms", attempt.duration.as_millis() as u64);
        span.record("outcome", verdict.as_str());

        let record = AttemptRecord {
            attempt,
            verdict,
            disable_after: preset.disable_policy().threshold(),
            disable_now: gone.then(|| "the endpoint answered 410 Gone".to_owned()),
            now,
        };
        let recorded = match to_record {
            Some(to_record) => {
                let (done, recorded) = oneshot::channel();
                match to_record.send(ToRecord { record, done }) {
                    Ok(()) => recorded.await.ok(),
                    Err(_) => None,
                }
            }
            None => {
                let result = webhooks.store().record_attempt(&record).await;
                Some((record, result))
            }
        };
        let (record, recorded) = match recorded {
            Some((record, Ok(recorded))) => (record, recorded),
            Some((_, Err(error))) => {
                // The lease runs out and the delivery is attempted again:
                // at least once, never lost.
                tracing::error!(%error, "could not record the attempt; it will be retried when its lease ends");
                return;
            }
            None => {
                tracing::error!("the recorder stopped; the attempt will be retried when its lease ends");
                return;
            }
        };
        webhooks.settled().notify_waiters();
        metrics::counter!("webhooks_attempts_total", "outcome" => verdict.as_str()).increment(1);
        metrics::histogram!("webhooks_attempt_duration_seconds", "outcome" => verdict.as_str())
            .record(record.attempt.duration.as_secs_f64());
        if recorded.disabled_subscription {
            metrics::counter!("webhooks_endpoints_disabled_total").increment(1);
        }
        match (&record.attempt.result, recorded.disabled_subscription) {
            (_, true) => tracing::warn!(failures = recorded.consecutive_failures, "endpoint disabled"),
            (AttemptResult::Error(error), _) => tracing::info!(%error, "attempt failed"),
            _ => tracing::debug!("attempt recorded"),
        }
        if let Some(hook) = &self.on_outcome {
            hook(&AttemptOutcome {
                delivery_id: delivery.id,
                subscription_id: subscription.id,
                event_type: delivery.event_type,
                attempt: record.attempt,
                verdict,
                recorded,
            });
        }
    }
}

fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
