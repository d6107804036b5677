//! The dispatcher: claims due deliveries, signs, POSTs and records outcomes.
//!
//! An attempt goes through stages, each in a module of its own, each
//! handing the next a type that says what has happened so far:
//!
//! 1. `claim`: a due delivery leased from the store, holding its place in
//!    its endpoint's share: `Claimed`;
//! 2. `prepare`: the rules its answer will be judged by and its request,
//!    signed, with the subscription's headers, its time bounded by the
//!    lease: `Prepared` (a `Request` and `Rules`), or `NotSent`;
//! 3. `http` (send): the POST, to addresses the `guard` allows: `Sent`, an
//!    answer or why none came;
//! 4. `judge`: pure, what the answer means: a `Judgement` (the verdict, and
//!    whether the endpoint is disabled at once);
//! 5. `record`: the attempt and its verdict written as one `AttemptRecord`,
//!    then its outcome told.
//!
//! `attempt` runs stages 2 to 5 for one claim; `workers` loop over claims
//! and attempts; `dispatcher` starts and stops them; `builder` configures;
//! `shares` and `activity` keep the endpoints' shares and what the
//! dispatcher is doing; `parts` is what the facade hands a dispatcher.

mod activity;
mod attempt;
mod builder;
mod claim;
mod dispatcher;
mod guard;
mod http;
mod judge;
mod parts;
mod prepare;
mod record;
mod shares;
mod workers;

pub use activity::Activity;
pub use builder::{DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_BATCHING, DispatcherBuilder};
pub use dispatcher::Dispatcher;
pub use record::AttemptOutcome;

pub(crate) use parts::{Parts, Upkeep};
