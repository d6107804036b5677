//! The claim queue: pending deliveries of enabled subscriptions by when they
//! can be claimed, one queue per subscription.
//!
//! One queue per subscription lets a claim pass over a busy endpoint at the
//! cost of one step, however much it has due, instead of walking its whole
//! backlog; a k-way merge of the queues' fronts keeps claims earliest first.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::num::NonZeroI64;
use std::ops::Bound::{Excluded, Unbounded};

use chrono::{DateTime, Utc};
use webhooks_core::{DeliveryId, SubscriptionId};

/// A time as unix microseconds: half the size of a `DateTime`, and a queue
/// may hold millions.
pub(crate) type Micros = i64;

pub(crate) use webhooks_core::micros::{from_time as micros, to_time as time};

/// A time packed so that `Option<At>` takes eight bytes: the microseconds,
/// moved up by one from zero on so that none is zero, which keeps their
/// order (chrono's latest time is far below `i64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct At(NonZeroI64);

impl At {
    pub(crate) fn new(at: DateTime<Utc>) -> Self {
        Self::from_micros(micros(at))
    }

    pub(crate) fn from_micros(micros: Micros) -> Self {
        let packed = if micros >= 0 { micros.saturating_add(1) } else { micros };
        Self(NonZeroI64::new(packed).unwrap_or(NonZeroI64::MAX))
    }

    pub(crate) fn micros(self) -> Micros {
        let packed = self.0.get();
        if packed > 0 { packed - 1 } else { packed }
    }
}

type Key = (Micros, DeliveryId);

#[derive(Debug, Default)]
pub(crate) struct ClaimQueue {
    /// Each subscription's claimable deliveries, earliest first.
    queues: HashMap<SubscriptionId, BTreeSet<Key>>,
    /// The front of every non-empty queue.
    fronts: BTreeSet<(Micros, SubscriptionId)>,
}

impl ClaimQueue {
    /// Moves `id` of `subscription` from where it was queued (`from`, `None`
    /// when it was not) to be claimable from `to` (`None` takes it out). The
    /// caller keeps each delivery's place, which saves a map per delivery.
    pub(crate) fn requeue(
        &mut self,
        id: DeliveryId,
        subscription: SubscriptionId,
        from: Option<Micros>,
        to: Option<Micros>,
    ) {
        if from == to {
            return;
        }
        self.update(subscription, |queue| {
            if let Some(from) = from {
                queue.remove(&(from, id));
            }
            if let Some(to) = to {
                queue.insert((to, id));
            }
        });
    }

    /// Changes one subscription's queue and keeps its front in `fronts`.
    fn update(&mut self, subscription: SubscriptionId, change: impl FnOnce(&mut BTreeSet<Key>)) {
        let queue = self.queues.entry(subscription).or_default();
        let before = queue.first().map(|(at, _)| *at);
        change(queue);
        let after = queue.first().map(|(at, _)| *at);
        if queue.is_empty() {
            self.queues.remove(&subscription);
        }
        if before != after {
            if let Some(at) = before {
                self.fronts.remove(&(at, subscription));
            }
            if let Some(at) = after {
                self.fronts.insert((at, subscription));
            }
        }
    }

    /// When the earliest queued delivery can be claimed.
    pub(crate) fn first(&self) -> Option<Micros> {
        self.fronts.first().map(|(at, _)| *at)
    }

    /// Up to `limit` deliveries claimable at `now`, earliest first, none of
    /// the subscriptions in `skip`.
    pub(crate) fn due(&self, now: Micros, limit: usize, skip: &[SubscriptionId]) -> Vec<DeliveryId> {
        // A long list is looked up by hash: a claim passes over each busy
        // endpoint's front at the cost of one step.
        let skip_set: HashSet<SubscriptionId>;
        let skipped: &dyn Fn(&SubscriptionId) -> bool = if skip.len() > 16 {
            skip_set = skip.iter().copied().collect();
            &|s| skip_set.contains(s)
        } else {
            &|s| skip.contains(s)
        };
        let mut fronts =
            self.fronts.iter().filter(|(_, s)| !skipped(s)).take_while(|(at, _)| *at <= now).peekable();
        let mut next = BinaryHeap::new();
        let mut due = Vec::new();
        while due.len() < limit {
            // Bring in every queue whose front comes before what we hold (a
            // tie waits: either is earliest first, and a burst published at
            // one time must not bring in every queue at once).
            while let Some(&&(at, subscription)) = fronts.peek() {
                if next.peek().is_some_and(
                    |Reverse((held, _, _)): &Reverse<(Micros, DeliveryId, SubscriptionId)>| *held <= at,
                ) {
                    break;
                }
                if let Some(&(at, id)) = self.queues.get(&subscription).and_then(BTreeSet::first) {
                    next.push(Reverse((at, id, subscription)));
                }
                fronts.next();
            }
            let Some(Reverse((at, id, subscription))) = next.pop() else { break };
            due.push(id);
            let following =
                self.queues.get(&subscription).and_then(|q| q.range((Excluded((at, id)), Unbounded)).next());
            if let Some(&(at, id)) = following.filter(|(at, _)| *at <= now) {
                next.push(Reverse((at, id, subscription)));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Micros {
        seconds * 1_000_000
    }

    #[test]
    fn packed_times_keep_their_value_and_order() {
        for micros in [0, 1, -1, 1_772_461_800_000_000, DateTime::<Utc>::MAX_UTC.timestamp_micros()] {
            assert_eq!(At::from_micros(micros).micros(), micros);
        }
        assert!(At::from_micros(-5) < At::from_micros(0) && At::from_micros(0) < At::from_micros(7));
        assert_eq!(std::mem::size_of::<Option<At>>(), 8);
    }

    #[test]
    fn due_merges_the_queues_earliest_first_and_passes_over_skipped_ones() {
        let (a, b, c) = (SubscriptionId::new(), SubscriptionId::new(), SubscriptionId::new());
        let mut queue = ClaimQueue::default();
        let mut queued = Vec::new();
        for (subscription, second) in [(a, 1), (a, 2), (b, 3), (a, 4), (c, 5), (b, 6), (a, 100)] {
            let id = DeliveryId::new();
            queue.requeue(id, subscription, None, Some(at(second)));
            queued.push((id, subscription, at(second)));
        }
        let ids: Vec<DeliveryId> = queued.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(queue.due(at(50), 10, &[]), ids[..6]);
        assert_eq!(queue.due(at(50), 3, &[a]), vec![ids[2], ids[4], ids[5]]);
        assert_eq!(queue.due(at(3), 10, &[]), ids[..3]);
        assert_eq!(queue.first(), Some(at(1)));

        queue.requeue(ids[0], a, Some(at(1)), None);
        queue.requeue(ids[1], a, Some(at(2)), Some(at(7)));
        queued[0].2 = at(-1);
        queued[1].2 = at(7);
        assert_eq!(queue.first(), Some(at(3)));
        assert_eq!(queue.due(at(7), 10, &[b, c]), vec![ids[3], ids[1]]);
        for (id, subscription, place) in queued.into_iter().skip(1) {
            queue.requeue(id, subscription, Some(place), None);
        }
        assert_eq!(queue.first(), None);
        assert!(queue.queues.is_empty() && queue.fronts.is_empty());
    }
}
