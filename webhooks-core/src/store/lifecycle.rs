//! The rules for a delivery's life besides its attempts, in one place: where
//! a new delivery starts, what disabling and enabling a subscription do to
//! its deliveries, a new cycle on resend and recovery, how an ordered
//! subscription's deliveries line up and which one goes next, and how many
//! held deliveries a disabled subscription keeps.
//!
//! Each rule is a pure function of what a store reads to the values it
//! writes, as [`AttemptRecord::changes`](super::AttemptRecord::changes) is
//! for attempts. A store reads a subscription's [`Standing`], calls the
//! rule and writes what it returns in the same step; an SQL store binds the
//! returned values to its statements. A store decides nothing.
//!
//! Two facts every store keeps true, and the rules rely on: a delivery is
//! held exactly when it is pending and its subscription is disabled; and an
//! ordered subscription has at most one pending delivery that is not
//! waiting.

use chrono::{DateTime, Utc};

use crate::model::{DeliveryId, DeliveryState, Subscription, SubscriptionStatus};

/// What the lifecycle rules read of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// Whether it is enabled; a disabled one's pending deliveries are held.
    pub enabled: bool,
    /// Whether it delivers in order, one delivery at a time.
    pub ordered: bool,
}

/// Where a new delivery starts, as [`Standing::placement`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Held until the subscription is enabled.
    pub held: bool,
    /// Stored waiting if the subscription has a pending delivery already
    /// (one the store finds in the step that inserts this one): see
    /// [`Placement::waiting`].
    pub waits_behind_pending: bool,
}

impl Placement {
    /// Whether the new delivery is stored waiting, given whether its
    /// subscription has a pending delivery already.
    pub fn waiting(self, has_pending: bool) -> bool {
        self.waits_behind_pending && has_pending
    }
}

/// What disabling a subscription writes, as [`Standing::disabling`]
/// decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disabling {
    /// The subscription's new status.
    pub status: SubscriptionStatus,
    /// Hold every pending delivery of it: none is claimed until it is
    /// enabled.
    pub hold_pending: bool,
}

/// What enabling a subscription writes, as [`Standing::enabling`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enabling {
    /// The subscription's failed attempts in a row: a fresh start.
    pub consecutive_failures: u32,
    /// The held deliveries are let go, each due at [`Enabling::due`]:
    /// its own time, or this one if its own is later. `None` when the
    /// subscription was enabled already: nothing is held, and retries keep
    /// their schedule.
    pub release_held_by: Option<DateTime<Utc>>,
}

impl Enabling {
    /// When a held delivery due at `due` becomes due once released: by the
    /// time of the enable at the latest. A retry scheduled for later does
    /// not wait out its backoff: the endpoint was just said to be back.
    pub fn due(self, due: DateTime<Utc>) -> DateTime<Utc> {
        self.release_held_by.map_or(due, |by| due.min(by))
    }
}

/// A new attempt cycle for a delivery (a resend or a recovery): pending,
/// due at once, no attempts yet, no lease, not finished, not waiting until
/// an ordered subscription's deliveries are put back in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCycle {
    /// When the delivery is due.
    pub due: DateTime<Utc>,
    /// Whether it is held: its subscription is disabled.
    pub held: bool,
}

impl NewCycle {
    /// The attempt count a new cycle starts from.
    pub const ATTEMPTS: u32 = 0;

    /// The cycle number after `cycle`: an attempt of the old one, recorded
    /// late, changes nothing of the delivery.
    pub fn cycle_after(cycle: u32) -> u32 {
        cycle.saturating_add(1)
    }
}

/// What resending one delivery writes, as [`Standing::resend`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resend {
    /// The delivery's new cycle.
    pub cycle: NewCycle,
    /// Put the subscription's pending deliveries back in order
    /// ([`in_order`]) afterwards: the resent one takes its place by id.
    pub put_in_order: bool,
}

/// What recovering a subscription writes, as [`Standing::recovery`]
/// decides: it is enabled, and the deliveries [`Recovery::restarts`] picks
/// start a new cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The new cycle of every delivery it restarts; none is held, as the
    /// subscription is enabled in the same step.
    pub cycle: NewCycle,
    /// Restart the deliveries dropped whose events occurred at or after
    /// this time.
    pub dropped_since: DateTime<Utc>,
    /// Restart the held deliveries too (the subscription was disabled).
    pub restart_held: bool,
    /// What enabling writes to the subscription and its other deliveries.
    pub enabling: Enabling,
    /// Put the subscription's pending deliveries back in order afterwards.
    pub put_in_order: bool,
}

impl Recovery {
    /// Whether a delivery in `state`, of an event that occurred at
    /// `occurred_at`, starts a new cycle.
    pub fn restarts(&self, state: DeliveryState, occurred_at: DateTime<Utc>) -> bool {
        match state {
            DeliveryState::Dropped => occurred_at >= self.dropped_since,
            DeliveryState::Pending | DeliveryState::Held => self.restart_held,
            DeliveryState::Delivered => false,
        }
    }
}

impl Standing {
    /// `subscription`'s standing.
    pub fn of(subscription: &Subscription) -> Self {
        Self { enabled: subscription.is_enabled(), ordered: subscription.settings.ordered }
    }

    /// Where a new delivery to this subscription starts: held while it is
    /// disabled; behind any pending delivery while it is ordered.
    ///
    /// ```
    /// use webhooks_core::Standing;
    ///
    /// let paused_and_ordered = Standing { enabled: false, ordered: true };
    /// let placement = paused_and_ordered.placement();
    /// assert!(placement.held);
    /// assert!(placement.waiting(true) && !placement.waiting(false));
    /// ```
    pub fn placement(self) -> Placement {
        Placement { held: !self.enabled, waits_behind_pending: self.ordered }
    }

    /// Disabling, whatever the standing: the status says why and since
    /// when, and every pending delivery is held. Disabling a disabled
    /// subscription writes the new reason.
    pub fn disabling(self, reason: &str, now: DateTime<Utc>) -> Disabling {
        Disabling {
            status: SubscriptionStatus::Disabled { reason: reason.to_owned(), at: now },
            hold_pending: true,
        }
    }

    /// Enabling: the failure count starts over, and what was held is due
    /// by `now` at the latest.
    ///
    /// ```
    /// use chrono::{TimeDelta, Utc};
    /// use webhooks_core::Standing;
    ///
    /// let now = Utc::now();
    /// let enabling = Standing { enabled: false, ordered: false }.enabling(now);
    /// let (before, after) = (now - TimeDelta::hours(1), now + TimeDelta::hours(1));
    /// assert_eq!(enabling.due(before), before, "due already: it goes at once");
    /// assert_eq!(enabling.due(after), now, "a retry held for later goes now too");
    /// ```
    pub fn enabling(self, now: DateTime<Utc>) -> Enabling {
        Enabling { consecutive_failures: 0, release_held_by: (!self.enabled).then_some(now) }
    }

    /// Resending one delivery: a new cycle due at `now`, held if the
    /// subscription is disabled, in its place among an ordered one's.
    pub fn resend(self, now: DateTime<Utc>) -> Resend {
        Resend { cycle: NewCycle { due: now, held: !self.enabled }, put_in_order: self.ordered }
    }

    /// Recovering: the subscription is enabled; its deliveries dropped
    /// since `since` start a new cycle due at `now`, and so do its held
    /// ones if it was disabled.
    ///
    /// ```
    /// use chrono::{TimeDelta, Utc};
    /// use webhooks_core::{DeliveryState, Standing};
    ///
    /// let now = Utc::now();
    /// let since = now - TimeDelta::days(1);
    /// let recovery = Standing { enabled: false, ordered: false }.recovery(since, now);
    /// assert!(recovery.restarts(DeliveryState::Pending, since - TimeDelta::days(9)), "held, so restarted");
    /// assert!(recovery.restarts(DeliveryState::Dropped, since));
    /// assert!(!recovery.restarts(DeliveryState::Dropped, since - TimeDelta::seconds(1)));
    /// assert!(!recovery.restarts(DeliveryState::Delivered, now));
    /// ```
    pub fn recovery(self, since: DateTime<Utc>, now: DateTime<Utc>) -> Recovery {
        Recovery {
            cycle: NewCycle { due: now, held: false },
            dropped_since: since,
            restart_held: !self.enabled,
            enabling: self.enabling(now),
            put_in_order: self.ordered,
        }
    }
}

/// What changing whether a subscription is ordered does to its deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reordering {
    /// Ordering turned on: its pending deliveries are put in order
    /// ([`in_order`]).
    PutInOrder,
    /// Ordering turned off: every waiting delivery goes, each due when it
    /// was (its publish time or its retry time).
    ReleaseAll,
}

impl Reordering {
    /// What a change from `was_ordered` to `ordered` does; `None` when it
    /// is no change.
    pub fn between(was_ordered: bool, ordered: bool) -> Option<Self> {
        match (was_ordered, ordered) {
            (false, true) => Some(Self::PutInOrder),
            (true, false) => Some(Self::ReleaseAll),
            _ => None,
        }
    }
}

/// An ordered subscription's pending deliveries in order: each with whether
/// it waits. The earliest by id (publish order) goes; the others wait.
///
/// ```
/// use webhooks_core::{DeliveryId, in_order};
///
/// let (first, second) = (DeliveryId::new(), DeliveryId::new());
/// assert_eq!(in_order([second, first]), vec![(first, false), (second, true)]);
/// ```
pub fn in_order(pending: impl IntoIterator<Item = DeliveryId>) -> Vec<(DeliveryId, bool)> {
    let mut pending: Vec<DeliveryId> = pending.into_iter().collect();
    pending.sort_unstable();
    pending.dedup();
    pending.into_iter().enumerate().map(|(place, id)| (id, place > 0)).collect()
}

/// The waiting delivery an ordered subscription lets go, and when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Released {
    /// The delivery: no longer waiting, its lease cleared.
    pub delivery: DeliveryId,
    /// When it is due.
    pub due: DateTime<Utc>,
}

/// Which waiting delivery an ordered subscription lets go after one of its
/// deliveries finished ([`Changes::release_next`](super::Changes::release_next)):
/// the earliest waiting one, due at `now`, unless one of its pending
/// deliveries is not waiting (`going`: that one goes first).
///
/// ```
/// use chrono::Utc;
/// use webhooks_core::{DeliveryId, release_next};
///
/// let (now, next) = (Utc::now(), DeliveryId::new());
/// assert_eq!(release_next(false, Some(next), now).map(|r| r.delivery), Some(next));
/// assert_eq!(release_next(true, Some(next), now), None, "one is going already");
/// ```
pub fn release_next(
    going: bool,
    earliest_waiting: Option<DeliveryId>,
    now: DateTime<Utc>,
) -> Option<Released> {
    earliest_waiting.filter(|_| !going).map(|delivery| Released { delivery, due: now })
}

/// How many of a disabled subscription's `held` deliveries are past its
/// held limit: the oldest that many are dropped, unsent.
///
/// ```
/// assert_eq!(webhooks_core::held_excess(10_250, 10_000), 250);
/// assert_eq!(webhooks_core::held_excess(9, 10_000), 0);
/// ```
pub fn held_excess(held: u64, limit: u32) -> u64 {
    held.saturating_sub(u64::from(limit))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + seconds, 0).unwrap()
    }

    const STANDINGS: [Standing; 4] = [
        Standing { enabled: true, ordered: false },
        Standing { enabled: true, ordered: true },
        Standing { enabled: false, ordered: false },
        Standing { enabled: false, ordered: true },
    ];

    const STATES: [DeliveryState; 4] =
        [DeliveryState::Pending, DeliveryState::Held, DeliveryState::Delivered, DeliveryState::Dropped];

    #[test]
    fn a_new_delivery_is_held_while_disabled_and_waits_behind_a_pending_one_while_ordered() {
        for standing in STANDINGS {
            let placement = standing.placement();
            assert_eq!(placement.held, !standing.enabled, "{standing:?}");
            for has_pending in [false, true] {
                assert_eq!(placement.waiting(has_pending), standing.ordered && has_pending, "{standing:?}");
            }
        }
    }

    #[test]
    fn disabling_holds_everything_pending_and_says_why() {
        for standing in STANDINGS {
            let disabling = standing.disabling("paused", at(3));
            assert!(disabling.hold_pending);
            assert_eq!(disabling.status, SubscriptionStatus::Disabled { reason: "paused".into(), at: at(3) });
        }
    }

    #[test]
    fn enabling_lets_what_was_held_go_by_now_and_leaves_retries_alone() {
        let now = at(100);
        for standing in STANDINGS {
            let enabling = standing.enabling(now);
            assert_eq!(enabling.consecutive_failures, 0);
            for due in [at(0), at(99), at(100), at(101), at(10_000)] {
                let expected = if standing.enabled { due } else { due.min(now) };
                assert_eq!(enabling.due(due), expected, "{standing:?} due {due}");
            }
            assert_eq!(enabling.release_held_by.is_some(), !standing.enabled);
        }
    }

    #[test]
    fn a_resend_is_a_new_cycle_due_now_held_while_disabled_and_in_its_place() {
        for standing in STANDINGS {
            let resend = standing.resend(at(7));
            assert_eq!(resend.cycle, NewCycle { due: at(7), held: !standing.enabled });
            assert_eq!(resend.put_in_order, standing.ordered);
        }
        assert_eq!(NewCycle::cycle_after(1), 2);
        assert_eq!(NewCycle::cycle_after(u32::MAX), u32::MAX);
        assert_eq!(NewCycle::ATTEMPTS, 0);
    }

    /// Every standing, state and event time around `since`.
    #[test]
    fn a_recovery_restarts_what_was_dropped_since_and_what_was_held() {
        let (since, now) = (at(50), at(100));
        let mut checked = 0;
        for standing in STANDINGS {
            let recovery = standing.recovery(since, now);
            assert_eq!(recovery.cycle, NewCycle { due: now, held: false });
            assert_eq!(recovery.enabling, standing.enabling(now));
            assert_eq!(recovery.put_in_order, standing.ordered);
            for state in STATES {
                for occurred_at in [at(0), since - TimeDelta::microseconds(1), since, at(99), now] {
                    let expected = match state {
                        DeliveryState::Dropped => occurred_at >= since,
                        DeliveryState::Pending | DeliveryState::Held => !standing.enabled,
                        DeliveryState::Delivered => false,
                    };
                    assert_eq!(recovery.restarts(state, occurred_at), expected, "{standing:?} {state:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 4 * 4 * 5);
    }

    #[test]
    fn turning_ordering_on_puts_in_order_and_off_releases_all() {
        assert_eq!(Reordering::between(false, true), Some(Reordering::PutInOrder));
        assert_eq!(Reordering::between(true, false), Some(Reordering::ReleaseAll));
        assert_eq!(Reordering::between(true, true), None);
        assert_eq!(Reordering::between(false, false), None);
    }

    #[test]
    fn in_order_only_the_earliest_goes() {
        let ids: Vec<DeliveryId> = (0..5).map(|n| DeliveryId::at(at(n))).collect();
        for rotation in 0..ids.len() {
            let mut shuffled = ids.clone();
            shuffled.rotate_left(rotation);
            shuffled.push(shuffled[0]);
            let ordered = in_order(shuffled);
            let expected: Vec<(DeliveryId, bool)> =
                ids.iter().enumerate().map(|(n, id)| (*id, n > 0)).collect();
            assert_eq!(ordered, expected, "rotated by {rotation}");
        }
        assert!(in_order([]).is_empty());
    }

    #[test]
    fn the_earliest_waiting_goes_only_when_none_is_going() {
        let next = DeliveryId::at(at(1));
        for going in [false, true] {
            for waiting in [None, Some(next)] {
                let expected =
                    (!going).then_some(waiting).flatten().map(|delivery| Released { delivery, due: at(9) });
                assert_eq!(
                    release_next(going, waiting, at(9)),
                    expected,
                    "going {going}, waiting {waiting:?}"
                );
            }
        }
    }

    #[test]
    fn only_what_is_past_the_limit_is_dropped() {
        for (held, limit, excess) in
            [(0, 0, 0), (1, 0, 1), (10, 10, 0), (11, 10, 1), (5, 10, 0), (u64::MAX, 0, u64::MAX)]
        {
            assert_eq!(held_excess(held, limit), excess, "{held} held, limit {limit}");
        }
    }
}
