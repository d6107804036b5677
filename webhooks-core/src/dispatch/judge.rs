//! What an attempt's answer means, decided without I/O: delivered, retried
//! when, or dropped, and whether the endpoint is disabled at once.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::http::RetryAfter;
use crate::model::Attempt;
use crate::preset::DisablePolicy;
use crate::retry::RetryPolicy;
use crate::store::Verdict;

/// The judgement of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub(crate) verdict: Verdict,
    /// Why the endpoint is disabled at once (a `410 Gone` its rule honours).
    pub(crate) disable_now: Option<String>,
}

/// Judges `attempt` (number `attempt.number` of its cycle) by the
/// subscription's retry policy and disable rule at `now`. A 2xx delivers;
/// any other answer, or none, is retried after the policy's next wait,
/// lengthened (never shortened) by a receiver's `Retry-After` up to the
/// policy's longest wait, or dropped when the policy has no wait left.
pub(crate) fn judge(
    attempt: &Attempt,
    retry_after: Option<RetryAfter>,
    retry: &dyn RetryPolicy,
    disable: &DisablePolicy,
    now: DateTime<Utc>,
) -> Judgement {
    let verdict = if attempt.succeeded() {
        Verdict::Delivered
    } else {
        match retry.next_delay(attempt.number) {
            Some(delay) => {
                let asked = retry_after.map(|asked| asked.delay_from(now).min(retry.longest_delay()));
                Verdict::Retry { at: later(now, asked.map_or(delay, |asked| asked.max(delay))) }
            }
            None => Verdict::Dropped,
        }
    };
    let gone = attempt.status() == Some(410) && disable.on_gone();
    Judgement { verdict, disable_now: gone.then(|| "the endpoint answered 410 Gone".to_owned()) }
}

/// `now` plus `delay`, or the end of time when that overflows.
fn later(now: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptResult, DeliveryId};
    use crate::retry::Schedule;

    fn now() -> DateTime<Utc> {
        "2026-03-02T14:30:00Z".parse().unwrap()
    }

    fn attempt(number: u32, result: AttemptResult) -> Attempt {
        Attempt {
            delivery_id: DeliveryId::new(),
            cycle: 1,
            number,
            started_at: now(),
            duration: Duration::ZERO,
            result,
        }
    }

    fn status(number: u32, status: u16) -> Attempt {
        attempt(number, AttemptResult::Response { status, body: String::new() })
    }

    /// Waits of 10 s, then 60 s; the longest is 60 s.
    fn schedule() -> Schedule {
        Schedule::new([10, 60].map(Duration::from_secs)).unwrap()
    }

    fn at(seconds: i64) -> Verdict {
        Verdict::Retry { at: now() + chrono::Duration::seconds(seconds) }
    }

    fn verdict(attempt: &Attempt, retry_after: Option<RetryAfter>) -> Verdict {
        judge(attempt, retry_after, &schedule(), &DisablePolicy::after_consecutive_failures(5), now()).verdict
    }

    #[test]
    fn a_2xx_delivers_and_anything_else_is_retried_by_the_schedule_then_dropped() {
        for ok in [200, 201, 204, 299] {
            assert_eq!(verdict(&status(1, ok), None), Verdict::Delivered, "{ok}");
        }
        for failed in [100, 301, 400, 404, 429, 500, 503] {
            assert_eq!(verdict(&status(1, failed), None), at(10), "{failed}");
            assert_eq!(verdict(&status(2, failed), None), at(60), "{failed}");
            assert_eq!(verdict(&status(3, failed), None), Verdict::Dropped, "{failed}");
        }
        let refused = attempt(1, AttemptResult::Error("connection refused".into()));
        assert_eq!(verdict(&refused, None), at(10));
    }

    #[test]
    fn retry_after_lengthens_the_wait_up_to_the_longest_never_shortens_it() {
        let busy = status(1, 429);
        assert_eq!(verdict(&busy, Some(RetryAfter::Delay(Duration::from_secs(30)))), at(30));
        assert_eq!(verdict(&busy, Some(RetryAfter::Delay(Duration::from_secs(5)))), at(10), "never shorter");
        assert_eq!(verdict(&busy, Some(RetryAfter::Delay(Duration::from_secs(86_400)))), at(60), "capped");
        let date = RetryAfter::At(now() + chrono::Duration::seconds(45));
        assert_eq!(verdict(&busy, Some(date)), at(45));
        let past = RetryAfter::At(now() - chrono::Duration::seconds(45));
        assert_eq!(verdict(&busy, Some(past)), at(10));
        assert_eq!(
            verdict(&status(3, 429), Some(RetryAfter::Delay(Duration::from_secs(30)))),
            Verdict::Dropped
        );
    }

    #[test]
    fn a_410_disables_at_once_only_where_the_rule_says() {
        let gone = status(1, 410);
        let rule = DisablePolicy::after_consecutive_failures(5);
        let judged = judge(&gone, None, &schedule(), &rule, now());
        assert_eq!(judged.disable_now.as_deref(), Some("the endpoint answered 410 Gone"));
        assert_eq!(judged.verdict, at(10), "the delivery itself is retried, held while disabled");
        let kept = judge(&gone, None, &schedule(), &rule.disable_on_gone(false), now());
        assert_eq!(kept.disable_now, None);
        assert_eq!(judge(&status(1, 404), None, &schedule(), &rule, now()).disable_now, None);
    }

    #[test]
    fn a_wait_past_the_end_of_time_is_the_end_of_time() {
        assert_eq!(later(now(), Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
