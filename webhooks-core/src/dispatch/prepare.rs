//! The prepare stage: a claim made ready to send (its request signed, its
//! headers set, its time bounded by what is left of its lease, and the rules
//! its answer will be judged by), or the reason it is not sent now. No I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::http::Request;
use super::judge::Rules;
use super::parts::Parts;
use crate::error::Error;
use crate::scheme::{Message, SignatureScheme};
use crate::store::Claim;

/// What an attempt leaves of its lease for recording its outcome: the
/// request is cut short rather than let the lease run out under it.
const RECORD_MARGIN: Duration = Duration::from_secs(10);

/// How long a delivery whose subscription names a retry policy this
/// instance does not know waits before it is looked at again.
const UNKNOWN_POLICY_WAIT: Duration = Duration::from_secs(60);

/// A claim ready to send.
pub(super) struct Prepared<'a> {
    pub(super) request: Request<'a>,
    pub(super) rules: Rules,
}

/// Why a claim is not sent now: it goes back to the queue.
#[derive(Debug)]
pub(super) enum NotSent {
    /// Its subscription names a retry policy this instance does not know.
    /// Not guessed at: the delivery stays pending for an instance that
    /// knows it (or this one, once redeployed).
    UnknownPolicy(Error),
    /// Its lease has too little left for a request and its record (the
    /// claim waited long for a busy store).
    LeaseRanShort,
}

impl NotSent {
    /// When the delivery may be claimed again, seen from `now`.
    pub(super) fn due_again(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::UnknownPolicy(_) => {
                now + chrono::Duration::from_std(UNKNOWN_POLICY_WAIT).unwrap_or_default()
            }
            Self::LeaseRanShort => now,
        }
    }
}

/// Prepares `claim`, leased until `lease_until`, to be sent at `now`: by
/// its subscription's rules, signed by the preset's scheme, with at most
/// `request_timeout` for the exchange.
pub(super) fn prepare<'a>(
    parts: &Parts,
    claim: &'a Claim,
    lease_until: DateTime<Utc>,
    request_timeout: Duration,
    now: DateTime<Utc>,
) -> Result<Prepared<'a>, NotSent> {
    let Claim { delivery, subscription } = claim;
    let retry = parts.retry_for(subscription).map_err(NotSent::UnknownPolicy)?;
    let timeout = time_left(lease_until, now, request_timeout).ok_or(NotSent::LeaseRanShort)?;
    let preset = &parts.preset;
    let request = Request {
        url: &subscription.url,
        headers: sign(preset.scheme(), claim, now),
        body: delivery.body.clone(),
        timeout,
    };
    Ok(Prepared { request, rules: Rules { retry, disable: preset.disable_policy_for(subscription) } })
}

/// The time a request has: what is left of the lease after room to record,
/// at most `request_timeout`; `None` when nothing is left.
fn time_left(lease_until: DateTime<Utc>, now: DateTime<Utc>, request_timeout: Duration) -> Option<Duration> {
    let left = (lease_until - now).to_std().ok()?.checked_sub(RECORD_MARGIN)?;
    (!left.is_zero()).then(|| left.min(request_timeout))
}

/// The scheme's headers, signing the delivery at `now` with each secret the
/// subscription signs with, then the subscription's own headers.
fn sign(scheme: &dyn SignatureScheme, claim: &Claim, now: DateTime<Utc>) -> HeaderMap {
    let Claim { delivery, subscription } = claim;
    let message = Message {
        delivery_id: delivery.id,
        event_type: &delivery.event_type,
        body: &delivery.body,
        timestamp: now,
    };
    let mut headers = scheme.headers(&message, &subscription.signing_secrets(now));
    // The subscription's own headers, checked when it was saved never to
    // name one the scheme sets; one the scheme sets only sometimes (a
    // custom scheme) still never gets a second value.
    for header in &subscription.settings.headers {
        if !headers.contains_key(header.header_name()) {
            headers.insert(header.header_name().clone(), header.header_value().clone());
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_461_800 + seconds, 0).unwrap()
    }

    #[test]
    fn a_request_has_what_the_lease_leaves_after_room_to_record_at_most_the_timeout() {
        let timeout = Duration::from_secs(15);
        assert_eq!(time_left(at(25), at(0), timeout), Some(timeout), "a fresh lease");
        assert_eq!(time_left(at(25), at(20), timeout), None, "5 s left, less than the margin");
        assert_eq!(time_left(at(25), at(15), timeout), None, "exactly the margin");
        assert_eq!(time_left(at(25), at(12), timeout), Some(Duration::from_secs(3)));
        assert_eq!(time_left(at(25), at(30), timeout), None, "a lease already over");
    }
}
