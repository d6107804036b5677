//! Fair shares of the dispatcher's slots: how many requests each endpoint
//! may have in flight, so that endpoints that hang cannot starve those that
//! answer, and the per-endpoint limits a subscription sets (in-flight cap,
//! rate).
//!
//! - An endpoint's **share** starts at one request (until it has answered),
//!   doubles with each quick answer and grows by one with each slow one, up
//!   to the per-endpoint cap; each attempt that ends without an answer after
//!   a long wait (a timeout) halves it. Endpoints that hang soon hold one
//!   slot each; endpoints that answer slowly still get many.
//! - An endpoint is **quick** while its last answer came within the quick
//!   threshold and none of its requests in flight is older than that. A
//!   **reserve** of slots (a quarter of them) serves only quick endpoints:
//!   however many endpoints hang, those that answer keep slots.
//! - A subscription's **in-flight cap** lowers its cap (ordered delivery means
//!   one); its **rate limit** is a token bucket on the dispatcher's clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::model::{Subscription, SubscriptionId};
use crate::settings::RateLimit;

/// How long an endpoint that has nothing in flight is remembered: its share
/// and whether it is quick.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// How often the endpoints are looked over for ones to forget: not on every
/// claim, which would walk them all each time.
const FORGET_EVERY: Duration = Duration::from_secs(10);

/// The slots, the endpoints' shares of them, and their limits.
pub(super) struct Shares {
    /// The most requests in flight in all.
    concurrency: usize,
    /// The most any one endpoint may have in flight.
    per_endpoint: usize,
    /// Slots only quick endpoints may use.
    reserve: usize,
    /// An answer within this is quick.
    quick_within: Duration,
    state: Mutex<State>,
}

/// The endpoints the dispatcher knows, and when it last forgot idle ones.
struct State {
    endpoints: HashMap<SubscriptionId, Endpoint>,
    forgot_at: Instant,
}

/// What the dispatcher knows of one endpoint.
struct Endpoint {
    /// When each request in flight started, oldest first.
    in_flight: VecDeque<Instant>,
    /// How many requests it may have in flight now.
    share: usize,
    /// Its cap: the per-endpoint cap, or lower if its subscription says.
    cap: usize,
    /// Whether its last answer came quickly; false until it has answered.
    answered_quickly: bool,
    bucket: Option<Bucket>,
    last_used: Instant,
}

/// Why a claim's endpoint may not have another request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// It has its share in flight, or the slots it may use are taken.
    Busy,
    /// Its rate limit allows the next request at this time.
    Rate(DateTime<Utc>),
}

/// How an attempt ended, for the endpoint's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Finished {
    /// The endpoint answered (any status).
    Answered(Duration),
    /// No answer came (timeout, refused or reset connection...).
    NoAnswer(Duration),
}

impl Shares {
    pub(super) fn new(concurrency: usize, per_endpoint: usize, request_timeout: Duration) -> Self {
        Self {
            concurrency,
            per_endpoint: per_endpoint.clamp(1, concurrency),
            // A quarter of the slots, none when there is only one.
            reserve: if concurrency > 1 { (concurrency / 4).max(1) } else { 0 },
            quick_within: (request_timeout / 2).min(Duration::from_secs(1)),
            state: Mutex::new(State { endpoints: HashMap::new(), forgot_at: Instant::now() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The map stays consistent whatever panicked while it was held.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoints that may not have another request now, into `busy`;
    /// returns the earliest time a rate limit lets one of them go again.
    /// Forgets endpoints idle for long.
    pub(super) fn busy(&self, busy: &mut Vec<SubscriptionId>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        busy.clear();
        let mut state = self.lock();
        let instant = Instant::now();
        if instant.duration_since(state.forgot_at) >= FORGET_EVERY {
            state.forgot_at = instant;
            // A bucket still refilling is kept too: forgotten, it would come
            // back full.
            state.endpoints.retain(|_, endpoint| {
                !endpoint.in_flight.is_empty()
                    || instant.duration_since(endpoint.last_used) < FORGET_AFTER
                    || endpoint.bucket.as_mut().is_some_and(|bucket| !bucket.is_full(now))
            });
        }
        let endpoints = &mut state.endpoints;
        let slow_full = self.slow_load(endpoints, instant) >= self.concurrency - self.reserve;
        let mut next_token = None;
        for (id, endpoint) in endpoints.iter_mut() {
            let refused =
                match endpoint.refusal(slow_full && !endpoint.is_quick(instant, self.quick_within), now) {
                    None => continue,
                    Some(refused) => refused,
                };
            if let Refused::Rate(at) = refused {
                next_token = Some(next_token.map_or(at, |next: DateTime<Utc>| next.min(at)));
            }
            busy.push(*id);
        }
        next_token
    }

    /// A slot for a request to `subscription`, if it may have one now.
    pub(super) fn take(
        self: &Arc<Self>,
        subscription: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Share, Refused> {
        let instant = Instant::now();
        let mut state = self.lock();
        let endpoints = &mut state.endpoints;
        // Only an endpoint that is not quick needs the slow endpoints' load.
        let quick = endpoints.get(&subscription.id).is_some_and(|e| e.is_quick(instant, self.quick_within));
        let slow_full = !quick && self.slow_load(endpoints, instant) >= self.concurrency - self.reserve;
        let cap = subscription
            .settings
            .in_flight_cap()
            .map_or(self.per_endpoint, |cap| (cap as usize).clamp(1, self.per_endpoint));
        let endpoint = endpoints.entry(subscription.id).or_insert_with(|| Endpoint {
            in_flight: VecDeque::new(),
            share: 1,
            cap,
            answered_quickly: false,
            bucket: None,
            last_used: instant,
        });
        // Settings can change between claims: the latest claim's apply.
        endpoint.cap = cap;
        endpoint.share = endpoint.share.min(cap);
        endpoint.last_used = instant;
        Bucket::follow(&mut endpoint.bucket, subscription.settings.rate_limit, now);
        if let Some(refused) = endpoint.refusal(slow_full, now) {
            return Err(refused);
        }
        if let Some(bucket) = &mut endpoint.bucket {
            bucket.take(now);
        }
        endpoint.in_flight.push_back(instant);
        Ok(Share { shares: Arc::clone(self), endpoint: subscription.id, started: instant, finished: None })
    }

    /// Requests in flight to endpoints that are not quick.
    fn slow_load(&self, endpoints: &HashMap<SubscriptionId, Endpoint>, now: Instant) -> usize {
        endpoints
            .values()
            .filter(|endpoint| !endpoint.is_quick(now, self.quick_within))
            .map(|endpoint| endpoint.in_flight.len())
            .sum()
    }

    fn release(&self, id: SubscriptionId, started: Instant, finished: Option<Finished>) {
        let mut state = self.lock();
        let Some(endpoint) = state.endpoints.get_mut(&id) else { return };
        if let Some(at) = endpoint.in_flight.iter().position(|start| *start == started) {
            endpoint.in_flight.remove(at);
        }
        match finished {
            Some(Finished::Answered(took)) if took < self.quick_within => {
                endpoint.answered_quickly = true;
                endpoint.share = (endpoint.share * 2).min(endpoint.cap);
            }
            // A slow answer is an answer: the share grows, by one.
            Some(Finished::Answered(_)) => {
                endpoint.answered_quickly = false;
                endpoint.share = (endpoint.share + 1).min(endpoint.cap);
            }
            Some(Finished::NoAnswer(took)) if took >= self.quick_within => {
                endpoint.answered_quickly = false;
                endpoint.share = (endpoint.share / 2).max(1);
            }
            // A quick failure (a refused connection) holds no slot for long.
            Some(Finished::NoAnswer(_)) | None => {}
        }
    }
}

impl Endpoint {
    fn is_quick(&self, now: Instant, quick_within: Duration) -> bool {
        self.answered_quickly
            && self.in_flight.front().is_none_or(|start| now.duration_since(*start) < quick_within)
    }

    /// Why it may not have another request now, if it may not.
    fn refusal(&mut self, slow_and_full: bool, now: DateTime<Utc>) -> Option<Refused> {
        if slow_and_full || self.in_flight.len() >= self.share {
            return Some(Refused::Busy);
        }
        let bucket = self.bucket.as_mut()?;
        bucket.next_token(now).map(Refused::Rate)
    }
}

/// A token bucket: `burst` tokens, refilled at `per_second`, on the
/// dispatcher's clock (so a manual clock drives it in tests).
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    /// Keeps `bucket` in step with the subscription's limit: made full when
    /// a limit appears, dropped when it goes, refitted when it changes.
    fn follow(bucket: &mut Option<Bucket>, limit: Option<RateLimit>, now: DateTime<Utc>) {
        match (bucket.as_mut(), limit) {
            (_, None) => *bucket = None,
            (Some(current), Some(limit)) if current.limit == limit => {}
            (Some(current), Some(limit)) => {
                current.limit = limit;
                current.tokens = current.tokens.min(f64::from(limit.burst()));
            }
            (None, Some(limit)) => {
                *bucket = Some(Bucket { limit, tokens: f64::from(limit.burst()), at: now })
            }
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        let elapsed = (now - self.at).to_std().unwrap_or_default().as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(self.limit.per_second())).min(f64::from(self.limit.burst()));
        self.at = self.at.max(now);
    }

    /// Whether it has its whole burst at `now`.
    fn is_full(&mut self, now: DateTime<Utc>) -> bool {
        self.refill(now);
        self.tokens >= f64::from(self.limit.burst())
    }

    /// When the next token comes, if there is none now.
    fn next_token(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return None;
        }
        let wait = (1.0 - self.tokens) / f64::from(self.limit.per_second());
        Some(now + chrono::Duration::microseconds((wait * 1e6).ceil() as i64))
    }

    fn take(&mut self, now: DateTime<Utc>) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

/// A slot held by one request, given back when dropped: however the attempt
/// ends, a panic included, the slot is not lost. The worker that held it then
/// queues for a claim, which wakes the claimer to look again.
pub(super) struct Share {
    shares: Arc<Shares>,
    endpoint: SubscriptionId,
    started: Instant,
    finished: Option<Finished>,
}

impl Share {
    /// Says how the attempt ended, so the endpoint's share follows.
    pub(super) fn finish(mut self, finished: Finished) {
        self.finished = Some(finished);
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shares.release(self.endpoint, self.started, self.finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Subscription {
        Subscription {
            id: SubscriptionId::new(),
            owner: crate::Owner::default(),
            url: url.parse().unwrap(),
            event_types: ["a".to_owned()].into(),
            secret: crate::Secret::generate(),
            previous_secret: None,
            status: crate::SubscriptionStatus::Enabled,
            consecutive_failures: 0,
            settings: crate::EndpointSettings::default(),
            created_at: now(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_461_800, 0).unwrap()
    }

    #[test]
    fn a_new_endpoint_gets_one_slot_and_doubles_with_quick_answers() {
        let shares = Arc::new(Shares::new(64, 32, Duration::from_secs(15)));
        let quick = endpoint("https://quick.example/");
        let first = shares.take(&quick, now()).unwrap();
        assert_eq!(shares.take(&quick, now()).err(), Some(Refused::Busy));
        first.finish(Finished::Answered(Duration::from_millis(5)));
        let held: Vec<Share> = (0..2).map(|_| shares.take(&quick, now()).unwrap()).collect();
        assert!(shares.take(&quick, now()).is_err(), "a share of 2 after one quick answer");
        for share in held {
            share.finish(Finished::Answered(Duration::from_millis(5)));
        }
        let held: Vec<Share> = (0..8).map(|_| shares.take(&quick, now()).unwrap()).collect();
        assert_eq!(held.len(), 8);
    }

    #[test]
    fn timeouts_halve_a_share_down_to_one() {
        let shares = Arc::new(Shares::new(64, 32, Duration::from_secs(15)));
        let flaky = endpoint("https://flaky.example/");
        for _ in 0..5 {
            shares.take(&flaky, now()).unwrap().finish(Finished::Answered(Duration::from_millis(1)));
        }
        let held: Vec<Share> = (0..32).map(|_| shares.take(&flaky, now()).unwrap()).collect();
        for share in held {
            share.finish(Finished::NoAnswer(Duration::from_secs(15)));
        }
        let one = shares.take(&flaky, now()).unwrap();
        assert_eq!(shares.take(&flaky, now()).err(), Some(Refused::Busy));
        drop(one);
    }

    #[test]
    fn slow_answers_grow_a_share_by_one() {
        let shares = Arc::new(Shares::new(64, 32, Duration::from_secs(15)));
        let slow = endpoint("https://slow.example/");
        for expected in 1..=4 {
            let mut held: Vec<Share> = (0..expected).map(|_| shares.take(&slow, now()).unwrap()).collect();
            assert!(shares.take(&slow, now()).is_err(), "a share of {expected}");
            // One slow answer (the others end unanswered-for): one more.
            held.pop().unwrap().finish(Finished::Answered(Duration::from_secs(3)));
        }
    }

    #[test]
    fn hanging_endpoints_never_take_the_reserve() {
        let shares = Arc::new(Shares::new(8, 4, Duration::from_secs(15)));
        let healthy = endpoint("https://healthy.example/");
        shares.take(&healthy, now()).unwrap().finish(Finished::Answered(Duration::from_millis(2)));
        // Endpoints never answered are not quick: they share 8 - 2 slots.
        let hanging: Vec<Subscription> =
            (0..10).map(|n| endpoint(&format!("https://hang{n}.example/"))).collect();
        let held: Vec<Share> = hanging.iter().filter_map(|h| shares.take(h, now()).ok()).collect();
        assert_eq!(held.len(), 6);
        let mut busy = Vec::new();
        shares.busy(&mut busy, now());
        assert!(hanging.iter().all(|h| busy.contains(&h.id)));
        assert!(!busy.contains(&healthy.id));
        // The quick endpoint still gets the reserve.
        let reserve: Vec<Share> = (0..2).map(|_| shares.take(&healthy, now()).unwrap()).collect();
        assert_eq!(reserve.len(), 2);
    }

    #[test]
    fn a_subscription_cap_and_ordering_bound_its_requests() {
        let shares = Arc::new(Shares::new(64, 32, Duration::from_secs(15)));
        let mut ordered = endpoint("https://ordered.example/");
        ordered.settings.ordered = true;
        ordered.settings.max_in_flight = Some(10);
        for _ in 0..6 {
            shares.take(&ordered, now()).unwrap().finish(Finished::Answered(Duration::from_millis(1)));
        }
        let one = shares.take(&ordered, now()).unwrap();
        assert_eq!(shares.take(&ordered, now()).err(), Some(Refused::Busy));
        drop(one);
    }

    #[test]
    fn a_rate_limit_spends_its_burst_then_one_token_per_interval() {
        let shares = Arc::new(Shares::new(64, 32, Duration::from_secs(15)));
        let mut limited = endpoint("https://limited.example/");
        limited.settings.rate_limit = Some(RateLimit::new(4, 2).unwrap());
        limited.settings.max_in_flight = None;
        let t = now();
        shares.take(&limited, t).unwrap().finish(Finished::Answered(Duration::from_millis(1)));
        shares.take(&limited, t).unwrap().finish(Finished::Answered(Duration::from_millis(1)));
        let next = t + chrono::Duration::milliseconds(250);
        assert_eq!(shares.take(&limited, t).err(), Some(Refused::Rate(next)));
        let mut busy = Vec::new();
        assert_eq!(shares.busy(&mut busy, t), Some(next));
        assert_eq!(busy, vec![limited.id]);
        assert!(shares.take(&limited, next).is_ok());
    }
}
