//! Every statement the store runs. Each function runs inside the caller's
//! transaction and returns SQLite's error as it is; the caller names the
//! operation.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;
use webhooks_core::sql::{
    AttemptRow, DeliveryRow, Filter, Placeholder, SqlValue, SubscriptionRow, settings_to_text,
};
use webhooks_core::{
    Attempt, AttemptResult, Audience, Current, Delivery, DeliveryCounts, DeliveryId, DeliveryQuery, Enabling,
    Event, EventId, IdempotencyKey, NewCycle, NextState, Owner, Placement, Publication, Reordering, Standing,
    Subscription, SubscriptionId, SubscriptionStats, SubscriptionStatus, channels_meet,
};

use crate::codec;

/// `$type` read from a row's columns, one column per field in the order
/// the fields are listed, which is the statement's column order: the
/// numbers are counted, so they cannot drift from the list. A field written
/// `field = read` is read by `read(row, column)`, the others by `Row::get`.
macro_rules! from_columns {
    ($row:expr => $type:ident { $($field:ident $(= $read:expr)?),* $(,)? }) => {{
        let row: &Row<'_> = $row;
        let mut columns = 0usize..;
        $type {
            $($field: {
                let column = columns.next().unwrap_or_default();
                from_columns!(@read row, column $(, $read)?)
            }),*
        }
    }};
    (@read $row:ident, $column:ident) => { $row.get($column)? };
    (@read $row:ident, $column:ident, $read:expr) => { $read($row, $column)? };
}

/// A subscription's columns, as [`subscription_row`] reads them; its event
/// types come as one JSON array.
macro_rules! subscription_columns {
    () => {
        "s.id, s.url, s.secret, s.previous_secret, s.previous_valid_until, s.disabled_reason, \
         s.disabled_at, s.consecutive_failures, s.created_at, \
         (SELECT json_group_array(t.event_type) FROM subscription_event_types t \
          WHERE t.subscription_id = s.id), s.owner, s.settings, s.channels"
    };
}

/// A delivery's columns and tables, as [`delivery_row`] reads them.
macro_rules! delivery_select {
    () => {
        "SELECT d.id, e.id, e.name, d.subscription_id, e.body, d.state, d.attempts, d.next_attempt_at, \
         e.occurred_at, d.cycle, d.waiting FROM deliveries d JOIN events e ON e.seq = d.event_seq"
    };
}

/// The subscriptions listening to event type `?1`, in no order, with
/// whether each is ordered and whether it is disabled.
///
/// Written so that its plan does not depend on the value bound to `?1`: with
/// a join or an `ORDER BY`, SQLite (built with STAT4) re-prepares the
/// statement at every run, even with no statistics gathered (the store
/// gathers none), which costs a parse and a plan per published event.
pub(crate) const LISTENERS: &str = "SELECT t.subscription_id, \
     (SELECT s.ordered FROM subscriptions s WHERE s.id = t.subscription_id), \
     (SELECT s.disabled_at IS NOT NULL FROM subscriptions s WHERE s.id = t.subscription_id), \
     (SELECT s.channels FROM subscriptions s WHERE s.id = t.subscription_id) \
     FROM subscription_event_types t \
     WHERE t.event_type = ?1";

/// The same for one owner, `?2`, found by the owner's key.
pub(crate) const OWNER_LISTENERS: &str = "SELECT t.subscription_id, \
     (SELECT s.ordered FROM subscriptions s WHERE s.id = t.subscription_id), \
     (SELECT s.disabled_at IS NOT NULL FROM subscriptions s WHERE s.id = t.subscription_id), \
     (SELECT s.channels FROM subscriptions s WHERE s.id = t.subscription_id) \
     FROM subscription_event_types t \
     WHERE t.owner = ?2 AND t.event_type = ?1";

/// Up to `?2` deliveries claimable at `?1`, earliest first. The terms
/// match the partial index `deliveries_claimable` word for word, so SQLite
/// reads the index from the front and stops at the limit.
pub(crate) const CLAIMABLE: &str = concat!(
    delivery_select!(),
    " WHERE d.state = 'pending' AND d.held = 0 AND d.waiting = 0 AND d.claimable_at <= ?1",
    " ORDER BY d.claimable_at LIMIT ?2"
);

/// The first `?2` deliveries claimable at `?1` as row and subscription:
/// the window a claim that passes over busy endpoints looks through.
pub(crate) const CLAIMABLE_WINDOW: &str = "SELECT rowid, subscription_id FROM deliveries \
     WHERE state = 'pending' AND held = 0 AND waiting = 0 AND claimable_at <= ?1 \
     ORDER BY claimable_at LIMIT ?2";

/// One delivery by row.
pub(crate) const DELIVERY_AT_ROW: &str = concat!(delivery_select!(), " WHERE d.rowid = ?1");

/// The first subscription after `?1` (by id; an empty blob sorts first)
/// that has a claimable delivery: one step of a walk over the subscriptions
/// with work, one index entry each, whatever their backlogs.
pub(crate) const CLAIMABLE_SUBSCRIPTION_AFTER: &str = "SELECT subscription_id FROM deliveries \
     INDEXED BY deliveries_claimable_by_subscription \
     WHERE state = 'pending' AND held = 0 AND waiting = 0 AND subscription_id > ?1 \
     ORDER BY subscription_id LIMIT 1";

/// Up to `?3` deliveries of subscription `?1` claimable at `?2`, earliest
/// first, read from the front of the subscription's own claimable entries.
pub(crate) const SUBSCRIPTION_CLAIMABLE: &str = concat!(
    "SELECT d.id, e.id, e.name, d.subscription_id, e.body, d.state, d.attempts, d.next_attempt_at, \
     e.occurred_at, d.cycle, d.waiting FROM deliveries d INDEXED BY deliveries_claimable_by_subscription \
     JOIN events e ON e.seq = d.event_seq",
    " WHERE d.subscription_id = ?1 AND d.state = 'pending' AND d.held = 0 AND d.waiting = 0",
    " AND d.claimable_at <= ?2 ORDER BY d.claimable_at LIMIT ?3"
);

/// When the first claimable delivery can be claimed.
pub(crate) const NEXT_CLAIMABLE: &str = "SELECT claimable_at FROM deliveries \
     WHERE state = 'pending' AND held = 0 AND waiting = 0 ORDER BY claimable_at LIMIT 1";

/// The earliest waiting delivery of subscription `?1`, by id: publish order.
pub(crate) const EARLIEST_WAITING: &str =
    "SELECT id FROM deliveries WHERE subscription_id = ?1 AND waiting = 1 ORDER BY id LIMIT 1";

/// Whether subscription `?1` has a pending delivery that is not waiting.
pub(crate) const ONE_GOING: &str = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE subscription_id = ?1 AND state = 'pending' AND waiting = 0)";

/// Deletes up to `?2` deliveries finished before `?1`, oldest first.
pub(crate) const PURGE_FINISHED: &str = "DELETE FROM deliveries WHERE rowid IN \
     (SELECT rowid FROM deliveries WHERE finished_at < ?1 ORDER BY finished_at LIMIT ?2)";

fn subscription_row(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    from_columns!(row => SubscriptionRow {
        id, url, secret, previous_secret, previous_valid_until, disabled_reason, disabled_at,
        consecutive_failures, created_at, event_types = names, owner, settings,
        channels = channel_list,
    })
    .decode()
    .map_err(|error| codec::corrupt(0, error))
}

/// The names in column `column`, a JSON array.
fn names(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|error| codec::corrupt(column, error))
}

/// The channels in column `column`, as a list.
fn channel_list(row: &Row<'_>, column: usize) -> rusqlite::Result<Vec<String>> {
    Ok(channels(row, column)?.into_iter().collect())
}

/// The channels in column `column`, a JSON array of names.
fn channels(row: &Row<'_>, column: usize) -> rusqlite::Result<BTreeSet<String>> {
    let text: String = row.get(column)?;
    if text == "[]" {
        return Ok(BTreeSet::new());
    }
    serde_json::from_str(&text).map_err(|error| codec::corrupt(column, error))
}

/// Channels as stored: a JSON array of names.
fn channels_text(channels: &BTreeSet<String>) -> String {
    serde_json::to_string(channels).unwrap_or_else(|_| "[]".to_owned())
}

fn delivery_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    from_columns!(row => DeliveryRow {
        id, event_id, event_type, subscription_id, body, state, attempts, next_attempt_at, created_at,
        cycle, waiting,
    })
    .decode()
    .map_err(|error| codec::corrupt(0, error))
}

/// Whether subscription `id` exists.
pub(crate) fn subscription_exists(db: &Connection, id: SubscriptionId) -> rusqlite::Result<bool> {
    let mut statement = db.prepare_cached("SELECT 1 FROM subscriptions WHERE id = ?1")?;
    Ok(statement.query_row([id.as_uuid()], |_| Ok(())).optional()?.is_some())
}

/// Adds a subscription with its event types.
pub(crate) fn insert_subscription(db: &Connection, subscription: &Subscription) -> rusqlite::Result<()> {
    let (disabled_reason, disabled_at) = match &subscription.status {
        SubscriptionStatus::Enabled => (None, None),
        SubscriptionStatus::Disabled { reason, at } => (Some(reason.as_str()), Some(codec::micros(*at))),
    };
    let previous = subscription.previous_secret.as_ref();
    db.prepare_cached(
        "INSERT INTO subscriptions (id, url, secret, previous_secret, previous_valid_until, \
         disabled_reason, disabled_at, consecutive_failures, created_at, owner, settings, ordered, channels) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        subscription.id.as_uuid(),
        subscription.url.as_str(),
        subscription.secret.expose(),
        previous.map(|p| p.secret.expose()),
        previous.map(|p| codec::micros(p.valid_until)),
        disabled_reason,
        disabled_at,
        subscription.consecutive_failures,
        codec::micros(subscription.created_at),
        subscription.owner.as_str(),
        settings_to_text(&subscription.settings),
        subscription.settings.ordered,
        channels_text(&subscription.channels),
    ])?;
    insert_event_types(db, subscription)
}

/// Replaces a subscription's URL, event types, secrets and settings, and
/// puts its deliveries in order when ordering is turned on or lets them all
/// go when it is turned off; `false` when there is no such subscription.
pub(crate) fn update_subscription(db: &Connection, subscription: &Subscription) -> rusqlite::Result<bool> {
    let Some(Standing { ordered: was_ordered, .. }) = standing(db, subscription.id)? else {
        return Ok(false);
    };
    let reordering = Reordering::between(was_ordered, subscription.settings.ordered);
    let previous = subscription.previous_secret.as_ref();
    db.prepare_cached(
        "UPDATE subscriptions SET url = ?2, secret = ?3, previous_secret = ?4, \
         previous_valid_until = ?5, settings = ?6, ordered = ?7, channels = ?8 WHERE id = ?1",
    )?
    .execute(params![
        subscription.id.as_uuid(),
        subscription.url.as_str(),
        subscription.secret.expose(),
        previous.map(|p| p.secret.expose()),
        previous.map(|p| codec::micros(p.valid_until)),
        settings_to_text(&subscription.settings),
        subscription.settings.ordered,
        channels_text(&subscription.channels),
    ])?;
    match reordering {
        Some(Reordering::PutInOrder) => put_in_order(db, subscription.id)?,
        // Each due when it was: its publish time or its retry time.
        Some(Reordering::ReleaseAll) => {
            db.prepare_cached(
                "UPDATE deliveries SET waiting = 0 WHERE subscription_id = ?1 AND waiting = 1",
            )?
            .execute([subscription.id.as_uuid()])?;
        }
        None => {}
    }
    db.prepare_cached("DELETE FROM subscription_event_types WHERE subscription_id = ?1")?
        .execute([subscription.id.as_uuid()])?;
    insert_event_types(db, subscription)?;
    Ok(true)
}

fn insert_event_types(db: &Connection, subscription: &Subscription) -> rusqlite::Result<()> {
    let mut insert = db.prepare_cached(
        "INSERT INTO subscription_event_types (event_type, subscription_id, owner) VALUES (?1, ?2, ?3)",
    )?;
    for event_type in &subscription.event_types {
        insert.execute(params![event_type, subscription.id.as_uuid(), subscription.owner.as_str()])?;
    }
    Ok(())
}

/// One subscription.
pub(crate) fn subscription(db: &Connection, id: SubscriptionId) -> rusqlite::Result<Option<Subscription>> {
    db.prepare_cached(concat!("SELECT ", subscription_columns!(), " FROM subscriptions s WHERE s.id = ?1"))?
        .query_row([id.as_uuid()], subscription_row)
        .optional()
}

/// Every subscription, oldest first.
pub(crate) fn subscriptions(db: &Connection) -> rusqlite::Result<Vec<Subscription>> {
    db.prepare_cached(concat!("SELECT ", subscription_columns!(), " FROM subscriptions s ORDER BY s.id"))?
        .query_map([], subscription_row)?
        .collect()
}

/// One owner's subscriptions, oldest first.
pub(crate) const OWNER_SUBSCRIPTIONS: &str =
    concat!("SELECT ", subscription_columns!(), " FROM subscriptions s WHERE s.owner = ?1 ORDER BY s.id");

/// One owner's subscriptions, oldest first.
pub(crate) fn owner_subscriptions(db: &Connection, owner: &Owner) -> rusqlite::Result<Vec<Subscription>> {
    db.prepare_cached(OWNER_SUBSCRIPTIONS)?.query_map([owner.as_str()], subscription_row)?.collect()
}

/// Deletes an owner's subscriptions with all that goes with them; returns
/// how many.
pub(crate) fn delete_owner(db: &Connection, owner: &Owner) -> rusqlite::Result<usize> {
    db.prepare_cached(DELETE_OWNER_KEYS)?.execute([owner.as_str()])?;
    db.prepare_cached(DELETE_OWNER)?.execute([owner.as_str()])
}

/// See [`delete_owner`]; `?1` is the owner.
pub(crate) const DELETE_OWNER: &str = "DELETE FROM subscriptions WHERE owner = ?1";

/// Forgets the idempotency keys of owner `?1`'s events.
pub(crate) const DELETE_OWNER_KEYS: &str = "DELETE FROM idempotency_keys WHERE audience = ?1";

/// Deletes a subscription; its event types, deliveries, their attempts and
/// events go with it (foreign keys and a trigger). `false` when there was none.
///
/// The foreign keys find what goes by index (`deliveries_by_subscription`
/// among them): no table is read whole.
pub(crate) fn delete_subscription(db: &Connection, id: SubscriptionId) -> rusqlite::Result<bool> {
    Ok(db.prepare_cached(DELETE_SUBSCRIPTION)?.execute([id.as_uuid()])? > 0)
}

/// See [`delete_subscription`]; `?1` is the subscription.
pub(crate) const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = ?1";

/// Holds the pending deliveries of subscription `?1`.
pub(crate) const HOLD_PENDING: &str =
    "UPDATE deliveries SET held = 1 WHERE subscription_id = ?1 AND state = 'pending'";

/// Lets the held deliveries of subscription `?1` go, each due by `?2`
/// ([`Enabling::due`] for a whole subscription at once).
pub(crate) const RELEASE_HELD: &str = "UPDATE deliveries SET next_attempt_at = CASE WHEN held = 1 THEN min(next_attempt_at, ?2) \
     ELSE next_attempt_at END, held = 0 WHERE subscription_id = ?1 AND state = 'pending'";

/// Disables a subscription as [`Standing::disabling`] says; `false` when
/// there is no such subscription.
pub(crate) fn disable_subscription(
    db: &Connection,
    id: SubscriptionId,
    reason: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let Some(standing) = standing(db, id)? else { return Ok(false) };
    let disabling = standing.disabling(reason, now);
    let (reason, at) = match &disabling.status {
        SubscriptionStatus::Disabled { reason, at } => (Some(reason.as_str()), Some(codec::micros(*at))),
        SubscriptionStatus::Enabled => (None, None),
    };
    db.prepare_cached("UPDATE subscriptions SET disabled_reason = ?2, disabled_at = ?3 WHERE id = ?1")?
        .execute(params![id.as_uuid(), reason, at])?;
    if disabling.hold_pending {
        db.prepare_cached(HOLD_PENDING)?.execute([id.as_uuid()])?;
    }
    Ok(true)
}

/// Enables a subscription as [`Standing::enabling`] says; `false` when
/// there is no such subscription.
pub(crate) fn enable_subscription(
    db: &Connection,
    id: SubscriptionId,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let Some(standing) = standing(db, id)? else { return Ok(false) };
    enable(db, id, standing.enabling(now))?;
    Ok(true)
}

/// Writes what enabling a subscription does.
fn enable(db: &Connection, id: SubscriptionId, enabling: Enabling) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE subscriptions SET disabled_reason = NULL, disabled_at = NULL, consecutive_failures = ?2 \
         WHERE id = ?1",
    )?
    .execute(params![id.as_uuid(), enabling.consecutive_failures])?;
    if let Some(by) = enabling.release_held_by {
        db.prepare_cached(RELEASE_HELD)?.execute(params![id.as_uuid(), codec::micros(by)])?;
    }
    Ok(())
}

/// A subscription an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) id: Uuid,
    /// Where its new delivery starts, as core's rule places it.
    pub(crate) placement: Placement,
}

impl Listener {
    fn new(id: Uuid, standing: Standing) -> Self {
        Self { id, placement: standing.placement() }
    }
}

/// The subscriptions of an audience listening to an event type, with the
/// channels each listens on; which of them an event reaches depends on its
/// channels.
#[derive(Debug)]
pub(crate) struct Candidates {
    listeners: Vec<Listener>,
    /// Each listener's channels, in the same order; empty when none names
    /// any (the usual case), and nothing is filtered.
    channels: Vec<BTreeSet<String>>,
}

impl Candidates {
    /// Those `event` reaches.
    pub(crate) fn reached_by(&self, event: &Event) -> Cow<'_, [Listener]> {
        if self.channels.is_empty() {
            return Cow::Borrowed(&self.listeners);
        }
        let meet = self.listeners.iter().zip(&self.channels);
        Cow::Owned(meet.filter(|(_, c)| channels_meet(c, &event.channels)).map(|(l, _)| *l).collect())
    }
}

/// The subscriptions listening to `event_type`, disabled ones too, with
/// their channels.
pub(crate) fn listeners(
    db: &Connection,
    event_type: &str,
    audience: &Audience,
) -> rusqlite::Result<Candidates> {
    let listener = |row: &rusqlite::Row<'_>| {
        let standing = Standing { ordered: row.get(1)?, enabled: !row.get::<_, bool>(2)? };
        Ok((Listener::new(row.get(0)?, standing), channels(row, 3)?))
    };
    let mut listeners: Vec<(Listener, BTreeSet<String>)> = match audience {
        Audience::Owner(owner) => db
            .prepare_cached(OWNER_LISTENERS)?
            .query_map(params![event_type, owner.as_str()], listener)?
            .collect::<rusqlite::Result<_>>()?,
        Audience::EveryOwner => db
            .prepare_cached(LISTENERS)?
            .query_map([event_type], listener)?
            .collect::<rusqlite::Result<_>>()?,
    };
    // By id, as the deliveries have always been made.
    listeners.sort_unstable_by_key(|(listener, _)| listener.id);
    let any_channels = listeners.iter().any(|(_, channels)| !channels.is_empty());
    let (listeners, channels): (Vec<Listener>, Vec<BTreeSet<String>>) = listeners.into_iter().unzip();
    Ok(Candidates { listeners, channels: if any_channels { channels } else { Vec::new() } })
}

/// The publication of the event holding `key` in `audience` at `at`, if
/// one does: its id and those of its deliveries still kept.
pub(crate) fn held_key(
    db: &Connection,
    audience: &str,
    key: &IdempotencyKey,
    at: DateTime<Utc>,
) -> rusqlite::Result<Option<Publication>> {
    let Some((event_id, event_seq)) = db
        .prepare_cached(HELD_KEY)?
        .query_row(params![audience, key.key, codec::micros(at)], |row| {
            Ok((row.get::<_, Uuid>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let deliveries = match event_seq {
        Some(seq) => db
            .prepare_cached(
                "SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq \
                 WHERE d.event_seq = ?1 AND e.id = ?2 ORDER BY d.id",
            )?
            .query_map(params![seq, event_id], |row| Ok(DeliveryId::from(row.get::<_, Uuid>(0)?)))?
            .collect::<rusqlite::Result<_>>()?,
        None => Vec::new(),
    };
    Ok(Some(Publication { event_id: event_id.into(), deliveries, repeated: true }))
}

/// The event holding key `?2` of audience `?1` at `?3`: its id and row.
pub(crate) const HELD_KEY: &str =
    "SELECT event_id, event_seq FROM idempotency_keys WHERE audience = ?1 AND key = ?2 AND held_until > ?3";

/// `event` takes its key in `audience` (stored as row `seq`, if it was),
/// replacing a key no longer held.
pub(crate) fn take_key(
    db: &Connection,
    audience: &str,
    key: &IdempotencyKey,
    event_id: EventId,
    seq: Option<i64>,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO idempotency_keys (audience, key, event_id, event_seq, held_until) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (audience, key) DO UPDATE SET \
             event_id = excluded.event_id, event_seq = excluded.event_seq, held_until = excluded.held_until",
    )?
    .execute(params![audience, key.key, event_id.as_uuid(), seq, codec::micros(key.held_until)])?;
    Ok(())
}

/// Forgets up to `limit` keys held until `now` or before; returns how many.
pub(crate) fn forget_keys(db: &Connection, now: DateTime<Utc>, limit: i64) -> rusqlite::Result<usize> {
    db.prepare_cached(FORGET_KEYS)?.execute(params![codec::micros(now), limit])
}

/// See [`forget_keys`]: from the front of the expiry index.
pub(crate) const FORGET_KEYS: &str = "DELETE FROM idempotency_keys WHERE (audience, key) IN \
     (SELECT audience, key FROM idempotency_keys WHERE held_until <= ?1 ORDER BY held_until LIMIT ?2)";

/// A pending delivery `?1` of event `?2` for subscription `?3`, due at
/// `?4`, where its [`Placement`] puts it: held as `?6` says, and waiting
/// when `?5` (it waits behind a pending one) and it has a pending one.
pub(crate) const INSERT_DELIVERY: &str = "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at, held, waiting) \
     VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?6, \
             CASE WHEN ?5 \
                  THEN EXISTS (SELECT 1 FROM deliveries p WHERE p.subscription_id = ?3 AND p.state = 'pending') \
                  ELSE 0 END)";

/// Stores an event's body once and a pending delivery of it, due when it
/// occurred, for each of `listeners`; none of either when there are no
/// listeners. Returns the publication and the event's row, if stored.
pub(crate) fn insert_event(
    db: &Connection,
    event: &Event,
    body: &[u8],
    listeners: &[Listener],
) -> rusqlite::Result<(Publication, Option<i64>)> {
    if listeners.is_empty() {
        return Ok((Publication { event_id: event.id, deliveries: Vec::new(), repeated: false }, None));
    }
    let due = codec::micros(event.occurred_at);
    db.prepare_cached(
        "INSERT INTO events (id, name, occurred_at, body, audience) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![event.id.as_uuid(), event.name, due, body, event.audience.stored_key()])?;
    let event_seq = db.last_insert_rowid();
    let mut insert = db.prepare_cached(INSERT_DELIVERY)?;
    let deliveries = listeners
        .iter()
        .map(|listener| {
            let id = DeliveryId::at(event.occurred_at);
            insert.execute(params![
                id.as_uuid(),
                event_seq,
                listener.id,
                due,
                listener.placement.waits_behind_pending,
                listener.placement.held
            ])?;
            Ok(id)
        })
        .collect::<rusqlite::Result<_>>()?;
    Ok((Publication { event_id: event.id, deliveries, repeated: false }, Some(event_seq)))
}

/// How many claimable deliveries, per delivery wanted, a claim that
/// passes over busy endpoints looks through before it walks the
/// subscriptions with work instead.
const WINDOW_PER_CLAIM: usize = 4;

/// The most subscriptions with claimable deliveries that one claim walks;
/// the next claim's walk goes on from where it stopped.
const WALK_AT_MOST: usize = 10_000;

/// Up to `limit` deliveries claimable at `now`, none of `skip`'s; earliest
/// first, but for what a walk over the subscriptions adds.
///
/// With nothing to skip, one read from the front of the claimable index.
/// Otherwise the front of the index is read up to a window a few times the
/// limit; when busy endpoints' deliveries fill the window (a deep backlog
/// of one endpoint at its share), the subscriptions with claimable
/// deliveries are walked instead, in turn from where the last walk stopped
/// (`walked`), each read from the front of its own entries: a claim never
/// passes over a busy endpoint's backlog row by row, and every endpoint
/// with work gets its turn.
pub(crate) fn claimable(
    db: &Connection,
    now: DateTime<Utc>,
    limit: usize,
    skip: &[SubscriptionId],
    walked: &mut Vec<u8>,
) -> rusqlite::Result<Vec<Delivery>> {
    let now = codec::micros(now);
    let sql_limit = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    if skip.is_empty() {
        return db
            .prepare_cached(CLAIMABLE)?
            .query_map(params![now, sql_limit(limit)], delivery_row)?
            .collect();
    }
    let skip: HashSet<SubscriptionId> = skip.iter().copied().collect();
    let window = limit.saturating_mul(WINDOW_PER_CLAIM).max(64);
    let mut rows = Vec::new();
    let mut looked = 0;
    {
        let mut statement = db.prepare_cached(CLAIMABLE_WINDOW)?;
        let mut found = statement.query(params![now, sql_limit(window)])?;
        while let Some(row) = found.next()? {
            looked += 1;
            let subscription = SubscriptionId::from(row.get::<_, Uuid>(1)?);
            if rows.len() < limit && !skip.contains(&subscription) {
                rows.push(row.get::<_, i64>(0)?);
            }
        }
    }
    let mut at_row = db.prepare_cached(DELIVERY_AT_ROW)?;
    let mut claimable = rows
        .into_iter()
        .map(|row| at_row.query_row([row], delivery_row))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if claimable.len() == limit || looked < window {
        return Ok(claimable);
    }
    let mut taken: HashSet<DeliveryId> = claimable.iter().map(|d| d.id).collect();
    let mut next = db.prepare_cached(CLAIMABLE_SUBSCRIPTION_AFTER)?;
    let mut fronts = db.prepare_cached(SUBSCRIPTION_CLAIMABLE)?;
    // First one delivery from each subscription in turn (fair, and none
    // beyond what an endpoint's share is likely to take); then, should a
    // whole turn leave room, more from those that had one.
    let mut had_one = Vec::new();
    // Where this turn started: the last claim's walk stopped there.
    let start = walked.clone();
    let mut wrapped = start.is_empty();
    for _ in 0..WALK_AT_MOST {
        if claimable.len() == limit {
            break;
        }
        let subscription = match next.query_row([&*walked], |row| row.get::<_, Uuid>(0)).optional()? {
            Some(subscription) => subscription,
            // Past the last: once more from the first.
            None if !wrapped => {
                wrapped = true;
                walked.clear();
                continue;
            }
            None => break,
        };
        if wrapped && !start.is_empty() && subscription.as_bytes().as_slice() > start.as_slice() {
            // A whole turn.
            break;
        }
        walked.clear();
        walked.extend_from_slice(subscription.as_bytes());
        if skip.contains(&SubscriptionId::from(subscription)) {
            continue;
        }
        let wanted = sql_limit(1 + taken.len());
        for delivery in fronts.query_map(params![subscription, now, wanted], delivery_row)? {
            let delivery = delivery?;
            if claimable.len() < limit && taken.insert(delivery.id) {
                claimable.push(delivery);
                had_one.push(subscription);
                break;
            }
        }
    }
    for subscription in had_one {
        if claimable.len() == limit {
            break;
        }
        let wanted = sql_limit(limit - claimable.len() + taken.len());
        for delivery in fronts.query_map(params![subscription, now, wanted], delivery_row)? {
            let delivery = delivery?;
            if claimable.len() < limit && taken.insert(delivery.id) {
                claimable.push(delivery);
            }
        }
    }
    Ok(claimable)
}

/// Deliveries matching `query`, in id order.
pub(crate) fn list_deliveries(db: &Connection, query: &DeliveryQuery) -> rusqlite::Result<Vec<Delivery>> {
    let (sql, values) = listing(query);
    db.prepare_cached(&sql)?.query_map(rusqlite::params_from_iter(values), delivery_row)?.collect()
}

/// The statement [`list_deliveries`] runs for `query`, and its values.
fn listing(query: &DeliveryQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let filter = Filter::deliveries(query, Placeholder::Question);
    let mut values: Vec<Value> = filter
        .values
        .into_iter()
        .map(|value| match value {
            SqlValue::Id(id) => Value::Blob(id.as_bytes().to_vec()),
            SqlValue::Text(text) => Value::Text(text),
            SqlValue::Micros(micros) => Value::Integer(micros),
        })
        .collect();
    values.push(Value::Integer(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        concat!(
            delivery_select!(),
            " JOIN subscriptions s ON s.id = d.subscription_id WHERE {} ORDER BY d.id LIMIT ?{}"
        ),
        filter.condition,
        values.len()
    );
    (sql, values)
}

/// Starts `cycle` for the deliveries `filter` picks (an SQL term over
/// `deliveries` with `?1` the subscription or delivery id and `?3` a time);
/// returns how many. The caller puts an ordered subscription's deliveries
/// in order afterwards.
fn restart(db: &Connection, filter: &str, id: &[u8], cycle: NewCycle, since: i64) -> rusqlite::Result<usize> {
    db.prepare_cached(&restart_statement(filter))?.execute(params![
        id,
        codec::micros(cycle.due),
        since,
        cycle.held,
        NewCycle::ATTEMPTS
    ])
}

/// The statement [`restart`] runs: a [`NewCycle`] written to every row the
/// filter picks (`cycle + 1` is [`NewCycle::cycle_after`]; SQLite's
/// integers never reach its saturation).
fn restart_statement(filter: &str) -> String {
    format!(
        "UPDATE deliveries SET state = 'pending', attempts = ?5, cycle = cycle + 1, next_attempt_at = ?2, \
         lease_until = NULL, finished_at = NULL, held = ?4, waiting = 0 WHERE {filter}"
    )
}

/// A new attempt cycle for one delivery, as [`Standing::resend`] says;
/// `false` when there is none.
pub(crate) fn resend(db: &Connection, id: DeliveryId, now: DateTime<Utc>) -> rusqlite::Result<bool> {
    let found = db
        .prepare_cached(
            "SELECT s.id, s.disabled_at IS NULL, s.ordered FROM subscriptions s \
             WHERE s.id = (SELECT subscription_id FROM deliveries WHERE id = ?1)",
        )?
        .query_row([id.as_uuid()], |row| {
            Ok((
                SubscriptionId::from(row.get::<_, Uuid>(0)?),
                Standing { enabled: row.get(1)?, ordered: row.get(2)? },
            ))
        })
        .optional()?;
    let Some((subscription, standing)) = found else { return Ok(false) };
    let resend = standing.resend(now);
    restart(db, "id = ?1 AND ?3 = ?3", id.as_uuid().as_bytes(), resend.cycle, 0)?;
    if resend.put_in_order {
        put_in_order(db, subscription)?;
    }
    Ok(true)
}

/// Puts an ordered subscription's pending deliveries in order, as
/// [`in_order`](webhooks_core::in_order) lines them up: the earliest by id
/// goes, the others wait. One statement over its pending ones, by
/// the `deliveries_pending` index; for the rare changes (a resend, a
/// recovery, ordering turned on), never for claims or records.
fn put_in_order(db: &Connection, subscription: SubscriptionId) -> rusqlite::Result<()> {
    db.prepare_cached(PUT_IN_ORDER)?.execute([subscription.as_uuid()])?;
    Ok(())
}

/// See [`put_in_order`]; `?1` is the subscription.
pub(crate) const PUT_IN_ORDER: &str = "UPDATE deliveries SET waiting = (id <> (SELECT p.id FROM deliveries p \
         WHERE p.subscription_id = ?1 AND p.state = 'pending' ORDER BY p.id LIMIT 1)) \
     WHERE subscription_id = ?1 AND state = 'pending'";

/// Lets an ordered subscription's next delivery go, as
/// [`release_next`](webhooks_core::release_next) picks it from what is
/// going and what waits.
pub(crate) fn release_next(
    db: &Connection,
    subscription: SubscriptionId,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let going = db.prepare_cached(ONE_GOING)?.query_row([subscription.as_uuid()], |row| row.get(0))?;
    let earliest_waiting: Option<Uuid> = db
        .prepare_cached(EARLIEST_WAITING)?
        .query_row([subscription.as_uuid()], |row| row.get(0))
        .optional()?;
    if let Some(released) = webhooks_core::release_next(going, earliest_waiting.map(DeliveryId::from), now) {
        db.prepare_cached(
            "UPDATE deliveries SET waiting = 0, next_attempt_at = ?2, lease_until = NULL WHERE id = ?1",
        )?
        .execute(params![released.delivery.as_uuid(), codec::micros(released.due)])?;
    }
    Ok(())
}

/// The held deliveries of subscription `?1`, as [`restart`] takes them.
pub(crate) const RESTART_HELD: &str = "subscription_id = ?1 AND state = 'pending' AND held = 1 AND ?3 = ?3";

/// The deliveries of subscription `?1` dropped whose events occurred at or
/// after `?3`, as [`restart`] takes them: by the subscription's
/// deliveries, each event looked up by key.
pub(crate) const RESTART_DROPPED: &str = "subscription_id = ?1 AND state = 'dropped' \
     AND (SELECT e.occurred_at FROM events e WHERE e.seq = deliveries.event_seq) >= ?3";

/// Recovers a subscription as [`Standing::recovery`] says (the filters
/// above are [`Recovery::restarts`](webhooks_core::Recovery::restarts) for
/// each state); `None` when there is no such subscription.
pub(crate) fn recover(
    db: &Connection,
    id: SubscriptionId,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<usize>> {
    let Some(standing) = standing(db, id)? else { return Ok(None) };
    let recovery = standing.recovery(since, now);
    let uuid = id.as_uuid();
    let subscription = uuid.as_bytes();
    // Held ones first: the dropped ones about to restart are pending too.
    let held =
        if recovery.restart_held { restart(db, RESTART_HELD, subscription, recovery.cycle, 0)? } else { 0 };
    let since = codec::micros(recovery.dropped_since);
    let dropped = restart(db, RESTART_DROPPED, subscription, recovery.cycle, since)?;
    enable(db, id, recovery.enabling)?;
    if recovery.put_in_order {
        put_in_order(db, id)?;
    }
    Ok(Some(dropped + held))
}

/// Stores `event` and one pending delivery of it for `subscription` alone,
/// held if the subscription is disabled; `None` when there is no such
/// subscription.
pub(crate) fn publish_to(
    db: &Connection,
    event: &Event,
    body: &[u8],
    subscription: SubscriptionId,
) -> rusqlite::Result<Option<DeliveryId>> {
    let Some(standing) = standing(db, subscription)? else { return Ok(None) };
    let listener = Listener::new(subscription.as_uuid(), standing);
    Ok(insert_event(db, event, body, &[listener])?.0.deliveries.pop())
}

/// Subscription `id`'s [`Standing`]; `None` when there is no such
/// subscription.
fn standing(db: &Connection, id: SubscriptionId) -> rusqlite::Result<Option<Standing>> {
    db.prepare_cached("SELECT disabled_at IS NULL, ordered FROM subscriptions WHERE id = ?1")?
        .query_row([id.as_uuid()], |row| Ok(Standing { enabled: row.get(0)?, ordered: row.get(1)? }))
        .optional()
}

/// What the attempts to subscription `?1` add up to.
pub(crate) const ATTEMPT_STATS: &str = "SELECT count(*), \
         coalesce(sum(a.status BETWEEN 200 AND 299), 0), \
         max(CASE WHEN a.status BETWEEN 200 AND 299 THEN a.started_at END), \
         max(CASE WHEN a.status BETWEEN 200 AND 299 THEN NULL ELSE a.started_at END) \
     FROM deliveries d JOIN attempts a ON a.delivery_id = d.id WHERE d.subscription_id = ?1";

/// What a subscription's attempts add up to; `None` when there is no such
/// subscription.
pub(crate) fn subscription_stats(
    db: &Connection,
    id: SubscriptionId,
) -> rusqlite::Result<Option<SubscriptionStats>> {
    let Some(consecutive_failures) = db
        .prepare_cached("SELECT consecutive_failures FROM subscriptions WHERE id = ?1")?
        .query_row([id.as_uuid()], |row| row.get::<_, u32>(0))
        .optional()?
    else {
        return Ok(None);
    };
    db.prepare_cached(ATTEMPT_STATS)?.query_row([id.as_uuid()], |row| {
        Ok(Some(SubscriptionStats {
            attempts: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            succeeded: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            last_success_at: row.get::<_, Option<i64>>(2)?.map(codec::time),
            last_failure_at: row.get::<_, Option<i64>>(3)?.map(codec::time),
            consecutive_failures,
        }))
    })
}

/// Pending deliveries in the store, held ones included.
pub(crate) const PENDING_COUNT: &str = "SELECT count(*) FROM deliveries WHERE state = 'pending'";

/// Pending deliveries in the store, held ones included.
pub(crate) fn pending_count(db: &Connection) -> rusqlite::Result<u64> {
    db.prepare_cached(PENDING_COUNT)?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
}

/// Sets a delivery's lease to end at `until`.
pub(crate) fn lease(db: &Connection, id: DeliveryId, until: DateTime<Utc>) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE deliveries SET lease_until = ?2 WHERE id = ?1")?
        .execute(params![id.as_uuid(), codec::micros(until)])?;
    Ok(())
}

/// One delivery.
pub(crate) fn delivery(db: &Connection, id: DeliveryId) -> rusqlite::Result<Option<Delivery>> {
    db.prepare_cached(concat!(delivery_select!(), " WHERE d.id = ?1"))?
        .query_row([id.as_uuid()], delivery_row)
        .optional()
}

/// One delivery to a subscription of `owner`'s, in one query.
pub(crate) fn owned_delivery(
    db: &Connection,
    owner: &Owner,
    id: DeliveryId,
) -> rusqlite::Result<Option<Delivery>> {
    db.prepare_cached(OWNED_DELIVERY)?
        .query_row(params![id.as_uuid(), owner.as_str()], delivery_row)
        .optional()
}

/// See [`owned_delivery`]: the delivery by its key, its subscription's
/// owner read from the subscription's row.
pub(crate) const OWNED_DELIVERY: &str = concat!(
    delivery_select!(),
    " WHERE d.id = ?1 AND (SELECT s.owner FROM subscriptions s WHERE s.id = d.subscription_id) = ?2"
);

/// One of `owner`'s subscriptions, in one query.
pub(crate) fn owned_subscription(
    db: &Connection,
    owner: &Owner,
    id: SubscriptionId,
) -> rusqlite::Result<Option<Subscription>> {
    db.prepare_cached(OWNED_SUBSCRIPTION)?
        .query_row(params![id.as_uuid(), owner.as_str()], subscription_row)
        .optional()
}

/// See [`owned_subscription`].
pub(crate) const OWNED_SUBSCRIPTION: &str =
    concat!("SELECT ", subscription_columns!(), " FROM subscriptions s WHERE s.id = ?1 AND s.owner = ?2");

/// Appends an attempt to its delivery's log.
pub(crate) fn insert_attempt(db: &Connection, attempt: &Attempt) -> rusqlite::Result<()> {
    let (status, response, error) = match &attempt.result {
        AttemptResult::Response { status, body } => (Some(*status), Some(body.as_str()), None),
        AttemptResult::Error(error) => (None, None, Some(error.as_str())),
    };
    db.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_us, status, response, error, cycle) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        attempt.delivery_id.as_uuid(),
        attempt.number,
        codec::micros(attempt.started_at),
        codec::duration_micros(attempt.duration),
        status,
        response,
        error,
        attempt.cycle,
    ])?;
    Ok(())
}

/// What recording an attempt needs of a delivery and its subscription.
pub(crate) fn current(
    db: &Connection,
    id: DeliveryId,
) -> rusqlite::Result<Option<(SubscriptionId, Current)>> {
    db.prepare_cached(
        "SELECT d.subscription_id, d.state, d.attempts, s.consecutive_failures, s.disabled_at IS NULL, \
         d.cycle, s.ordered FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id WHERE d.id = ?1",
    )?
    .query_row([id.as_uuid()], |row| {
        let current = Current {
            state: codec::state(&row.get::<_, String>(1)?, 1)?,
            attempts: row.get(2)?,
            cycle: row.get(5)?,
            consecutive_failures: row.get(3)?,
            enabled: row.get(4)?,
            ordered: row.get(6)?,
        };
        Ok((row.get::<_, Uuid>(0)?.into(), current))
    })
    .optional()
}

/// Writes a delivery's state after an attempt and ends its lease; a
/// delivery that is no longer pending is no longer held, nor waiting.
pub(crate) fn write_next_state(db: &Connection, id: DeliveryId, next: &NextState) -> rusqlite::Result<()> {
    db.prepare_cached(
        "UPDATE deliveries SET attempts = ?2, lease_until = NULL, state = ?3, next_attempt_at = ?4, \
         finished_at = ?5, held = held * (?3 = 'pending'), waiting = waiting * (?3 = 'pending') WHERE id = ?1",
    )?
    .execute(params![
        id.as_uuid(),
        next.attempts,
        next.state.as_str(),
        next.next_attempt_at.map(codec::micros),
        next.finished_at.map(codec::micros),
    ])?;
    Ok(())
}

/// Sets a subscription's count of failed attempts in a row.
pub(crate) fn set_failures(db: &Connection, id: SubscriptionId, failures: u32) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE subscriptions SET consecutive_failures = ?2 WHERE id = ?1")?
        .execute(params![id.as_uuid(), failures])?;
    Ok(())
}

/// An attempt's columns, as [`attempt_row`] reads them.
macro_rules! attempt_columns {
    () => {
        "number, started_at, duration_us, status, response, error, cycle"
    };
}

fn attempt_row(row: &Row<'_>, id: DeliveryId) -> rusqlite::Result<Attempt> {
    from_columns!(row => AttemptRow { number, started_at, duration_us, status, response, error, cycle })
        .decode(id)
        .map_err(|error| codec::corrupt(0, error))
}

/// A delivery's attempts in the order they were recorded.
pub(crate) fn attempts(db: &Connection, id: DeliveryId) -> rusqlite::Result<Vec<Attempt>> {
    db.prepare_cached(concat!(
        "SELECT ",
        attempt_columns!(),
        " FROM attempts WHERE delivery_id = ?1 ORDER BY seq"
    ))?
    .query_map([id.as_uuid()], |row| attempt_row(row, id))?
    .collect()
}

/// The attempts of deliveries `ids`, in one statement (the ids as a JSON
/// array of hex strings, read by the `attempts_by_delivery` index), each
/// log in recording order, in the order of `ids`.
pub(crate) fn attempts_of(
    db: &Connection,
    ids: &[DeliveryId],
) -> rusqlite::Result<Vec<(DeliveryId, Vec<Attempt>)>> {
    let hex = codec::hex_ids(ids.iter().map(DeliveryId::as_uuid));
    let mut logs: std::collections::HashMap<DeliveryId, Vec<Attempt>> = std::collections::HashMap::new();
    let mut statement = db.prepare_cached(ATTEMPTS_OF)?;
    let mut rows = statement.query([hex])?;
    while let Some(row) = rows.next()? {
        let id = DeliveryId::from(row.get::<_, Uuid>(7)?);
        logs.entry(id).or_default().push(attempt_row(row, id)?);
    }
    Ok(ids.iter().map(|id| (*id, logs.get(id).cloned().unwrap_or_default())).collect())
}

/// See [`attempts_of`].
pub(crate) const ATTEMPTS_OF: &str = concat!(
    "SELECT ",
    attempt_columns!(),
    ", delivery_id FROM attempts WHERE delivery_id IN (SELECT unhex(value) FROM json_each(?1)) \
     ORDER BY delivery_id, seq"
);

/// Subscription `?1`'s deliveries counted by state, each row read once by
/// `deliveries_by_subscription`. Counting the pending ones apart, from
/// `deliveries_pending` alone, would spare nothing: that index has no
/// state, so finding the finished ones reads all the rows anyway.
pub(crate) const DELIVERY_COUNTS: &str =
    "SELECT state, count(*) FROM deliveries WHERE subscription_id = ?1 GROUP BY state";

/// A subscription's deliveries counted by state.
pub(crate) fn delivery_counts(db: &Connection, id: SubscriptionId) -> rusqlite::Result<DeliveryCounts> {
    let mut counts = DeliveryCounts::default();
    let mut statement = db.prepare_cached(DELIVERY_COUNTS)?;
    let mut rows = statement.query([id.as_uuid()])?;
    while let Some(row) = rows.next()? {
        let count = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        counts.add(codec::state(&row.get::<_, String>(0)?, 0)?, count);
    }
    Ok(counts)
}

/// When the first claimable delivery can be claimed, if any.
pub(crate) fn next_claimable(db: &Connection) -> rusqlite::Result<Option<DateTime<Utc>>> {
    db.prepare_cached(NEXT_CLAIMABLE)?
        .query_row([], |row| row.get(0))
        .optional()
        .map(|at| at.map(codec::time))
}

/// Deletes up to `limit` deliveries finished before `before`, with their
/// attempts (and events no delivery needs any more); returns how many.
pub(crate) fn purge_finished(db: &Connection, before: DateTime<Utc>, limit: i64) -> rusqlite::Result<usize> {
    db.prepare_cached(PURGE_FINISHED)?.execute(params![codec::micros(before), limit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use rusqlite::StatementStatus;
    use webhooks_core::StateFilter;

    /// A migrated database shaped like a busy one, with statistics gathered
    /// so the planner sees it for what it is: a thousand subscriptions with two
    /// event types each, and `pending` claimable deliveries beside as many
    /// held ones and as many finished ones, one event each.
    fn big_queue(pending: i64) -> Connection {
        let db = queue_without_statistics(pending);
        db.execute_batch("ANALYZE").unwrap();
        db
    }

    /// The same before `ANALYZE`, as a store that never ran it sees it.
    fn queue_without_statistics(pending: i64) -> Connection {
        let mut db = Connection::open_in_memory().unwrap();
        schema::migrate(&mut db).unwrap();
        db.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO subscriptions (id, url, secret, consecutive_failures, created_at)
             SELECT randomblob(16), 'https://example.com/' || i, 's', 0, 0 FROM n;
             INSERT INTO subscription_event_types (event_type, subscription_id)
             SELECT 'type.' || (rowid % 12), id FROM subscriptions
             UNION ALL SELECT 'type.' || ((rowid + 5) % 12), id FROM subscriptions;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
             INSERT INTO events (seq, id, name, occurred_at, body)
             SELECT i, randomblob(16), 'type.1', 0, x'7b7d' FROM n;
             INSERT INTO deliveries
                 (id, event_seq, subscription_id, state, attempts, next_attempt_at, held, finished_at)
             SELECT randomblob(16), seq, (SELECT id FROM subscriptions WHERE rowid = 1 + seq % 1000),
                    CASE seq % 3 WHEN 2 THEN 'delivered' ELSE 'pending' END, 0,
                    CASE seq % 3 WHEN 2 THEN NULL ELSE seq END,
                    seq % 3 = 1,
                    CASE seq % 3 WHEN 2 THEN seq END
             FROM events;",
            count = pending * 3
        ))
        .unwrap();
        db
    }

    fn plan(db: &Connection, sql: &str) -> String {
        let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let details: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        details.join("\n")
    }

    /// Asserts that `sql`'s plan on `db` says `uses` and none of `never`.
    fn assert_plan(db: &Connection, sql: &str, uses: &str, never: &[&str]) {
        let plan = plan(db, sql);
        assert!(plan.contains(uses), "{uses}: {plan}");
        for absent in never {
            assert!(!plan.contains(absent), "no {absent}: {plan}");
        }
    }

    #[test]
    fn claiming_reads_the_claimable_index_in_order() {
        for db in [big_queue(20_000), queue_without_statistics(1_000)] {
            let plan = plan(&db, CLAIMABLE);
            assert!(plan.contains("SEARCH d USING INDEX deliveries_claimable (claimable_at<?)"), "{plan}");
            assert!(plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"), "{plan}");
            assert!(!plan.contains("SCAN d") && !plan.contains("SCAN e"), "no full scan: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }

    #[test]
    fn the_next_due_time_comes_from_the_front_of_the_index() {
        let db = big_queue(20_000);
        let plan = plan(&db, NEXT_CLAIMABLE);
        assert!(
            plan.contains("USING INDEX deliveries_claimable")
                || plan.contains("USING COVERING INDEX deliveries_claimable"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn an_owners_subscription_and_delivery_are_read_by_key() {
        let db = big_queue(1_000);
        for sql in [OWNED_SUBSCRIPTION, OWNED_DELIVERY] {
            assert_plan(&db, sql, "(id=?)", &["SCAN", "TEMP B-TREE"]);
        }
    }

    #[test]
    fn keys_are_found_by_key_and_forgotten_from_the_front_of_the_expiry_index() {
        let db = big_queue(10);
        let held = plan(&db, HELD_KEY);
        assert!(held.contains("SEARCH idempotency_keys USING PRIMARY KEY (audience=? AND key=?)"), "{held}");
        let forget = plan(&db, FORGET_KEYS);
        assert!(
            forget.contains("USING COVERING INDEX idempotency_keys_by_expiry (held_until<?)"),
            "{forget}"
        );
        assert!(!forget.contains("SCAN") && !forget.contains("TEMP B-TREE"), "{forget}");
        let owner = plan(&db, DELETE_OWNER_KEYS);
        assert!(owner.contains("SEARCH idempotency_keys USING PRIMARY KEY (audience=?)"), "{owner}");
    }

    #[test]
    fn publishing_looks_listeners_up_by_event_type_with_their_channels_by_key() {
        for db in [big_queue(10), queue_without_statistics(10)] {
            let plan = plan(&db, LISTENERS);
            assert!(plan.contains("SEARCH t USING PRIMARY KEY (event_type=?)"), "{plan}");
            // Ordered, disabled and channels: each read from the listener's row, by its key.
            assert_eq!(
                plan.matches("SEARCH s USING INDEX sqlite_autoindex_subscriptions_1 (id=?)").count(),
                3,
                "{plan}"
            );
            assert!(!plan.contains("SCAN") && !plan.contains("TEMP B-TREE"), "{plan}");
        }
    }

    #[test]
    fn counting_pending_deliveries_reads_only_theirs() {
        for db in [big_queue(10_000), queue_without_statistics(1_000)] {
            let plan = plan(&db, PENDING_COUNT);
            assert!(plan.contains("USING COVERING INDEX deliveries_pending"), "{plan}");
            assert!(!plan.contains("SCAN deliveries\n") && !plan.ends_with("SCAN deliveries"), "{plan}");
        }
    }

    /// 100 000 subscriptions of 1 000 owners, all listening to one type.
    fn many_owners() -> Connection {
        let mut db = Connection::open_in_memory().unwrap();
        schema::migrate(&mut db).unwrap();
        db.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
             INSERT INTO subscriptions (id, url, secret, consecutive_failures, created_at, owner)
             SELECT randomblob(16), 'https://example.com/' || i, 's', 0, 0, 'owner-' || (i % 1000) FROM n;
             INSERT INTO subscription_event_types (event_type, subscription_id, owner)
             SELECT 'order.created', id, owner FROM subscriptions;",
        )
        .unwrap();
        db
    }

    #[test]
    fn publishing_for_one_owner_looks_its_listeners_up_by_key() {
        let db = many_owners();
        for analyzed in [false, true] {
            if analyzed {
                db.execute_batch("ANALYZE").unwrap();
            }
            let found = plan(&db, OWNER_LISTENERS);
            assert!(
                found.contains("INDEX subscription_event_types_by_owner (owner=? AND event_type=?)"),
                "{found}"
            );
            assert!(!found.contains("SCAN"), "{found}");
            let found = plan(&db, OWNER_SUBSCRIPTIONS);
            assert!(found.contains("INDEX subscriptions_by_owner (owner=?)"), "{found}");
            assert!(!found.contains("SCAN") && !found.contains("TEMP B-TREE"), "{found}");
        }
        let owner = Audience::Owner(Owner::new("owner-7").unwrap());
        assert_eq!(listeners(&db, "order.created", &owner).unwrap().listeners.len(), 100);
    }

    #[test]
    fn looking_listeners_up_again_reuses_the_prepared_statement() {
        // As the store's own files are: no statistics.
        let db = queue_without_statistics(10);
        for event_type in ["type.1", "type.2", "type.1"] {
            assert!(!listeners(&db, event_type, &Audience::EveryOwner).unwrap().listeners.is_empty());
        }
        let statement = db.prepare_cached(LISTENERS).unwrap();
        assert_eq!(statement.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    /// A big queue where every third pending delivery waits behind an
    /// earlier one of its (ordered) subscription.
    fn queue_with_waiting(pending: i64, analyzed: bool) -> Connection {
        let db = queue_without_statistics(pending);
        db.execute_batch(
            "UPDATE subscriptions SET ordered = 1;
             UPDATE deliveries SET waiting = 1 WHERE state = 'pending' AND rowid % 3 = 0;",
        )
        .unwrap();
        if analyzed {
            db.execute_batch("ANALYZE").unwrap();
        }
        db
    }

    #[test]
    fn the_earliest_waiting_delivery_of_a_subscription_is_found_by_key() {
        for db in [queue_with_waiting(20_000, true), queue_with_waiting(1_000, false)] {
            let waiting = "USING COVERING INDEX deliveries_waiting (subscription_id=?)";
            assert_plan(&db, EARLIEST_WAITING, waiting, &["SCAN", "TEMP B-TREE"]);
            let going = "USING COVERING INDEX deliveries_pending (subscription_id=? AND waiting=?)";
            assert_plan(&db, ONE_GOING, going, &["SCAN deliveries"]);
            let claimable = "USING INDEX deliveries_claimable (claimable_at<?)";
            assert_plan(&db, CLAIMABLE, claimable, &["TEMP B-TREE"]);
        }
    }

    #[test]
    fn a_page_of_attempt_logs_is_read_by_key() {
        for db in [big_queue(1_000), queue_without_statistics(1_000)] {
            assert_plan(
                &db,
                ATTEMPTS_OF,
                "USING INDEX attempts_by_delivery (delivery_id=?)",
                &["SCAN attempts"],
            );
        }
    }

    #[test]
    fn waiting_deliveries_are_never_claimed() {
        let db = queue_with_waiting(1_000, false);
        let waiting: i64 = db
            .query_row("SELECT count(*) FROM deliveries WHERE waiting = 1 AND held = 0", [], |row| row.get(0))
            .unwrap();
        assert!(waiting > 0);
        let due = claimable(&db, codec::time(i64::MAX / 2), 10_000, &[], &mut Vec::new()).unwrap();
        let claimable: i64 = db
            .query_row(
                "SELECT count(*) FROM deliveries WHERE state = 'pending' AND held = 0 AND waiting = 0",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(due.len() as i64, claimable);
        assert!(due.iter().all(|d| d.next_attempt_at.is_some()));
    }

    #[test]
    fn purging_reads_the_finished_index() {
        for db in [big_queue(10_000), queue_without_statistics(1_000)] {
            let uses = "USING COVERING INDEX deliveries_finished (finished_at<?)";
            assert_plan(&db, PURGE_FINISHED, uses, &["TEMP B-TREE"]);
        }
    }

    #[test]
    fn claiming_takes_the_earliest_and_skips_held_and_finished_ones() {
        let db = big_queue(1_000);
        let due = claimable(&db, codec::time(10), 100, &[], &mut Vec::new()).unwrap();
        // Pending and not held: i % 3 == 0, so 3, 6 and 9 are due by 10.
        let times: Vec<_> = due.iter().map(|d| d.next_attempt_at.map(codec::micros)).collect();
        assert_eq!(times, vec![Some(3), Some(6), Some(9)]);
    }

    /// A new subscription's row, the `n`th of the test's.
    fn subscription_row(db: &Connection, n: i64) -> SubscriptionId {
        let id = SubscriptionId::new();
        db.execute(
            "INSERT INTO subscriptions (id, url, secret, consecutive_failures, created_at) \
             VALUES (?1, 'https://example.com/' || ?2, 's', 0, 0)",
            params![id.as_uuid(), n],
        )
        .unwrap();
        id
    }

    /// A queue where subscription A has `backlog` due deliveries, every one
    /// earlier than B's ten, and B as many again due only far later.
    fn queue_with_backlog(backlog: i64) -> (Connection, SubscriptionId, SubscriptionId) {
        let mut db = Connection::open_in_memory().unwrap();
        schema::migrate(&mut db).unwrap();
        let (a, b) = (subscription_row(&db, 1), subscription_row(&db, 2));
        db.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {total})
             INSERT INTO events (seq, id, name, occurred_at, body)
             SELECT i, randomblob(16), 'type.1', 0, x'7b7d' FROM n;",
            total = 2 * backlog + 10
        ))
        .unwrap();
        db.execute(
            "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at) \
             SELECT randomblob(16), seq, CASE WHEN seq <= ?3 THEN ?1 ELSE ?2 END, 'pending', 0, \
                    CASE WHEN seq <= ?3 + 10 THEN seq ELSE 1000000000000000 END FROM events",
            params![a.as_uuid(), b.as_uuid(), backlog],
        )
        .unwrap();
        (db, a, b)
    }

    /// A time after A's and B's first deliveries are due, long before B's
    /// others.
    const LATER: i64 = 1_000_000_000_000;

    /// Virtual machine steps the claim statements have taken on `db`.
    fn claim_steps(db: &Connection) -> i64 {
        [CLAIMABLE, CLAIMABLE_WINDOW, DELIVERY_AT_ROW, CLAIMABLE_SUBSCRIPTION_AFTER, SUBSCRIPTION_CLAIMABLE]
            .into_iter()
            .map(|sql| db.prepare_cached(sql).unwrap().get_status(StatementStatus::VmStep) as i64)
            .sum()
    }

    #[test]
    fn a_claim_passing_over_a_busy_endpoint_never_reads_its_backlog() {
        let mut steps = Vec::new();
        for backlog in [1_000, 50_000] {
            let (db, a, b) = queue_with_backlog(backlog);
            let due = claimable(&db, codec::time(LATER), 64, &[a], &mut Vec::new()).unwrap();
            assert_eq!(due.len(), 10, "every delivery of B, none of A's");
            assert!(due.iter().all(|d| d.subscription_id == b));
            steps.push(claim_steps(&db));
            // With nothing skipped the front of the queue is A's.
            let due = claimable(&db, codec::time(LATER), 64, &[], &mut Vec::new()).unwrap();
            assert!(due.iter().all(|d| d.subscription_id == a) && due.len() == 64);
            // The statement of old, skipping in SQL, reads the backlog.
            let old = concat!(
                delivery_select!(),
                " WHERE d.state = 'pending' AND d.held = 0 AND d.waiting = 0 AND d.claimable_at <= ?1",
                " AND d.subscription_id NOT IN (SELECT unhex(value) FROM json_each(?3))",
                " ORDER BY d.claimable_at LIMIT ?2"
            );
            let mut statement = db.prepare(old).unwrap();
            let skip = codec::hex_ids([a.as_uuid()]);
            let found = statement.query_map(params![LATER, 64, skip], delivery_row).unwrap().count();
            assert_eq!(found, 10);
            steps.push(statement.get_status(StatementStatus::VmStep) as i64);
        }
        let [new_small, old_small, new_big, old_big] = steps[..] else { unreachable!() };
        println!("steps: backlog 1 000: {new_small} (old {old_small}); 50 000: {new_big} (old {old_big})");
        assert!(old_big > 20 * old_small, "the old statement read the backlog: {old_small} -> {old_big}");
        assert!(new_big < new_small * 3 / 2, "the claim read the backlog: {new_small} -> {new_big}");
    }

    #[test]
    fn the_walk_takes_one_delivery_per_subscription_in_turn_from_where_it_stopped() {
        let (db, a, b) = queue_with_backlog(1_000);
        let (c, d) = (subscription_row(&db, 3), subscription_row(&db, 4));
        for id in [c, d] {
            db.execute(
                "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at) \
                 SELECT randomblob(16), seq, ?1, 'pending', 0, seq FROM events WHERE seq BETWEEN 1001 AND 1005",
                params![id.as_uuid()],
            )
            .unwrap();
        }
        let mut walked = Vec::new();
        let mut turns = Vec::new();
        for _ in 0..3 {
            let due = claimable(&db, codec::time(LATER), 2, &[a], &mut walked).unwrap();
            turns.push(due.iter().map(|d| d.subscription_id).collect::<Vec<_>>());
        }
        assert_eq!(turns, [vec![b, c], vec![d, b], vec![c, d]]);
        // A lone subscription with work gets a whole claim.
        let (db, a, b) = queue_with_backlog(1_000);
        let due = claimable(&db, codec::time(LATER), 8, &[a], &mut Vec::new()).unwrap();
        assert_eq!(due.len(), 8);
        assert!(due.iter().all(|d| d.subscription_id == b));
    }

    #[test]
    fn walking_subscriptions_with_work_reads_their_own_entries() {
        for db in [big_queue(20_000), queue_without_statistics(1_000)] {
            let walk = plan(&db, CLAIMABLE_SUBSCRIPTION_AFTER);
            assert!(
                walk.contains("INDEX deliveries_claimable_by_subscription (subscription_id>?)"),
                "{walk}"
            );
            assert!(scans(&walk).is_empty() && !walk.contains("TEMP B-TREE"), "{walk}");
            let fronts = plan(&db, SUBSCRIPTION_CLAIMABLE);
            assert!(
                fronts.contains(
                    "SEARCH d USING INDEX deliveries_claimable_by_subscription (subscription_id=? AND claimable_at<?)"
                ),
                "{fronts}"
            );
            assert!(scans(&fronts).is_empty() && !fronts.contains("TEMP B-TREE"), "{fronts}");
            let window = plan(&db, CLAIMABLE_WINDOW);
            assert!(window.contains("INDEX deliveries_claimable (claimable_at<?)"), "{window}");
            assert!(scans(&window).is_empty() && !window.contains("TEMP B-TREE"), "{window}");
        }
    }

    /// The lines of a plan that read a whole table or index.
    fn scans(plan: &str) -> Vec<&str> {
        plan.lines().filter(|line| line.starts_with("SCAN")).collect()
    }

    #[test]
    fn statements_over_one_subscriptions_deliveries_read_them_by_index() {
        let pending = "deliveries_pending (subscription_id=?)";
        let by_subscription = "deliveries_by_subscription (subscription_id=?)";
        let restart_held = restart_statement(RESTART_HELD);
        let restart_dropped = restart_statement(RESTART_DROPPED);
        // What the foreign key looks up when a subscription is deleted.
        let referencing = "SELECT 1 FROM deliveries WHERE subscription_id = ?1";
        let statements: [(&str, &[&str]); 9] = [
            (HOLD_PENDING, &[pending]),
            (RELEASE_HELD, &[pending]),
            (PUT_IN_ORDER, &[pending]),
            (INSERT_DELIVERY, &["COVERING INDEX deliveries_pending (subscription_id=?)"]),
            (&restart_held, &[pending]),
            (&restart_dropped, &[by_subscription, "SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"]),
            (ATTEMPT_STATS, &[by_subscription, "attempts_by_delivery (delivery_id=?)"]),
            (DELIVERY_COUNTS, &[by_subscription]),
            (referencing, &["COVERING INDEX deliveries_by_subscription (subscription_id=?)"]),
        ];
        for db in [big_queue(20_000), queue_without_statistics(1_000)] {
            for (sql, indexes) in statements {
                let found = plan(&db, sql);
                for index in indexes {
                    assert!(found.contains(index), "{index} in {sql}:\n{found}");
                }
                assert!(scans(&found).is_empty(), "{sql}:\n{found}");
            }
        }
    }

    /// Deletes what `sql` picks by `value` in `db` and returns how many
    /// deliveries went and how many steps SQLite took reading a table or
    /// an index from end to end, the foreign keys' reads included.
    fn full_scan_steps_deleting(db: &Connection, sql: &str, value: &dyn rusqlite::ToSql) -> (i64, i32) {
        let deliveries = |db: &Connection| -> i64 {
            db.query_row("SELECT count(*) FROM deliveries", [], |row| row.get(0)).unwrap()
        };
        let before = deliveries(db);
        let mut statement = db.prepare(sql).unwrap();
        assert!(statement.execute([value]).unwrap() > 0, "{sql}");
        let steps = statement.get_status(StatementStatus::FullscanStep);
        (before - deliveries(db), steps)
    }

    #[test]
    fn deleting_a_subscription_or_an_owner_reads_no_whole_table() {
        let db = big_queue(20_000);
        db.pragma_update(None, "foreign_keys", "ON").unwrap();
        db.execute_batch("UPDATE subscriptions SET owner = 'acme' WHERE rowid % 100 = 0").unwrap();
        let subscription = |rowid: i64| -> Uuid {
            db.query_row("SELECT id FROM subscriptions WHERE rowid = ?1", [rowid], |row| row.get(0)).unwrap()
        };
        let (deleted, steps) = full_scan_steps_deleting(&db, DELETE_SUBSCRIPTION, &subscription(7));
        assert!(deleted > 0);
        assert_eq!(steps, 0, "deleting a subscription");
        let (deleted, steps) = full_scan_steps_deleting(&db, DELETE_OWNER, &"acme");
        assert!(deleted > 0);
        assert_eq!(steps, 0, "deleting an owner");
        // The count sees the foreign key's reads: without the index, each
        // subscription deleted reads the whole table.
        db.execute_batch("DROP INDEX deliveries_by_subscription").unwrap();
        let (deleted, steps) = full_scan_steps_deleting(&db, DELETE_SUBSCRIPTION, &subscription(8));
        let remaining: i32 = db.query_row("SELECT count(*) FROM deliveries", [], |row| row.get(0)).unwrap();
        assert!(deleted > 0);
        assert!(steps >= remaining, "{steps} steps, {remaining} deliveries");
    }

    #[test]
    fn listing_one_subscriptions_or_owners_deliveries_reads_their_indexes() {
        let db = big_queue(20_000);
        let owner = Owner::new("default").unwrap();
        let states = [
            None,
            Some(StateFilter::Pending),
            Some(StateFilter::Held),
            Some(StateFilter::Delivered),
            Some(StateFilter::Dropped),
        ];
        for state in states {
            let by_subscription =
                DeliveryQuery::new().subscription(SubscriptionId::new()).state(state).limit(10);
            let by_owner = DeliveryQuery::new()
                .owner(owner.clone())
                .state(state)
                .after(DeliveryId::new())
                .event_type("type.1")
                .limit(10);
            for query in [by_subscription, by_owner] {
                let found = plan(&db, &listing(&query).0);
                // The pending ones may be read by their own index.
                let read = ["deliveries_by_subscription", "deliveries_pending"]
                    .map(|index| format!("SEARCH d USING INDEX {index} (subscription_id=?)"));
                assert!(read.iter().any(|search| found.contains(search.as_str())), "{query:?}:\n{found}");
                assert!(scans(&found).is_empty(), "{query:?}:\n{found}");
            }
        }
    }

    /// A big queue where some finished deliveries were dropped and every
    /// delivery has had an attempt.
    fn queue_with_attempts() -> Connection {
        let db = queue_without_statistics(10_000);
        db.execute_batch(
            "UPDATE deliveries SET state = 'dropped' WHERE state = 'delivered' AND event_seq % 7 < 3;
             INSERT INTO attempts (delivery_id, number, started_at, duration_us, status, response, error)
             SELECT id, 1, event_seq, 1, CASE state WHEN 'delivered' THEN 200 ELSE 500 END, '', NULL
             FROM deliveries;",
        )
        .unwrap();
        db
    }

    #[test]
    fn reading_a_subscription_by_its_indexes_finds_all_its_deliveries() {
        let db = queue_with_attempts();
        let subscription: Uuid =
            db.query_row("SELECT id FROM subscriptions WHERE rowid = 7", [], |row| row.get(0)).unwrap();
        let id = SubscriptionId::from(subscription);
        let count = |condition: &str| -> u64 {
            db.query_row(
                &format!(
                    "SELECT count(*) FROM deliveries NOT INDEXED WHERE subscription_id = ?1 AND {condition}"
                ),
                [subscription],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap())
            .unwrap()
        };
        let counts = delivery_counts(&db, id).unwrap();
        let expected = DeliveryCounts {
            pending: count("state = 'pending'"),
            delivered: count("state = 'delivered'"),
            dropped: count("state = 'dropped'"),
        };
        assert!(expected.pending > 0 && expected.delivered > 0 && expected.dropped > 0, "{expected:?}");
        assert_eq!(counts, expected);
        assert_eq!(subscription_stats(&db, id).unwrap().unwrap().attempts, count("TRUE"));
        let listed = |state| {
            let query = DeliveryQuery::new().subscription(id).state(state).limit(1_000);
            list_deliveries(&db, &query).unwrap().len() as u64
        };
        assert_eq!(listed(None), count("TRUE"));
        assert_eq!(listed(Some(StateFilter::Held)), count("state = 'pending' AND held = 1"));
        assert_eq!(listed(Some(StateFilter::Dropped)), expected.dropped);
    }
}
