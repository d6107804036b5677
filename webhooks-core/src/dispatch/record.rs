//! The record stage: an attempt and its consequences written in one store
//! step, by its worker or by a recorder task in batches, then its outcome
//! told: the waiters on settled deliveries, metrics, logs, operational
//! events and the host's hook.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::activity::{Busy, Watch};
use super::parts::Parts;
use crate::error::ErrorChain;
use crate::model::{Attempt, AttemptResult, DeliveryId, SubscriptionId};
use crate::operational::{FAILING_AFTER, OperationalEvent};
use crate::patience::while_unavailable;
use crate::store::{AttemptRecord, Recorded, Store, StoreError, StoreResult, Verdict};

/// The most attempt records committed in one store transaction.
const RECORD_BATCH: usize = 256;

/// How long recording waits out an unavailable store, within the margin
/// an attempt leaves of its lease.
const RECORD_PATIENCE: Duration = Duration::from_secs(8);

/// An attempt as recorded, handed to [`DispatcherBuilder::on_outcome`](crate::DispatcherBuilder::on_outcome).
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

impl AttemptOutcome {
    /// What became of the delivery, by name: `delivered`, `dropped`,
    /// `retrying`, or `held` when this attempt disabled its endpoint (a
    /// `410 Gone`, or failures reaching the threshold) and the delivery,
    /// still pending, waits kept until the endpoint is enabled again.
    pub fn as_str(&self) -> &'static str {
        match self.verdict {
            Verdict::Retry { .. } if self.recorded.disabled_subscription => "held",
            verdict => verdict.as_str(),
        }
    }
}

/// The host's outcome hook.
pub(super) type OutcomeHook = Arc<dyn Fn(&AttemptOutcome) + Send + Sync>;

/// Which delivery an attempt was, for its outcome.
pub(super) struct About {
    pub(super) subscription_id: SubscriptionId,
    pub(super) event_type: String,
    pub(super) span: tracing::Span,
}

/// An attempt waiting to be recorded, with what its outcome needs.
pub(super) struct ToRecord {
    record: AttemptRecord,
    about: About,
    busy: Busy,
}

/// Where attempts are recorded.
pub(super) enum Recorder {
    /// By each worker, its own attempt.
    Alone { store: Arc<dyn Store>, outcomes: Aftermath },
    /// By the recorder task, in batches: this is its queue.
    Batches(mpsc::Sender<ToRecord>),
}

impl Recorder {
    /// Records in batches when `store` prefers them, on a recorder task
    /// (returned) whose queue holds `room` records; alone otherwise.
    pub(super) fn start(
        store: Arc<dyn Store>,
        outcomes: Aftermath,
        watch: Arc<Watch>,
        room: usize,
    ) -> (Self, Option<JoinHandle<()>>) {
        if !store.prefers_batches() {
            return (Self::Alone { store, outcomes }, None);
        }
        let (to_record, queue) = mpsc::channel(room);
        let recorder = tokio::spawn(record_in_batches(store, outcomes, watch, queue));
        (Self::Batches(to_record), Some(recorder))
    }

    /// Whether the recorder task records.
    pub(super) fn in_batches(&self) -> bool {
        matches!(self, Self::Batches(_))
    }

    /// Records an attempt, or queues it for the recorder task; the claim
    /// stays `busy` until its outcome is out.
    pub(super) async fn record(&self, record: AttemptRecord, about: About, busy: Busy) {
        match self {
            Self::Batches(to_record) => {
                if to_record.send(ToRecord { record, about, busy }).await.is_err() {
                    tracing::error!("the recorder stopped; the attempt will be retried when its lease ends");
                }
            }
            Self::Alone { store, outcomes } => {
                let result =
                    while_unavailable(RECORD_PATIENCE, "recording", || store.record_attempt(&record)).await;
                outcomes.recorded(record, result, about);
                drop(busy);
            }
        }
    }
}

/// Records attempts as they come, every one queued meanwhile in the same
/// transaction: a durable store pays one commit for many attempts.
async fn record_in_batches(
    store: Arc<dyn Store>,
    outcomes: Aftermath,
    watch: Arc<Watch>,
    mut queue: mpsc::Receiver<ToRecord>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // Each stays busy until its outcome is out.
        let mut busy = Vec::with_capacity(batch.len());
        let (records, about): (Vec<AttemptRecord>, Vec<About>) = batch
            .drain(..)
            .map(|t| {
                busy.push(t.busy);
                (t.record, t.about)
            })
            .unzip();
        // A store unavailable for a moment (a restart) is waited out within
        // the leases, so the attempts are not made again.
        let results =
            match while_unavailable(RECORD_PATIENCE, "recording", || store.record_attempts(&records)).await {
                Ok(results) if results.len() == records.len() => results,
                Ok(_) => records
                    .iter()
                    .map(|_| Err(StoreError::backend("the store recorded a short batch")))
                    .collect(),
                Err(error) => {
                    let message = error.to_string();
                    records.iter().map(|_| Err(StoreError::backend(message.clone()))).collect()
                }
            };
        // Retries may be due now.
        watch.changed();
        for ((record, result), about) in records.into_iter().zip(results).zip(about) {
            let span = about.span.clone();
            span.in_scope(|| outcomes.recorded(record, result, about));
        }
        drop(busy);
    }
}

/// What follows a recorded attempt: the waiters on settled deliveries,
/// metrics, logs, operational events and the host's hook.
#[derive(Clone)]
pub(super) struct Aftermath {
    parts: Arc<Parts>,
    hooks: Option<mpsc::Sender<AttemptOutcome>>,
    /// Outcomes the hook missed because its queue was full.
    missed: Arc<AtomicUsize>,
}

impl Aftermath {
    /// Tells outcomes through `parts`, and to `hook` on a task of its own
    /// (returned), through a queue of `queue` outcomes.
    pub(super) fn start(
        parts: Arc<Parts>,
        hook: Option<OutcomeHook>,
        queue: usize,
    ) -> (Self, Option<JoinHandle<()>>) {
        let (hooks, hook_runner) = match hook {
            Some(hook) => {
                let (hooks, queue) = mpsc::channel(queue);
                (Some(hooks), Some(tokio::spawn(run_hooks(hook, queue))))
            }
            None => (None, None),
        };
        (Self { parts, hooks, missed: Arc::new(AtomicUsize::new(0)) }, hook_runner)
    }

    /// Tells what recording `record` came to.
    fn recorded(&self, record: AttemptRecord, result: StoreResult<Recorded>, about: About) {
        let recorded = match result {
            Ok(recorded) => recorded,
            Err(error) => {
                // The lease runs out and the delivery is attempted again:
                // at least once, never lost.
                tracing::error!(error = %ErrorChain(&error), "could not record the attempt; it will be retried when its lease ends");
                return;
            }
        };
        self.parts.settled.notify_waiters();
        count_attempt(record.verdict, record.attempt.duration);
        if recorded.disabled_subscription {
            metrics::counter!("webhooks_endpoints_disabled_total").increment(1);
        }
        self.tell_what_changed(&record, recorded, about.subscription_id);
        match (&record.attempt.result, recorded.disabled_subscription) {
            (_, true) => tracing::warn!(failures = recorded.consecutive_failures, "endpoint disabled"),
            (AttemptResult::Error(error), _) => tracing::info!(%error, "attempt failed"),
            _ => tracing::debug!("attempt recorded"),
        }
        self.hand_to_hook(record, recorded, about);
    }

    /// The operational events a recorded attempt makes: each comes from
    /// the one instance that recorded it. The hook hears them at once;
    /// their webhooks are published on a task of their own, off the
    /// recording path.
    fn tell_what_changed(&self, record: &AttemptRecord, recorded: Recorded, subscription_id: SubscriptionId) {
        let at = record.now;
        let mut events = Vec::new();
        if recorded.disabled_subscription {
            let reason = record
                .disable_now
                .clone()
                .unwrap_or_else(|| format!("{} consecutive failed attempts", recorded.consecutive_failures));
            events.push(OperationalEvent::EndpointDisabled { subscription_id, reason, at });
        } else if recorded.consecutive_failures == FAILING_AFTER {
            let consecutive_failures = recorded.consecutive_failures;
            events.push(OperationalEvent::EndpointFailing { subscription_id, consecutive_failures, at });
        }
        if record.verdict == Verdict::Dropped {
            let delivery_id = record.attempt.delivery_id;
            events.push(OperationalEvent::DeliveryDropped { subscription_id, delivery_id, at });
        }
        for event in &events {
            self.parts.hear(event);
        }
        if !events.is_empty() && self.parts.upkeep.publishes_operational() {
            let upkeep = Arc::clone(&self.parts.upkeep);
            tokio::spawn(async move {
                for event in events {
                    upkeep.publish_operational(event).await;
                }
            });
        }
    }

    /// Queues the outcome for the host's hook, if it gave one. Delivery
    /// never waits for the hook: what does not fit is missed.
    fn hand_to_hook(&self, record: AttemptRecord, recorded: Recorded, about: About) {
        let Some(hooks) = &self.hooks else { return };
        let sent = hooks.try_send(AttemptOutcome {
            delivery_id: record.attempt.delivery_id,
            subscription_id: about.subscription_id,
            event_type: about.event_type,
            attempt: record.attempt,
            verdict: record.verdict,
            recorded,
        });
        if let Err(mpsc::error::TrySendError::Full(outcome)) = sent {
            metrics::counter!("webhooks_outcomes_dropped_total").increment(1);
            if self.missed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    delivery_id = %outcome.delivery_id,
                    "the outcome hook is behind and its queue is full; outcomes that do not fit are not handed to it"
                );
            }
        }
    }
}

/// Counts an attempt by its outcome. The label values are literals, so the
/// keys are static and counting allocates nothing.
fn count_attempt(verdict: Verdict, duration: Duration) {
    macro_rules! count {
        ($outcome:literal) => {{
            metrics::counter!("webhooks_attempts_total", "outcome" => $outcome).increment(1);
            metrics::histogram!("webhooks_attempt_duration_seconds", "outcome" => $outcome)
                .record(duration.as_secs_f64());
        }};
    }
    match verdict {
        Verdict::Delivered => count!("delivered"),
        Verdict::Retry { .. } => count!("retrying"),
        Verdict::Dropped => count!("dropped"),
    }
}

/// Calls the host's hook with each outcome, in the order they were recorded,
/// on a task of its own: a slow hook delays later hooks, not attempts. A
/// panicking hook is logged and the next outcome is handed to it all the same.
/// One outcome out of the queue at a time, so the queue's bound is all that
/// waits; each wake-up hands on every outcome already queued.
async fn run_hooks(hook: OutcomeHook, mut queue: mpsc::Receiver<AttemptOutcome>) {
    let call = |outcome: AttemptOutcome| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&outcome))).is_err() {
            tracing::error!(delivery_id = %outcome.delivery_id, "the outcome hook panicked");
        }
    };
    while let Some(outcome) = queue.recv().await {
        call(outcome);
        while let Ok(outcome) = queue.try_recv() {
            call(outcome);
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use chrono::Utc;
    use metrics_util::debugging::DebuggingRecorder;

    use super::*;

    #[test]
    fn attempts_are_counted_under_their_verdicts_name() {
        for verdict in [Verdict::Delivered, Verdict::Retry { at: Utc::now() }, Verdict::Dropped] {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            metrics::with_local_recorder(&recorder, || count_attempt(verdict, Duration::from_millis(5)));
            let mut seen: Vec<(String, Vec<String>)> = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, ..)| {
                    let key = key.key();
                    (
                        key.name().to_owned(),
                        key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect(),
                    )
                })
                .collect();
            seen.sort();
            let label = vec![format!("outcome={}", verdict.as_str())];
            assert_eq!(
                seen,
                vec![
                    ("webhooks_attempt_duration_seconds".to_owned(), label.clone()),
                    ("webhooks_attempts_total".to_owned(), label),
                ]
            );
        }
    }
}
