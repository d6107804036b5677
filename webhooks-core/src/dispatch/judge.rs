//! The judge stage: what an attempt's answer means, decided without I/O:
//! delivered, retried when, or dropped, and whether the endpoint is disabled
//! at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::RETRY_AFTER;

use super::http::Sent;
use crate::preset::DisablePolicy;
use crate::retry::RetryPolicy;
use crate::store::Verdict;

/// The rules an answer is judged by: its subscription's.
pub(super) struct Rules {
    /// How long to wait before the next attempt, and when to stop.
    pub(super) retry: Arc<dyn RetryPolicy>,
    /// How many failures disable the endpoint, and whether a `410 Gone`
    /// does at once.
    pub(super) disable: DisablePolicy,
}

/// The judgement of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Judgement {
    pub(super) verdict: Verdict,
    /// Why the endpoint is disabled at once (a `410 Gone` its rule honours).
    pub(super) disable_now: Option<String>,
}

/// Judges attempt `number` of its cycle, which came to `sent`, by `rules`
/// at `now`. A 2xx delivers; any other answer, or none, is retried after the
/// policy's next wait, lengthened (never shortened) by the `Retry-After` of
/// a 429 or a 503 up to the policy's longest wait, or dropped when the
/// policy has no wait left.
pub(super) fn judge(number: u32, sent: &Sent, rules: &Rules, now: DateTime<Utc>) -> Judgement {
    let status = sent.status();
    let verdict = if matches!(status, Some(200..=299)) {
        Verdict::Delivered
    } else {
        match rules.retry.next_delay(number) {
            Some(delay) => {
                let asked = retry_after(status, &sent.headers)
                    .map(|asked| asked.delay_from(now).min(rules.retry.longest_delay()));
                Verdict::Retry { at: later(now, asked.map_or(delay, |asked| asked.max(delay))) }
            }
            None => Verdict::Dropped,
        }
    };
    let gone = status == Some(410) && rules.disable.on_gone();
    Judgement { verdict, disable_now: gone.then(|| "the endpoint answered 410 Gone".to_owned()) }
}

/// When a receiver asked to be retried: the `Retry-After` of a 429 or a 503,
/// and of no other answer.
fn retry_after(status: Option<u16>, headers: &HeaderMap) -> Option<RetryAfter> {
    match status {
        Some(429 | 503) => headers.get(RETRY_AFTER)?.to_str().ok().and_then(RetryAfter::parse),
        _ => None,
    }
}

/// What a `Retry-After` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RetryAfter {
    /// After this long.
    Delay(Duration),
    /// At this time.
    At(DateTime<Utc>),
}

impl RetryAfter {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Self::Delay(Duration::from_secs(seconds)));
        }
        // An HTTP date in any of the three formats RFC 9110 (5.6.7) says a
        // recipient must accept: IMF-fixdate, RFC 850 and asctime.
        let at = httpdate::parse_http_date(value).ok()?;
        Some(Self::At(DateTime::<Utc>::from(at)))
    }

    /// The wait it asks for, seen from `now`.
    fn delay_from(self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Delay(delay) => delay,
            Self::At(at) => (at - now).to_std().unwrap_or_default(),
        }
    }
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
    use http::HeaderValue;

    use super::*;
    use crate::model::AttemptResult;
    use crate::retry::Schedule;

    /// Monday 2 March 2026, 14:30:00 UTC.
    fn now() -> DateTime<Utc> {
        "2026-03-02T14:30:00Z".parse().unwrap()
    }

    /// An answer with `status` and `headers`.
    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Sent {
        let headers = headers
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_static(value)))
            .collect();
        Sent {
            result: AttemptResult::Response { status, body: String::new() },
            headers,
            took: Duration::from_millis(20),
        }
    }

    /// No answer: a refused connection, a reset, a timeout.
    fn no_answer(error: &str) -> Sent {
        Sent {
            result: AttemptResult::Error(error.to_owned()),
            headers: HeaderMap::new(),
            took: Duration::ZERO,
        }
    }

    /// Waits of 10 s, then 60 s; the longest is 60 s. Five failures disable;
    /// so does a 410.
    fn rules() -> Rules {
        Rules {
            retry: Arc::new(Schedule::new([10, 60].map(Duration::from_secs)).unwrap()),
            disable: DisablePolicy::after_consecutive_failures(5),
        }
    }

    fn verdict(number: u32, sent: &Sent) -> Verdict {
        judge(number, sent, &rules(), now()).verdict
    }

    fn retry_in(seconds: i64) -> Verdict {
        Verdict::Retry { at: now() + chrono::Duration::seconds(seconds) }
    }

    #[test]
    fn a_2xx_delivers_whatever_the_attempt_and_whatever_else_it_says() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(verdict(1, &answer(status, &[])), Verdict::Delivered, "{status}");
            assert_eq!(verdict(3, &answer(status, &[])), Verdict::Delivered, "{status}, past the schedule");
        }
        let with_retry_after = answer(200, &[("retry-after", "120")]);
        assert_eq!(
            judge(1, &with_retry_after, &rules(), now()),
            Judgement { verdict: Verdict::Delivered, disable_now: None }
        );
    }

    #[test]
    fn redirects_are_failures_retried_by_the_schedule_then_dropped() {
        for status in [301, 302, 303, 307, 308] {
            let redirect = answer(status, &[("location", "https://elsewhere.example/")]);
            assert_eq!(verdict(1, &redirect), retry_in(10), "{status}");
            assert_eq!(verdict(2, &redirect), retry_in(60), "{status}");
            assert_eq!(verdict(3, &redirect), Verdict::Dropped, "{status}");
        }
    }

    #[test]
    fn client_and_server_errors_are_retried_by_the_schedule_then_dropped() {
        for status in [100, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504] {
            assert_eq!(verdict(1, &answer(status, &[])), retry_in(10), "{status}");
            assert_eq!(verdict(2, &answer(status, &[])), retry_in(60), "{status}");
            assert_eq!(verdict(3, &answer(status, &[])), Verdict::Dropped, "{status}");
            assert_eq!(judge(1, &answer(status, &[]), &rules(), now()).disable_now, None, "{status}");
        }
    }

    #[test]
    fn no_answer_is_a_failure_retried_by_the_schedule_then_dropped() {
        for error in
            ["connection failed: Connection refused", "timed out after 15000 ms", "refused: not public"]
        {
            assert_eq!(verdict(1, &no_answer(error)), retry_in(10), "{error}");
            assert_eq!(verdict(2, &no_answer(error)), retry_in(60), "{error}");
            assert_eq!(verdict(3, &no_answer(error)), Verdict::Dropped, "{error}");
            assert_eq!(judge(1, &no_answer(error), &rules(), now()).disable_now, None, "{error}");
        }
    }

    #[test]
    fn a_429_retry_after_in_seconds_lengthens_the_wait_up_to_the_longest_never_shortens_it() {
        let asks = |seconds: &'static str| answer(429, &[("retry-after", seconds)]);
        assert_eq!(verdict(1, &asks("30")), retry_in(30));
        assert_eq!(verdict(1, &asks(" 30 ")), retry_in(30), "whitespace around the value");
        assert_eq!(verdict(1, &asks("5")), retry_in(10), "never shorter than the schedule");
        assert_eq!(verdict(1, &asks("0")), retry_in(10));
        assert_eq!(verdict(1, &asks("86400")), retry_in(60), "capped at the longest wait");
        assert_eq!(verdict(3, &asks("30")), Verdict::Dropped, "no wait left: asking changes nothing");
    }

    #[test]
    fn a_429_retry_after_as_an_http_date_is_a_time_from_now() {
        let asks = |date: &'static str| answer(429, &[("retry-after", date)]);
        // 45 s after now, in each of the three formats a recipient must accept.
        for date in
            ["Mon, 02 Mar 2026 14:30:45 GMT", "Monday, 02-Mar-26 14:30:45 GMT", "Mon Mar  2 14:30:45 2026"]
        {
            assert_eq!(verdict(1, &asks(date)), retry_in(45), "{date}");
        }
        assert_eq!(verdict(1, &asks("Mon, 02 Mar 2026 14:29:15 GMT")), retry_in(10), "a past date");
        assert_eq!(verdict(1, &asks("Tue, 03 Mar 2026 14:30:00 GMT")), retry_in(60), "a day away, capped");
    }

    #[test]
    fn a_503_retry_after_counts_too() {
        assert_eq!(verdict(1, &answer(503, &[("retry-after", "30")])), retry_in(30));
        assert_eq!(
            verdict(1, &answer(503, &[("retry-after", "Mon, 02 Mar 2026 14:30:45 GMT")])),
            retry_in(45)
        );
    }

    #[test]
    fn retry_after_on_any_other_answer_or_unreadable_is_ignored() {
        for status in [400, 404, 410, 500, 502, 504] {
            assert_eq!(verdict(1, &answer(status, &[("retry-after", "30")])), retry_in(10), "{status}");
        }
        for unreadable in ["soon", "-5", "30s", "1.5", ""] {
            assert_eq!(
                verdict(1, &answer(429, &[("retry-after", unreadable)])),
                retry_in(10),
                "{unreadable:?}"
            );
        }
        let not_text = Sent {
            headers: [(RETRY_AFTER, HeaderValue::from_bytes(b"\xff30").unwrap())].into_iter().collect(),
            ..answer(429, &[])
        };
        assert_eq!(verdict(1, &not_text), retry_in(10), "a value that is not text");
    }

    #[test]
    fn a_410_disables_at_once_only_where_the_rule_says_and_the_delivery_is_held() {
        let gone = answer(410, &[]);
        let judged = judge(1, &gone, &rules(), now());
        assert_eq!(judged.disable_now.as_deref(), Some("the endpoint answered 410 Gone"));
        assert_eq!(judged.verdict, retry_in(10), "the delivery itself is retried, held while disabled");
        let past_the_schedule = judge(3, &gone, &rules(), now());
        assert_eq!(past_the_schedule.verdict, Verdict::Dropped);
        assert!(past_the_schedule.disable_now.is_some(), "disabled even when the delivery is dropped");
        let kept = Rules { disable: rules().disable.disable_on_gone(false), ..rules() };
        assert_eq!(judge(1, &gone, &kept, now()).disable_now, None);
        let never_on_failures = Rules { disable: DisablePolicy::never(), ..rules() };
        assert!(judge(1, &gone, &never_on_failures, now()).disable_now.is_some(), "a 410 still disables");
    }

    #[test]
    fn a_wait_past_the_end_of_time_is_the_end_of_time() {
        assert_eq!(later(now(), Duration::MAX), DateTime::<Utc>::MAX_UTC);
        let forever = Rules { retry: Arc::new(Schedule::new([Duration::MAX]).unwrap()), ..rules() };
        assert_eq!(
            judge(1, &answer(500, &[]), &forever, now()).verdict,
            Verdict::Retry { at: DateTime::<Utc>::MAX_UTC }
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(RetryAfter::parse("120"), Some(RetryAfter::Delay(Duration::from_secs(120))));
        let at = RetryAfter::parse("Mon, 02 Mar 2026 14:35:00 GMT").unwrap();
        assert_eq!(at.delay_from(now()), Duration::from_secs(300));
        assert_eq!(
            at.delay_from(now() + chrono::Duration::hours(1)),
            Duration::ZERO,
            "a past date asks for no wait"
        );
        for obsolete in ["Monday, 02-Mar-26 14:35:00 GMT", "Mon Mar  2 14:35:00 2026"] {
            assert_eq!(RetryAfter::parse(obsolete), Some(at), "{obsolete}");
        }
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
    }
}
