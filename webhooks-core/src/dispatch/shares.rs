//! Fair shares of the dispatcher's requests: how many each endpoint may
//! have in flight, which of them may wait off the workers, and the
//! per-endpoint limits a subscription sets (in-flight cap, rate).
//!
//! - An endpoint's **share** starts at one request (until it has answered),
//!   doubles with each quick successful answer and grows by one with each
//!   slow one, up to the per-endpoint cap; each failing answer (a status the
//!   attempt fails on), and each attempt that ends without an answer after a
//!   long wait (a timeout), halves it. Endpoints that hang soon hold one
//!   request each; endpoints that answer slowly still get many; a failing
//!   endpoint is tried one request at a time, so it is disabled at its
//!   threshold with no more than its share in flight.
//! - An endpoint is **quick** once an answer came within the quick
//!   threshold, until an answer comes slowly, none comes, or a request waits
//!   past the threshold. Requests to quick endpoints run on the workers;
//!   requests to every other endpoint (new ones included) **wait off the
//!   workers**, in a room of their own whose place is taken with the
//!   request: a slow endpoint costs a socket, not a worker, and a new
//!   endpoint gets its first try however many others hang, as long as the
//!   room has a place. Endpoints already tried (slow or hanging ones) fill
//!   at most three quarters of it, so the last quarter is kept for first
//!   tries: a new endpoint is not stuck behind slow ones whose shares have
//!   grown. While their part is full, endpoints that are not quick wait in
//!   the queue. A room of no places keeps every request on a worker.
//! - What a claim must pass over (the busy endpoints) is kept as requests
//!   start and end, never found by walking every endpoint: a claim costs
//!   what is busy, the same with ten endpoints known or a hundred thousand.
//! - A subscription's **in-flight cap** lowers its cap (ordered delivery means
//!   one); its **rate limit** is a token bucket on the dispatcher's clock.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
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

/// The requests, the endpoints' shares of them, and their limits.
pub(super) struct Shares {
    /// The most any one endpoint may have in flight.
    per_endpoint: usize,
    /// The most requests waiting off the workers.
    waiting_room: usize,
    /// An answer within this is quick; a request to a quick endpoint that
    /// waits longer leaves its worker.
    quick_within: Duration,
    state: Mutex<State>,
}

/// The endpoints the dispatcher knows, and the sets a claim reads, each kept
/// as requests start and end.
struct State {
    endpoints: HashMap<SubscriptionId, Endpoint>,
    /// Endpoints with their share in flight.
    full: HashSet<SubscriptionId>,
    /// Endpoints out of rate, with when their next token comes.
    limited: HashMap<SubscriptionId, DateTime<Utc>>,
    /// Endpoints refused for want of a place in the room: passed over while
    /// their part of it is full.
    roomless: Roomless,
    /// Requests waiting off the workers now.
    waiting: usize,
    forgot_at: Instant,
}

/// Endpoints refused for want of a place in the room, by whether they had
/// been tried.
#[derive(Default)]
struct Roomless {
    untried: HashSet<SubscriptionId>,
    tried: HashSet<SubscriptionId>,
}

/// What the dispatcher knows of one endpoint.
struct Endpoint {
    in_flight: usize,
    /// How many requests it may have in flight now.
    share: usize,
    /// Its cap: the per-endpoint cap, or lower if its subscription says.
    cap: usize,
    /// Whether it answers quickly; false until it has answered.
    quick: bool,
    /// Whether a request to it has ended (answered or not).
    tried: bool,
    bucket: Option<Bucket>,
    last_used: Instant,
}

impl Endpoint {
    /// `subscription`'s endpoint, known from now on, under its latest
    /// settings: they can change between claims, and the latest claim's
    /// apply. Its cap is `per_endpoint`, or lower if the subscription says.
    fn follow<'a>(
        endpoints: &'a mut HashMap<SubscriptionId, Endpoint>,
        subscription: &Subscription,
        per_endpoint: usize,
        now: DateTime<Utc>,
    ) -> &'a mut Endpoint {
        let instant = Instant::now();
        let cap = subscription
            .settings
            .in_flight_cap()
            .map_or(per_endpoint, |cap| (cap as usize).clamp(1, per_endpoint));
        let endpoint = endpoints.entry(subscription.id).or_insert_with(|| Endpoint {
            in_flight: 0,
            share: 1,
            cap,
            quick: false,
            tried: false,
            bucket: None,
            last_used: instant,
        });
        endpoint.cap = cap;
        endpoint.share = endpoint.share.min(cap);
        endpoint.last_used = instant;
        Bucket::follow(&mut endpoint.bucket, subscription.settings.rate_limit, now);
        endpoint
    }
}

/// Why a claim's endpoint may not have another request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// It has its share in flight, or it is not quick and the room for
    /// waiting requests is full.
    Busy,
    /// Its rate limit allows the next request at this time.
    Rate(DateTime<Utc>),
}

/// How an attempt ended, for the endpoint's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Finished {
    /// The endpoint answered with a status the attempt succeeds on.
    Answered(Duration),
    /// The endpoint answered with a status the attempt fails on.
    Failed(Duration),
    /// No answer came (timeout, refused or reset connection...).
    NoAnswer(Duration),
}

/// Where a request is: on its worker, waiting off the workers, or over.
const ON_WORKER: u8 = 0;
const WAITING: u8 = 1;
const RELEASED: u8 = 2;

impl Shares {
    pub(super) fn new(per_endpoint: usize, waiting_room: usize, request_timeout: Duration) -> Self {
        Self {
            per_endpoint: per_endpoint.max(1),
            waiting_room,
            quick_within: (request_timeout / 2).min(Duration::from_secs(1)),
            state: Mutex::new(State {
                endpoints: HashMap::new(),
                full: HashSet::new(),
                limited: HashMap::new(),
                roomless: Roomless::default(),
                waiting: 0,
                forgot_at: Instant::now(),
            }),
        }
    }

    /// How long a request to a quick endpoint may keep its worker.
    pub(super) fn quick_within(&self) -> Duration {
        self.quick_within
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The sets stay consistent whatever panicked while they were held.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The endpoints that may not have another request now, into `busy`;
    /// returns the earliest time a rate limit lets one of them go again.
    /// Costs what is busy, not what is known.
    pub(super) fn busy(&self, busy: &mut Vec<SubscriptionId>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        busy.clear();
        let mut state = self.lock();
        state.forget_idle(now);
        busy.extend(state.full.iter().copied());
        state.limited.retain(|_, at| *at > now);
        let next_token = state.limited.values().min().copied();
        busy.extend(state.limited.keys().copied());
        let (room_full, tried_full) = self.room_full(&state);
        let roomless = &mut state.roomless;
        for (set, full) in [(&mut roomless.untried, room_full), (&mut roomless.tried, tried_full)] {
            if full {
                busy.extend(set.iter().copied());
            } else {
                set.clear();
            }
        }
        next_token
    }

    /// A request to `subscription`, if it may have one now.
    pub(super) fn take(
        self: &Arc<Self>,
        subscription: &Subscription,
        now: DateTime<Utc>,
    ) -> Result<Share, Refused> {
        let mut state = self.lock();
        let (room_full, tried_full) = self.room_full(&state);
        let State { endpoints, full, limited, roomless, waiting, .. } = &mut *state;
        let id = subscription.id;
        let endpoint = Endpoint::follow(endpoints, subscription, self.per_endpoint, now);
        if endpoint.in_flight >= endpoint.share {
            full.insert(id);
            return Err(Refused::Busy);
        }
        let off_worker = !endpoint.quick && self.waiting_room > 0;
        if off_worker && endpoint.tried && tried_full {
            roomless.tried.insert(id);
            return Err(Refused::Busy);
        }
        if off_worker && room_full {
            roomless.untried.insert(id);
            return Err(Refused::Busy);
        }
        if let Some(bucket) = &mut endpoint.bucket {
            if let Some(at) = bucket.next_token(now) {
                limited.insert(id, at);
                return Err(Refused::Rate(at));
            }
            bucket.take(now);
        }
        endpoint.in_flight += 1;
        if endpoint.in_flight >= endpoint.share {
            full.insert(id);
        }
        // The room's place is taken with the request, so one claim's batch
        // cannot overfill it.
        if off_worker {
            *waiting += 1;
        }
        Ok(Share {
            shares: Arc::clone(self),
            endpoint: id,
            place: Arc::new(AtomicU8::new(if off_worker { WAITING } else { ON_WORKER })),
            finished: None,
        })
    }

    /// Whether the room is full, and whether the part endpoints already
    /// tried may fill is.
    fn room_full(&self, state: &State) -> (bool, bool) {
        let room = self.waiting_room;
        (room > 0 && state.waiting >= room, room > 0 && state.waiting >= room - room / 4)
    }

    /// Moves a request still on its worker and still waiting for its answer
    /// off the worker, if the room has a place; its endpoint is not quick
    /// from then on. Returns whether it moved.
    fn leave_worker(&self, endpoint: SubscriptionId, place: &AtomicU8) -> bool {
        let mut state = self.lock();
        if place.load(Ordering::Relaxed) != ON_WORKER {
            return false;
        }
        if let Some(known) = state.endpoints.get_mut(&endpoint) {
            known.quick = false;
        }
        if self.waiting_room == 0 || self.room_full(&state).1 {
            return false;
        }
        place.store(WAITING, Ordering::Relaxed);
        state.waiting += 1;
        true
    }

    fn release(&self, id: SubscriptionId, place: &AtomicU8, finished: Option<Finished>) {
        let mut state = self.lock();
        if place.swap(RELEASED, Ordering::Relaxed) == WAITING {
            state.waiting -= 1;
        }
        let State { endpoints, full, .. } = &mut *state;
        let Some(endpoint) = endpoints.get_mut(&id) else { return };
        endpoint.in_flight = endpoint.in_flight.saturating_sub(1);
        endpoint.tried |= finished.is_some();
        match finished {
            Some(Finished::Answered(took)) if took < self.quick_within => {
                endpoint.quick = true;
                endpoint.share = (endpoint.share * 2).min(endpoint.cap);
            }
            // A slow answer is an answer: the share grows, by one.
            Some(Finished::Answered(_)) => {
                endpoint.quick = false;
                endpoint.share = (endpoint.share + 1).min(endpoint.cap);
            }
            // Quick or not, an answer: whether it waits off the workers
            // follows how long it took, its share how it failed.
            Some(Finished::Failed(took)) => {
                endpoint.quick = took < self.quick_within;
                endpoint.share = (endpoint.share / 2).max(1);
            }
            Some(Finished::NoAnswer(took)) if took >= self.quick_within => {
                endpoint.quick = false;
                endpoint.share = (endpoint.share / 2).max(1);
            }
            // A quick failure (a refused connection) holds no slot for long.
            Some(Finished::NoAnswer(_)) | None => {}
        }
        if endpoint.in_flight >= endpoint.share {
            full.insert(id);
        } else {
            full.remove(&id);
        }
    }
}

impl State {
    /// Forgets endpoints idle for long, every so often. A bucket still
    /// refilling is kept too: forgotten, it would come back full.
    fn forget_idle(&mut self, now: DateTime<Utc>) {
        let instant = Instant::now();
        if instant.duration_since(self.forgot_at) < FORGET_EVERY {
            return;
        }
        self.forgot_at = instant;
        let State { endpoints, full, limited, roomless, .. } = self;
        endpoints.retain(|id, endpoint| {
            let keep = endpoint.in_flight > 0
                || instant.duration_since(endpoint.last_used) < FORGET_AFTER
                || endpoint.bucket.as_mut().is_some_and(|bucket| !bucket.is_full(now));
            if !keep {
                full.remove(id);
                limited.remove(id);
                roomless.untried.remove(id);
                roomless.tried.remove(id);
            }
            keep
        });
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

/// A request's place in its endpoint's share, given back when dropped:
/// however the attempt ends, a panic included, it is not lost. The worker
/// that held it then queues for a claim, which wakes the claimer to look
/// again.
pub(super) struct Share {
    shares: Arc<Shares>,
    endpoint: SubscriptionId,
    place: Arc<AtomicU8>,
    finished: Option<Finished>,
}

impl Share {
    /// Says how the attempt ended, so the endpoint's share follows.
    pub(super) fn finish(mut self, finished: Finished) {
        self.finished = Some(finished);
    }

    /// Whether the request has a place in the room for waiting requests
    /// (its endpoint is not known to be quick): it waits off the workers
    /// from the start.
    pub(super) fn off_worker(&self) -> bool {
        self.place.load(Ordering::Relaxed) == WAITING
    }

    /// A handle that moves the request off its worker, for the worker to
    /// keep while the attempt (which owns the share) runs.
    pub(super) fn mover(&self) -> Mover {
        Mover { shares: Arc::clone(&self.shares), endpoint: self.endpoint, place: Arc::clone(&self.place) }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shares.release(self.endpoint, &self.place, self.finished);
    }
}

/// Moves one request off its worker into the room for waiting requests.
pub(super) struct Mover {
    shares: Arc<Shares>,
    endpoint: SubscriptionId,
    place: Arc<AtomicU8>,
}

impl Mover {
    /// Moves the request if the room has space (a request already over
    /// stays where it was); the endpoint is not quick from now on.
    pub(super) fn leave_worker(&self) -> bool {
        self.shares.leave_worker(self.endpoint, &self.place)
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
            channels: Default::default(),
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
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
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

    /// Grows `endpoint`'s share to the whole cap (32), then ends every
    /// request of it as `ended`: the share is one again.
    fn halved_down_to_one(shares: &Arc<Shares>, endpoint: &Subscription, ended: Finished) {
        for _ in 0..5 {
            shares.take(endpoint, now()).unwrap().finish(Finished::Answered(Duration::from_millis(1)));
        }
        let held: Vec<Share> = (0..32).map(|_| shares.take(endpoint, now()).unwrap()).collect();
        for share in held {
            share.finish(ended);
        }
        assert_share_of_one(shares, endpoint);
    }

    /// `endpoint` may have one request in flight, not two.
    fn assert_share_of_one(shares: &Arc<Shares>, endpoint: &Subscription) {
        let one = shares.take(endpoint, now()).unwrap();
        assert_eq!(shares.take(endpoint, now()).err(), Some(Refused::Busy));
        drop(one);
    }

    #[test]
    fn timeouts_halve_a_share_down_to_one() {
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
        let flaky = endpoint("https://flaky.example/");
        halved_down_to_one(&shares, &flaky, Finished::NoAnswer(Duration::from_secs(15)));
    }

    #[test]
    fn failing_answers_halve_a_share_and_never_grow_it() {
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
        let failing = endpoint("https://failing.example/");
        // A new endpoint answering 500 at once stays at one request.
        for _ in 0..5 {
            shares.take(&failing, now()).unwrap().finish(Finished::Failed(Duration::from_millis(1)));
            assert_share_of_one(&shares, &failing);
        }
        halved_down_to_one(&shares, &failing, Finished::Failed(Duration::from_millis(1)));
    }

    #[test]
    fn slow_answers_grow_a_share_by_one() {
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
        let slow = endpoint("https://slow.example/");
        for expected in 1..=4 {
            let mut held: Vec<Share> = (0..expected).map(|_| shares.take(&slow, now()).unwrap()).collect();
            assert!(shares.take(&slow, now()).is_err(), "a share of {expected}");
            // One slow answer (the others end unanswered-for): one more.
            held.pop().unwrap().finish(Finished::Answered(Duration::from_secs(3)));
        }
    }

    /// Takes a request and says how it ended.
    fn answered(shares: &Arc<Shares>, endpoint: &Subscription, took: Duration) {
        shares.take(endpoint, now()).unwrap().finish(Finished::Answered(took));
    }

    #[test]
    fn endpoints_not_known_quick_wait_off_the_workers_and_only_while_the_room_has_a_place() {
        let shares = Arc::new(Shares::new(4, 3, Duration::from_secs(15)));
        let healthy = endpoint("https://healthy.example/");
        answered(&shares, &healthy, Duration::from_millis(2));
        // Endpoints never answered are not quick: each request takes a
        // place in the room as it is taken, so one batch cannot overfill it.
        let hanging: Vec<Subscription> =
            (0..5).map(|n| endpoint(&format!("https://hang{n}.example/"))).collect();
        let held: Vec<Share> = hanging.iter().filter_map(|h| shares.take(h, now()).ok()).collect();
        assert_eq!(held.len(), 3, "the room holds three");
        assert!(held.iter().all(Share::off_worker));
        let mut busy = Vec::new();
        shares.busy(&mut busy, now());
        busy.sort();
        // Three at their share of one, two refused for want of a place.
        let mut expected: Vec<SubscriptionId> = hanging.iter().map(|h| h.id).collect();
        expected.sort();
        assert_eq!(busy, expected);
        assert!(!busy.contains(&healthy.id));
        // The quick endpoint's requests run on the workers, room full or not.
        let quick: Vec<Share> = (0..2).map(|_| shares.take(&healthy, now()).unwrap()).collect();
        assert!(quick.iter().all(|share| !share.off_worker()));
        // Places free: endpoints not quick may go again.
        drop(held);
        drop(quick);
        shares.busy(&mut busy, now());
        assert!(busy.is_empty(), "{busy:?}");
        assert!(shares.take(&hanging[4], now()).unwrap().off_worker());
    }

    #[test]
    fn a_room_of_no_places_keeps_every_request_on_a_worker() {
        let shares = Arc::new(Shares::new(4, 0, Duration::from_secs(15)));
        let new = endpoint("https://new.example/");
        let share = shares.take(&new, now()).unwrap();
        assert!(!share.off_worker());
        assert!(!share.mover().leave_worker());
        let mut busy = Vec::new();
        shares.busy(&mut busy, now());
        assert_eq!(busy, vec![new.id], "at its share of one, nothing else");
    }

    #[test]
    fn a_request_that_waits_long_makes_its_endpoint_not_quick() {
        let shares = Arc::new(Shares::new(8, 16, Duration::from_secs(15)));
        let turning = endpoint("https://turning.example/");
        answered(&shares, &turning, Duration::from_millis(2));
        let share = shares.take(&turning, now()).unwrap();
        assert!(!share.off_worker());
        let mover = share.mover();
        assert!(mover.leave_worker());
        assert!(!mover.leave_worker(), "a request leaves its worker once");
        let next = shares.take(&turning, now()).unwrap();
        assert!(next.off_worker(), "the next request starts off the workers");
        drop(share);
        drop(next);
        assert_eq!(shares.lock().waiting, 0, "released, moved requests give their places back");
    }

    #[test]
    fn a_request_already_answered_does_not_make_its_endpoint_slow() {
        let shares = Arc::new(Shares::new(8, 16, Duration::from_secs(15)));
        let quick = endpoint("https://quick.example/");
        answered(&shares, &quick, Duration::from_millis(2));
        let share = shares.take(&quick, now()).unwrap();
        let mover = share.mover();
        // Answered quickly; the worker is still recording when its timer fires.
        share.finish(Finished::Answered(Duration::from_millis(3)));
        assert!(!mover.leave_worker());
        assert!(!shares.take(&quick, now()).unwrap().off_worker(), "still quick");
    }

    #[test]
    fn a_claim_reads_what_is_busy_not_every_endpoint_known() {
        let shares = Arc::new(Shares::new(8, 16, Duration::from_secs(15)));
        for n in 0..100_000 {
            answered(&shares, &endpoint(&format!("https://e{n}.example/")), Duration::from_millis(1));
        }
        let capped = endpoint("https://capped.example/");
        let held: Vec<Share> = (0..1).map(|_| shares.take(&capped, now()).unwrap()).collect();
        let mut busy = Vec::new();
        shares.busy(&mut busy, now());
        assert_eq!(busy, vec![capped.id]);
        drop(held);
        shares.busy(&mut busy, now());
        assert!(busy.is_empty());
    }

    #[test]
    fn a_subscription_cap_and_ordering_bound_its_requests() {
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
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
        let shares = Arc::new(Shares::new(32, 512, Duration::from_secs(15)));
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
