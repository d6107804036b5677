//! The rules for recording an attempt, in one place: a pure function from
//! an attempt and what it needs of the current state to the changes a store
//! writes. Stores read [`Current`] and write [`Changes`] in one step; they
//! decide nothing.

use chrono::{DateTime, Utc};

use crate::model::{Attempt, DeliveryState};

/// What happens to a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledged; no more attempts.
    Delivered,
    /// Failed; try again at this time.
    Retry {
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// Failed, and the retry policy gives up; kept with its log.
    Dropped,
}

impl Verdict {
    /// `delivered`, `retrying` or `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry { .. } => "retrying",
            Self::Dropped => "dropped",
        }
    }
}

/// An attempt and its consequences as the dispatcher judged them: the
/// verdict from the retry policy and the preset's disable rule. A store
/// turns it into [`Changes`] with [`AttemptRecord::changes`].
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// The attempt for the log.
    pub attempt: Attempt,
    /// The delivery's next state.
    pub verdict: Verdict,
    /// Disable the subscription when its consecutive failures reach this.
    pub disable_after: Option<u32>,
    /// Disable the subscription at once with this reason, whatever its
    /// failure count (a receiver that answered `410 Gone`).
    pub disable_now: Option<String>,
    /// Now, for the time of a disable and of a finish.
    pub now: DateTime<Utc>,
}

/// What recording an attempt needs of the state it changes, as the store
/// reads it in the step that writes the changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    /// The delivery's state.
    pub state: DeliveryState,
    /// The attempts the delivery has had in its cycle.
    pub attempts: u32,
    /// The delivery's cycle: an attempt of an earlier one (made before a
    /// resend) is logged but changes nothing of the delivery.
    pub cycle: u32,
    /// The subscription's failed attempts in a row.
    pub consecutive_failures: u32,
    /// Whether the subscription is enabled.
    pub enabled: bool,
    /// Whether the subscription delivers in order, one delivery at a time.
    pub ordered: bool,
}

/// A delivery's columns after an attempt; its lease ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextState {
    /// Pending, delivered or dropped.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due; `None` once finished.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered or dropped; what retention goes by.
    pub finished_at: Option<DateTime<Utc>>,
}

/// What one attempt changes. Besides these, the attempt is always appended
/// to its delivery's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes {
    /// The delivery's new columns; `None` when it was no longer pending
    /// (a late attempt after a resend or a finish): it keeps its state.
    pub delivery: Option<NextState>,
    /// The subscription's failed attempts in a row after this one.
    pub consecutive_failures: u32,
    /// Disable the subscription, holding its pending deliveries, with this
    /// reason.
    pub disable: Option<String>,
    /// The delivery finished and its subscription is ordered: the store
    /// makes the subscription's earliest waiting delivery (by id, which is
    /// publish order) due at `now`, in the same step, unless another of its
    /// pending deliveries is not waiting (that one goes first).
    pub release_next: bool,
}

impl Changes {
    /// What the attempt did to the subscription, as the dispatcher reports it.
    pub fn recorded(&self) -> Recorded {
        Recorded {
            consecutive_failures: self.consecutive_failures,
            disabled_subscription: self.disable.is_some(),
        }
    }
}

/// What recording an attempt did to the subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The subscription's failed attempts in a row after this one.
    pub consecutive_failures: u32,
    /// Whether this attempt disabled the subscription.
    pub disabled_subscription: bool,
}

impl AttemptRecord {
    /// The changes this attempt makes to a delivery and its subscription in
    /// the state `current`:
    ///
    /// - a pending delivery takes the verdict (delivered, retry at a time, or
    ///   dropped), its attempt count never going down; any other keeps its
    ///   state, and so does one whose cycle is not the attempt's (a late
    ///   attempt from before a resend);
    /// - a delivery of an ordered subscription that finishes (delivered or
    ///   dropped) lets the next one go;
    /// - a success resets the subscription's failure count, a failure adds
    ///   one;
    /// - an enabled subscription is disabled when the record says so at
    ///   once (`410 Gone`) or when its failures reach the threshold.
    ///
    /// ```
    /// use chrono::Utc;
    /// use std::time::Duration;
    /// use webhooks_core::{Attempt, AttemptRecord, AttemptResult, Current, DeliveryId, DeliveryState, Verdict};
    ///
    /// let now = Utc::now();
    /// let failed = AttemptRecord {
    ///     attempt: Attempt {
    ///         delivery_id: DeliveryId::new(),
    ///         cycle: 1,
    ///         number: 3,
    ///         started_at: now,
    ///         duration: Duration::from_millis(40),
    ///         result: AttemptResult::Response { status: 500, body: String::new() },
    ///     },
    ///     verdict: Verdict::Dropped,
    ///     disable_after: Some(3),
    ///     disable_now: None,
    ///     now,
    /// };
    /// let current = Current {
    ///     state: DeliveryState::Pending,
    ///     attempts: 2,
    ///     cycle: 1,
    ///     consecutive_failures: 2,
    ///     enabled: true,
    ///     ordered: true,
    /// };
    /// let changes = failed.changes(current);
    /// assert_eq!(changes.delivery.unwrap().state, DeliveryState::Dropped);
    /// assert!(changes.release_next, "the next delivery of an ordered subscription may go");
    /// assert_eq!(changes.consecutive_failures, 3);
    /// assert_eq!(changes.disable.as_deref(), Some("3 consecutive failed attempts"));
    /// ```
    pub fn changes(&self, current: Current) -> Changes {
        let in_cycle = current.state == DeliveryState::Pending && current.cycle == self.attempt.cycle;
        let delivery = in_cycle.then(|| {
            let attempts = current.attempts.max(self.attempt.number);
            let (state, next_attempt_at, finished_at) = match self.verdict {
                Verdict::Delivered => (DeliveryState::Delivered, None, Some(self.now)),
                Verdict::Dropped => (DeliveryState::Dropped, None, Some(self.now)),
                Verdict::Retry { at } => (DeliveryState::Pending, Some(at), None),
            };
            NextState { state, attempts, next_attempt_at, finished_at }
        });
        let consecutive_failures =
            if self.attempt.succeeded() { 0 } else { current.consecutive_failures.saturating_add(1) };
        let disable = match (&self.disable_now, self.disable_after) {
            _ if !current.enabled => None,
            (Some(reason), _) => Some(reason.clone()),
            (None, Some(limit)) if consecutive_failures >= limit => {
                Some(format!("{consecutive_failures} consecutive failed attempts"))
            }
            _ => None,
        };
        let release_next =
            current.ordered && delivery.is_some_and(|next| next.state != DeliveryState::Pending);
        Changes { delivery, consecutive_failures, disable, release_next }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{AttemptResult, DeliveryId};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
    }

    fn record(status: Option<u16>, number: u32, verdict: Verdict) -> AttemptRecord {
        AttemptRecord {
            attempt: Attempt {
                delivery_id: DeliveryId::new(),
                cycle: 1,
                number,
                started_at: at(0),
                duration: Duration::from_millis(5),
                result: match status {
                    Some(status) => AttemptResult::Response { status, body: String::new() },
                    None => AttemptResult::Error("connection refused".into()),
                },
            },
            verdict,
            disable_after: None,
            disable_now: None,
            now: at(1),
        }
    }

    /// A pending delivery of the first cycle with no attempts yet, of an
    /// enabled, unordered subscription with no failures.
    fn pending() -> Current {
        Current {
            state: DeliveryState::Pending,
            attempts: 0,
            cycle: 1,
            consecutive_failures: 0,
            enabled: true,
            ordered: false,
        }
    }

    const STATES: [DeliveryState; 3] =
        [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Dropped];

    /// Every combination of state, attempt counts, failure counts near the
    /// threshold, enabled or not, result, verdict and disable rule, checked
    /// against the rules as the docs state them.
    #[test]
    fn every_combination_follows_the_rules() {
        let statuses = [Some(200), Some(204), Some(299), Some(300), Some(410), Some(500), None];
        let verdicts = [Verdict::Delivered, Verdict::Retry { at: at(60) }, Verdict::Dropped];
        let mut checked = 0;
        for state in STATES {
            for attempts in [0, 1, 4, 5, u32::MAX] {
                for number in [1, 5, 6] {
                    for failures in [0, 2, 3, 4, u32::MAX] {
                        for enabled in [true, false] {
                            for status in statuses {
                                for verdict in verdicts {
                                    for disable_after in [None, Some(1), Some(3), Some(4)] {
                                        for gone in [false, true] {
                                            let mut record = record(status, number, verdict);
                                            record.disable_after = disable_after;
                                            record.disable_now = gone.then(|| "410 Gone".to_owned());
                                            let current = Current {
                                                state,
                                                attempts,
                                                cycle: 1,
                                                consecutive_failures: failures,
                                                enabled,
                                                ordered: enabled,
                                            };
                                            check(&record, current, record.changes(current));
                                            checked += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 5 * 3 * 5 * 2 * 7 * 3 * 4 * 2);
    }

    fn check(record: &AttemptRecord, current: Current, changes: Changes) {
        let succeeded = matches!(record.attempt.status(), Some(200..=299));
        match changes.delivery {
            None => {
                assert_ne!(current.state, DeliveryState::Pending);
                assert!(!changes.release_next);
            }
            Some(next) => {
                assert_eq!(changes.release_next, current.ordered && next.state != DeliveryState::Pending);
                assert_eq!(current.state, DeliveryState::Pending);
                assert_eq!(next.attempts, current.attempts.max(record.attempt.number));
                match record.verdict {
                    Verdict::Delivered => {
                        assert_eq!((next.state, next.next_attempt_at), (DeliveryState::Delivered, None));
                        assert_eq!(next.finished_at, Some(record.now));
                    }
                    Verdict::Dropped => {
                        assert_eq!((next.state, next.next_attempt_at), (DeliveryState::Dropped, None));
                        assert_eq!(next.finished_at, Some(record.now));
                    }
                    Verdict::Retry { at } => {
                        assert_eq!((next.state, next.next_attempt_at), (DeliveryState::Pending, Some(at)));
                        assert_eq!(next.finished_at, None);
                    }
                }
            }
        }
        let failures = if succeeded { 0 } else { current.consecutive_failures.saturating_add(1) };
        assert_eq!(changes.consecutive_failures, failures);
        let expected = if !current.enabled {
            None
        } else if let Some(reason) = &record.disable_now {
            Some(reason.clone())
        } else {
            record
                .disable_after
                .filter(|limit| failures >= *limit)
                .map(|_| format!("{failures} consecutive failed attempts"))
        };
        assert_eq!(changes.disable, expected);
        assert_eq!(changes.recorded().disabled_subscription, expected.is_some());
    }

    #[test]
    fn the_threshold_disables_exactly_once_reached() {
        let mut record = record(Some(500), 1, Verdict::Retry { at: at(60) });
        record.disable_after = Some(10);
        let current = |failures| Current { consecutive_failures: failures, ..pending() };
        assert_eq!(record.changes(current(8)).disable, None);
        assert_eq!(record.changes(current(9)).disable.as_deref(), Some("10 consecutive failed attempts"));
        assert_eq!(record.changes(current(u32::MAX)).consecutive_failures, u32::MAX);
    }

    #[test]
    fn a_success_never_disables_without_a_reason_given() {
        let mut record = record(Some(200), 2, Verdict::Delivered);
        record.disable_after = Some(1);
        let current = Current { attempts: 1, consecutive_failures: 7, ..pending() };
        let changes = record.changes(current);
        assert_eq!(changes.consecutive_failures, 0);
        assert_eq!(changes.disable, None);
    }

    #[test]
    fn an_attempt_of_an_earlier_cycle_changes_nothing_of_the_delivery() {
        let late = record(Some(200), 3, Verdict::Delivered);
        let current = Current { cycle: 2, consecutive_failures: 1, ordered: true, ..pending() };
        let changes = late.changes(current);
        assert_eq!(changes.delivery, None, "the resent cycle keeps its state");
        assert!(!changes.release_next, "nothing finished");
        assert_eq!(changes.consecutive_failures, 0, "the endpoint did answer");
    }

    #[test]
    fn only_a_finished_delivery_of_an_ordered_subscription_releases_the_next() {
        let current = |ordered| Current { ordered, ..pending() };
        assert!(record(Some(200), 1, Verdict::Delivered).changes(current(true)).release_next);
        assert!(record(Some(500), 1, Verdict::Dropped).changes(current(true)).release_next);
        assert!(!record(Some(500), 1, Verdict::Retry { at: at(9) }).changes(current(true)).release_next);
        assert!(!record(Some(200), 1, Verdict::Delivered).changes(current(false)).release_next);
    }
}
