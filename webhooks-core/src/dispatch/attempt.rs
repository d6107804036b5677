//! One attempt, stage by stage, all before its claim's lease ends:
//! [`prepare`] the claim (rules, signed request), send it, [`judge`] what
//! came back, and record the attempt with its verdict.

use std::sync::Arc;
use std::time::Duration;

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};

use super::claim::Claimed;
use super::http::{Sent, Transport};
use super::judge::judge;
use super::parts::Parts;
use super::prepare::{NotSent, Prepared, prepare};
use super::record::{About, Recorder};
use super::shares::Finished;
use crate::error::ErrorChain;
use crate::model::{Attempt, AttemptResult, Delivery};
use crate::store::{AttemptRecord, Claim, Store, Verdict};

/// What every attempt of a running dispatcher uses.
pub(super) struct Attempts {
    parts: Arc<Parts>,
    store: Arc<dyn Store>,
    transport: Transport,
    /// The longest one exchange may take.
    request_timeout: Duration,
    recorder: Recorder,
}

impl Attempts {
    pub(super) fn new(
        parts: Arc<Parts>,
        transport: Transport,
        request_timeout: Duration,
        recorder: Recorder,
    ) -> Self {
        Self { store: Arc::clone(&parts.store), parts, transport, request_timeout, recorder }
    }

    /// Whether attempts are recorded in batches, by the recorder task.
    pub(super) fn recorded_in_batches(&self) -> bool {
        self.recorder.in_batches()
    }

    /// Makes one attempt and records it (or hands it to the recorder).
    pub(super) async fn attempt(self: Arc<Self>, claimed: Claimed) {
        let Claimed { claim, lease_until, share, busy } = claimed;
        let clock = &self.parts.clock;
        let started_at = clock.now();
        let Prepared { request, rules } =
            match prepare(&self.parts, &claim, lease_until, self.request_timeout, started_at) {
                Ok(prepared) => prepared,
                Err(not_sent) => return self.give_back(&claim, not_sent, started_at).await,
            };
        let sent = self.transport.send(request).await;
        let now = clock.now();
        let judgement = judge(claim.delivery.attempts + 1, &sent, &rules, now);
        // The endpoint's share follows how it answered; the slot itself is
        // freed once the attempt is handed on.
        share.finish(match sent.result {
            AttemptResult::Response { .. } if judgement.verdict == Verdict::Delivered => {
                Finished::Answered(sent.took)
            }
            AttemptResult::Response { .. } => Finished::Failed(sent.took),
            AttemptResult::Error(_) => Finished::NoAnswer(sent.took),
        });
        let attempt = logged(&claim.delivery, started_at, sent);
        let span = tracing::Span::current();
        tell_span(&span, &attempt, judgement.verdict);
        let record = AttemptRecord {
            attempt,
            verdict: judgement.verdict,
            disable_after: rules.disable.threshold(),
            disable_now: judgement.disable_now,
            now,
        };
        let about =
            About { subscription_id: claim.subscription.id, event_type: claim.delivery.event_type, span };
        self.recorder.record(record, about, busy).await;
    }

    /// Puts back a claim that is not sent now, due again when `not_sent`
    /// says.
    async fn give_back(&self, claim: &Claim, not_sent: NotSent, now: DateTime<Utc>) {
        let failed = match &not_sent {
            NotSent::UnknownPolicy(error) => {
                metrics::counter!("webhooks_unknown_retry_policy_total").increment(1);
                tracing::error!(error = %ErrorChain(error), subscription_id = %claim.subscription.id, "delivery not attempted");
                "could not release a claim; its lease will end"
            }
            NotSent::LeaseRanShort => "could not release a claim whose lease ran short",
        };
        if let Err(error) = self.store.release(&[claim.delivery.id], not_sent.due_again(now)).await {
            tracing::error!(error = %ErrorChain(&error), "{failed}");
        }
    }
}

/// The attempt as its delivery's log keeps it.
fn logged(delivery: &Delivery, started_at: DateTime<Utc>, sent: Sent) -> Attempt {
    Attempt {
        delivery_id: delivery.id,
        cycle: delivery.cycle,
        number: delivery.attempts + 1,
        started_at,
        duration: sent.took,
        result: sent.result,
    }
}

/// The span of one attempt, its answer still to come.
pub(super) fn span(claim: &Claim) -> tracing::Span {
    tracing::info_span!(
        "webhooks.attempt",
        delivery_id = %claim.delivery.id,
        subscription_id = %claim.subscription.id,
        // The host alone: a path or a query may carry a token.
        host = %claim.subscription.url.host_str().unwrap_or_default(),
        event_type = %claim.delivery.event_type,
        attempt = claim.delivery.attempts + 1,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// Writes how the attempt went on its span.
fn tell_span(span: &tracing::Span, attempt: &Attempt, verdict: Verdict) {
    if let Some(status) = attempt.status() {
        span.record("status", status);
    }
    span.record("duration_ms", attempt.duration.as_millis() as u64);
    span.record("outcome", verdict.as_str());
}
