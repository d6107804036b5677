//! Configuring a dispatcher: every knob with a default, checked by
//! [`DispatcherBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::activity::Watch;
use super::dispatcher::{Dispatcher, Lane};
use super::guard::Guard;
use super::http::Transport;
use super::parts::Parts;
use super::record::{AttemptOutcome, OutcomeHook};
use crate::error::Error;

/// Configures a [`Dispatcher`]; from [`Webhooks::dispatcher`](crate::Webhooks::dispatcher).
///
/// ```
/// use std::time::Duration;
/// # use webhooks_core::{Preset, Webhooks};
/// # let webhooks = Webhooks::builder()
/// #     .store(webhooks_memory::MemoryStore::new())
/// #     .preset(Preset::deepsmith())
/// #     .build()
/// #     .unwrap();
/// let dispatcher = webhooks
///     .dispatcher()
///     .concurrency(32)
///     .request_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct DispatcherBuilder {
    parts: Parts,
    client: Option<reqwest::ClientBuilder>,
    concurrency: usize,
    per_endpoint: Option<usize>,
    slow_requests: usize,
    allow_private: bool,
    allowed_networks: Vec<String>,
    egress_proxy: Option<String>,
    request_timeout: Duration,
    response_body_limit: usize,
    poll_interval: Duration,
    on_outcome: Option<OutcomeHook>,
    outcome_queue: usize,
    runtimes: Vec<tokio::runtime::Handle>,
}

/// Workers by default for a store that answers each call in memory.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Workers by default for a store that [prefers batches](crate::DeliveryQueue::prefers_batches):
/// a durable store answers claims and records a commit at a time, so more
/// workers keep the network busy while one batch commits. On SQLite and
/// PostgreSQL 256 workers deliver about 40 % more than 64 do; in memory
/// they deliver 5 to 10 % less, so the default follows the store.
pub const DEFAULT_CONCURRENCY_BATCHING: usize = 256;

/// How many outcomes may wait for the hook by default.
const OUTCOME_QUEUE: usize = 10_000;

/// How many requests may wait on slow endpoints, off the workers, by
/// default: well under a process's usual limit of 1 024 open files.
const SLOW_REQUESTS: usize = 512;

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("slow_requests", &self.slow_requests)
            .field("allow_private", &self.allow_private)
            .field("allowed_networks", &self.allowed_networks)
            .field("egress_proxy", &self.egress_proxy.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("response_body_limit", &self.response_body_limit)
            .field("poll_interval", &self.poll_interval)
            .field("outcome_queue", &self.outcome_queue)
            .field("runtimes", &self.runtimes.len())
            .finish_non_exhaustive()
    }
}

impl DispatcherBuilder {
    /// A dispatcher of `parts`, with every setting at its default.
    pub(crate) fn new(parts: Parts) -> Self {
        let concurrency =
            if parts.store.prefers_batches() { DEFAULT_CONCURRENCY_BATCHING } else { DEFAULT_CONCURRENCY };
        Self {
            parts,
            client: None,
            concurrency,
            per_endpoint: None,
            slow_requests: SLOW_REQUESTS,
            allow_private: false,
            allowed_networks: Vec::new(),
            egress_proxy: None,
            request_timeout: Duration::from_secs(15),
            response_body_limit: 4096,
            poll_interval: Duration::from_secs(1),
            on_outcome: None,
            outcome_queue: OUTCOME_QUEUE,
            runtimes: Vec::new(),
        }
    }

    /// Workers (1 to 10 000); by default [`DEFAULT_CONCURRENCY`] (64), or
    /// [`DEFAULT_CONCURRENCY_BATCHING`] (256) for a store that prefers
    /// batches (SQLite, PostgreSQL). A worker claims, signs, sends
    /// to an endpoint that answers quickly and records: the work that takes
    /// CPU and store round trips. A request to an endpoint that is slow,
    /// hangs or has not answered yet waits off the workers, in the room that
    /// [`slow_requests`](DispatcherBuilder::slow_requests) sizes, so such
    /// endpoints take no worker from the quick ones.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// The workers the dispatcher will have: those given to
    /// [`concurrency`](DispatcherBuilder::concurrency), or its store's
    /// default. A host spreading it over runtimes gives it no more runtimes
    /// than this.
    ///
    /// ```
    /// # use webhooks_core::{DEFAULT_CONCURRENCY, Preset, Webhooks};
    /// # let webhooks = Webhooks::builder()
    /// #     .store(webhooks_memory::MemoryStore::new())
    /// #     .preset(Preset::deepsmith())
    /// #     .build()
    /// #     .unwrap();
    /// assert_eq!(webhooks.dispatcher().workers(), DEFAULT_CONCURRENCY);
    /// assert_eq!(webhooks.dispatcher().concurrency(8).workers(), 8);
    /// ```
    pub fn workers(&self) -> usize {
        self.concurrency
    }

    /// The longest one exchange may take, connect to last byte read; 15 s by
    /// default. Past it the attempt fails.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How much of a response body is read and logged; 4 KiB by default.
    pub fn response_body_limit(mut self, bytes: usize) -> Self {
        self.response_body_limit = bytes;
        self
    }

    /// How often an idle dispatcher looks at the store for work it was not
    /// told about (another process's publish); 1 s by default. Publishes
    /// through the same [`Webhooks`](crate::Webhooks) wake it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Requests in flight to one endpoint at most; the concurrency by
    /// default, so one endpoint that answers quickly may use every worker.
    /// Slow, hanging and failing endpoints are held back by their shares and the
    /// room for waiting requests instead. What an endpoint has due past its
    /// share waits in the queue while other endpoints' deliveries are
    /// claimed.
    pub fn per_endpoint_concurrency(mut self, requests: usize) -> Self {
        self.per_endpoint = Some(requests);
        self
    }

    /// Requests that may wait on endpoints that are not known to answer
    /// quickly (slow ones, hanging ones until they time out, new ones until
    /// their first answer), off the workers; 512 by default, 0 to 100 000.
    /// Each costs a socket (an open file) and a few KiB, not a worker. While
    /// the room is full, such endpoints wait in the queue and quick ones go
    /// on. 0 keeps every request on a worker.
    pub fn slow_requests(mut self, requests: usize) -> Self {
        self.slow_requests = requests;
        self
    }

    /// Allows loopback, private-network, link-local and other non-public
    /// targets (development, tests, endpoints inside your own network). Off
    /// by default: customer URLs must not reach into the host's network.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Allows one network besides the public internet, in CIDR notation
    /// (`10.20.0.0/16`, `fd00:ab::/32`): the middle ground between refusing
    /// every private address and [`allow_private_networks`], for a host
    /// whose customers may reach one internal range. Call once per network;
    /// a malformed one fails [`build`](DispatcherBuilder::build).
    ///
    /// [`allow_private_networks`]: DispatcherBuilder::allow_private_networks
    pub fn allow_network(mut self, cidr: impl Into<String>) -> Self {
        self.allowed_networks.push(cidr.into());
        self
    }

    /// Sends every request through an egress proxy
    /// (`http://egress.internal:3128`) that does its own address filtering:
    /// the proxy resolves the endpoints' names, so the dispatcher's guard
    /// checks only IP literals, and the proxy must refuse internal targets
    /// (Smokescreen, or Squid with ACLs, do). An invalid URL fails
    /// [`build`](DispatcherBuilder::build).
    pub fn egress_proxy(mut self, url: impl Into<String>) -> Self {
        self.egress_proxy = Some(url.into());
        self
    }

    /// Builds the HTTP client from this builder (TLS roots, pool settings).
    /// The dispatcher still turns redirects off, sets its connect timeout and
    /// user agent, and, unless private networks are allowed, adds the address
    /// guard and turns the builder's proxies off (a proxy resolves names
    /// itself, past the guard): to send through one, use
    /// [`egress_proxy`](DispatcherBuilder::egress_proxy).
    pub fn client_builder(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.client = Some(builder);
        self
    }

    /// Calls `hook` with every recorded attempt, e.g. to alert when an
    /// endpoint is disabled. It runs on a task of its own, one outcome after
    /// another in the order they were recorded, never on an attempt's path:
    /// a slow hook delays the hooks after it, not deliveries (though a hook
    /// that blocks its thread takes that thread from the runtime). A hook
    /// that panics is logged and still called with the next outcome.
    ///
    /// Outcomes wait for the hook in a queue of
    /// [`outcome_queue`](DispatcherBuilder::outcome_queue) places. When it is
    /// full, delivery goes on and the hook misses the outcomes that do not
    /// fit: each is counted in `webhooks_outcomes_dropped_total` and the first
    /// is logged. The store's attempt log has every attempt all the same.
    pub fn on_outcome(mut self, hook: impl Fn(&AttemptOutcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// How many outcomes may wait for the [outcome hook](DispatcherBuilder::on_outcome);
    /// 10 000 by default, at least 1.
    pub fn outcome_queue(mut self, outcomes: usize) -> Self {
        self.outcome_queue = outcomes;
        self
    }

    /// Runs the workers on these runtimes, shared out evenly, instead of on
    /// the runtime that runs [`Dispatcher::run`]. Each runtime gets its
    /// workers, their claims from the store, their HTTP client (one per
    /// runtime, unless [`client_builder`](DispatcherBuilder::client_builder)
    /// gave one for all) and, on a store that prefers batches, their
    /// recorder; an attempt stays on its runtime from claim to record. It is
    /// still one dispatcher: one share of each endpoint, one room for slow
    /// requests, one [outcome hook](DispatcherBuilder::on_outcome), one
    /// [`Activity`](crate::Activity). The hook and the housekeeping run where
    /// `run` runs.
    ///
    /// On a machine with several cores, one current-thread runtime per core
    /// delivers more than one multi-thread runtime: an attempt's own work is
    /// small beside the kernel's for its socket, and tasks that move between
    /// the threads of one runtime spend more on wake-ups than they gain. No
    /// more runtimes than workers.
    ///
    /// The runtimes are the host's: it drives each (a thread blocking on
    /// it) for as long as the dispatcher runs.
    ///
    /// ```
    /// # use webhooks_core::{Preset, Webhooks};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let webhooks = Webhooks::builder()
    /// #     .store(webhooks_memory::MemoryStore::new())
    /// #     .preset(Preset::deepsmith())
    /// #     .build()
    /// #     .unwrap();
    /// // A one-thread runtime per core, each driven by a thread of its own
    /// // until `released`.
    /// let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    /// let released = CancellationToken::new();
    /// let runtimes: Vec<tokio::runtime::Handle> = (0..cores)
    ///     .map(|_| {
    ///         let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    ///         let handle = runtime.handle().clone();
    ///         let released = released.clone();
    ///         std::thread::spawn(move || runtime.block_on(released.cancelled()));
    ///         handle
    ///     })
    ///     .collect();
    /// let dispatcher = webhooks.dispatcher().spread_over(runtimes).build().unwrap();
    /// let shutdown = CancellationToken::new();
    /// let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    /// // ... on SIGTERM: the workers on every runtime finish what they
    /// // have in flight, then the runtimes may go.
    /// shutdown.cancel();
    /// running.await.unwrap();
    /// released.cancel();
    /// # }
    /// ```
    pub fn spread_over(mut self, runtimes: impl IntoIterator<Item = tokio::runtime::Handle>) -> Self {
        self.runtimes = runtimes.into_iter().collect();
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<Dispatcher, Error> {
        let per_endpoint = self.check()?;
        let networks = self
            .allowed_networks
            .iter()
            .map(|cidr| {
                cidr.parse::<ipnet::IpNet>().map_err(|_| {
                    Error::invalid("allowed network", format!("{cidr:?} is not a network in CIDR notation"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let proxy = self
            .egress_proxy
            .map(|url| {
                reqwest::Proxy::all(&url).map_err(|source| Error::HttpClient { what: "egress proxy", source })
            })
            .transpose()?;
        let guard = Guard::new(self.allow_private, networks);
        let given = self.client.is_some();
        let transport = |builder: reqwest::ClientBuilder| {
            Transport::new(
                builder,
                self.request_timeout,
                guard.clone(),
                proxy.clone(),
                self.response_body_limit,
            )
            .map_err(|source| Error::HttpClient { what: "client", source })
        };
        let first = transport(self.client.unwrap_or_default())?;
        // Without a runtime of its own, a lane runs where `run` runs.
        let runtimes = match self.runtimes.len() {
            0 => vec![None],
            _ => self.runtimes.into_iter().map(Some).collect(),
        };
        let count = runtimes.len();
        let mut lanes = Vec::with_capacity(count);
        for (index, runtime) in runtimes.into_iter().enumerate() {
            // A client's connections are driven by the runtime that opened
            // them: each runtime its own, unless the host built the one.
            let transport =
                if index == 0 || given { first.clone() } else { transport(reqwest::Client::builder())? };
            let workers = self.concurrency / count + usize::from(index < self.concurrency % count);
            lanes.push(Lane { runtime, transport, workers });
        }
        Ok(Dispatcher {
            parts: Arc::new(self.parts),
            lanes,
            request_timeout: self.request_timeout,
            on_outcome: self.on_outcome,
            outcome_queue: self.outcome_queue,
            watch: Arc::new(Watch::new(count)),
            concurrency: self.concurrency,
            per_endpoint: per_endpoint.min(self.concurrency),
            slow_requests: self.slow_requests,
            poll_interval: self.poll_interval,
        })
    }

    /// Checks the numbers; returns the per-endpoint concurrency.
    fn check(&self) -> Result<usize, Error> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(Error::invalid("concurrency", "must be between 1 and 10000"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return Err(Error::invalid("request timeout", "must be between 1 ms and 1 hour"));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(3600) {
            return Err(Error::invalid("poll interval", "must be between 1 ms and 1 hour"));
        }
        if self.outcome_queue == 0 {
            return Err(Error::invalid("outcome queue", "must hold at least 1 outcome"));
        }
        let per_endpoint = self.per_endpoint.unwrap_or(self.concurrency);
        if per_endpoint == 0 {
            return Err(Error::invalid("per-endpoint concurrency", "must be at least 1"));
        }
        if self.slow_requests > 100_000 {
            return Err(Error::invalid("slow requests", "must be between 0 and 100000"));
        }
        if self.runtimes.len() > self.concurrency {
            return Err(Error::invalid("runtimes", "no more runtimes than workers"));
        }
        Ok(per_endpoint)
    }
}
