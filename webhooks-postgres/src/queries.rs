//! Every statement the store runs. Each function runs inside the caller's
//! transaction and returns PostgreSQL's error as it is; the caller names
//! the operation.
//!
//! Locks are taken in one order everywhere, so two transactions never wait
//! for each other: subscription rows first, in id order, then delivery
//! rows, in id order. Claims take delivery rows with `SKIP LOCKED` and
//! wait for nothing.
//!
//! A statement that changes the rows a locking sub-select picks reads them
//! as `id = ANY(ARRAY(SELECT ...))`, not `id IN (SELECT ...)`: the planner
//! may join the latter against a scan of the whole table; the former is a
//! look-up by primary key, whatever it guesses the sub-select returns.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;
use webhooks_core::sql::{
    AttemptRow, DeliveryRow, Filter, Placeholder, SqlValue, SubscriptionRow, settings_to_text,
};
use webhooks_core::{
    Attempt, AttemptResult, Audience, Delivery, DeliveryCounts, DeliveryId, DeliveryQuery, DeliveryState,
    Disabling, Enabling, Event, IdempotencyKey, NewCycle, Owner, Publication, Recovery, Reordering, Standing,
    StoreError, Subscription, SubscriptionId, SubscriptionStats, SubscriptionStatus, channels_meet,
};

use crate::codec;
use crate::error::Step;

/// The transaction every statement runs in.
pub(crate) type Db<'t> = deadpool_postgres::Transaction<'t>;

use crate::session::{Columns, Connection, Param};

// Running a statement on `Db`. Each helper takes the statement from the
// connection's cache (prepared on its first run there, so the server
// parses and plans it once per pooled connection, not once per call) and
// runs it with `params`, so each function below reads as its SQL, its
// parameters and how its rows decode. The parameters are tokio-postgres'
// own, not `Param`s: these statements bind more types than publishing
// does, and some are built at run time.

/// Runs `sql` and returns how many rows it changed.
async fn execute(db: &Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Step<u64> {
    let statement = db.prepare_cached(sql).await?;
    Ok(db.execute(&statement, params).await?)
}

/// Runs `sql` and decodes each row it returns, in order, into `C` (a
/// `Vec`, a `HashMap`): the first row that does not decode fails the step.
async fn rows<T, C, F>(db: &Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)], decode: F) -> Step<C>
where
    C: FromIterator<T>,
    F: FnMut(&Row) -> Step<T>,
{
    let statement = db.prepare_cached(sql).await?;
    db.query(&statement, params).await?.iter().map(decode).collect()
}

/// Runs `sql`, which returns exactly one row (an aggregate, say), and
/// decodes it; any other number of rows is an error.
async fn row<T, F>(db: &Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)], decode: F) -> Step<T>
where
    F: FnOnce(&Row) -> Step<T>,
{
    let statement = db.prepare_cached(sql).await?;
    decode(&db.query_one(&statement, params).await?)
}

/// Runs `sql`, which returns at most one row (a look-up by key), and
/// decodes it; `None` when there is none, and more than one is an error.
async fn optional_row<T, F>(
    db: &Db<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: F,
) -> Step<Option<T>>
where
    F: FnOnce(&Row) -> Step<T>,
{
    let statement = db.prepare_cached(sql).await?;
    db.query_opt(&statement, params).await?.as_ref().map(decode).transpose()
}

/// A delivery's columns that recording changes, as locked and then as
/// the batch leaves them.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) state: DeliveryState,
    pub(crate) attempts: u32,
    pub(crate) cycle: u32,
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// Whether the batch changed it.
    pub(crate) changed: bool,
}

/// A subscription's failure count and status, as locked and then as the
/// batch leaves them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failures {
    pub(crate) consecutive: u32,
    pub(crate) enabled: bool,
    pub(crate) ordered: bool,
    /// The count as locked: an unchanged one (a success after a success,
    /// the usual case) is not written, sparing the row a new version.
    pub(crate) locked: u32,
}

/// A subscription's columns, as [`subscription_row`] reads them; its event
/// types come as one array.
macro_rules! subscription_columns {
    () => {
        "s.id, s.url, s.secret, s.previous_secret, s.previous_valid_until, s.disabled_reason, \
         s.disabled_at, s.consecutive_failures, s.created_at, \
         ARRAY(SELECT t.event_type FROM webhooks.subscription_event_types t \
               WHERE t.subscription_id = s.id ORDER BY t.event_type), s.owner, s.settings, s.channels"
    };
}

/// A delivery's columns, as [`delivery_row`] reads them, over `d`
/// (deliveries) and `e` (events).
macro_rules! delivery_columns {
    () => {
        "d.id, e.id, e.name, d.subscription_id, e.body, d.state, d.attempts, d.next_attempt_at, e.occurred_at, \
         d.cycle, d.waiting"
    };
}

/// Locks the subscriptions listening to any of the event types `$1`, in
/// id order, and returns them with the event types they listen to among
/// those and whether each is disabled (its delivery is held): none of them
/// is disabled or enabled, nor changes what it listens to, before the
/// deliveries to it are committed. `KEY SHARE`: recording attempts (which
/// counts failures) does not wait for it, nor it for them.
pub const LOCK_LISTENERS: &str = "SELECT s.id, t.event_type, s.ordered, s.disabled_at IS NOT NULL, \
     s.channels \
     FROM webhooks.subscriptions s \
     JOIN webhooks.subscription_event_types t ON t.subscription_id = s.id \
     WHERE t.event_type = ANY($1) \
     ORDER BY s.id FOR KEY SHARE OF s";

/// The same for pairs of an owner (`$1`) and an event type (`$2`), found
/// by the owner's key whatever other owners have; with the owner.
pub const LOCK_OWNER_LISTENERS: &str = "SELECT s.id, t.event_type, s.ordered, s.disabled_at IS NOT NULL, \
     s.channels, t.owner \
     FROM unnest($1::text[], $2::text[]) AS wanted (owner, event_type) \
     JOIN webhooks.subscription_event_types t ON t.owner = wanted.owner AND t.event_type = wanted.event_type \
     JOIN webhooks.subscriptions s ON s.id = t.subscription_id \
     ORDER BY s.id FOR KEY SHARE OF s";

/// Locks up to `$3` deliveries claimable at `$1`, earliest first, none of
/// the subscriptions in `$2`. The terms match the partial index
/// `deliveries_claimable`, so PostgreSQL reads the index from the front
/// and stops at the limit; `SKIP LOCKED` passes over the rows another
/// instance is claiming or recording right now instead of waiting for it.
pub const CLAIMABLE: &str = "SELECT d.id FROM webhooks.deliveries d \
     WHERE d.state = 'pending' AND NOT d.held AND NOT d.waiting AND d.claimable_at <= $1 \
     AND d.subscription_id <> ALL($2) \
     ORDER BY d.claimable_at LIMIT $3 FOR UPDATE SKIP LOCKED";

/// Leases the locked deliveries `$1` until `$2` and returns them with their
/// events. Apart from [`CLAIMABLE`], not joined to it: by primary key, the
/// plan stays an index look-up however the planner guesses the limit.
pub const LEASE: &str = concat!(
    "UPDATE webhooks.deliveries d SET lease_until = $2 FROM webhooks.events e \
     WHERE d.id = ANY($1) AND e.seq = d.event_seq RETURNING ",
    delivery_columns!()
);

/// When the first claimable delivery can be claimed.
pub const NEXT_CLAIMABLE: &str = "SELECT claimable_at FROM webhooks.deliveries \
     WHERE state = 'pending' AND NOT held AND NOT waiting ORDER BY claimable_at LIMIT 1";

/// What [`webhooks_core::release_next`] reads of ordered subscription `$1`:
/// whether one of its pending deliveries is going, and its earliest waiting
/// one (by id: publish order). Both look-ups are by key:
/// `deliveries_pending` and `deliveries_waiting`. The caller holds the
/// subscription's row lock, as publishing to an ordered subscription does,
/// so neither misses the other's delivery.
pub const NEXT_TO_RELEASE: &str = "SELECT EXISTS (SELECT 1 FROM webhooks.deliveries g \
         WHERE g.subscription_id = $1 AND g.state = 'pending' AND NOT g.waiting), \
     (SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 AND waiting ORDER BY id LIMIT 1)";

/// Puts ordered subscription `$1`'s pending deliveries in order, as
/// [`webhooks_core::in_order`] lines them up: the earliest by id goes, the
/// others wait. For the rare changes (a resend, a
/// recovery, ordering turned on), never for claims or records.
pub(crate) const PUT_IN_ORDER: &str = "UPDATE webhooks.deliveries d SET waiting = (d.id <> first.id) \
     FROM (SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 AND state = 'pending' \
           ORDER BY id LIMIT 1) AS first \
     WHERE d.id = ANY(ARRAY(SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 \
                            AND state = 'pending' ORDER BY id FOR NO KEY UPDATE))";

/// The attempts of deliveries `$1`, each log in recording order.
pub const ATTEMPTS_OF: &str = "SELECT number, started_at, duration_us, status, response, error, cycle, \
     delivery_id FROM webhooks.attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, seq";

/// Deletes up to `$2` deliveries finished before `$1`, oldest first,
/// passing over any another transaction holds.
pub const PURGE_FINISHED: &str = "DELETE FROM webhooks.deliveries WHERE id = ANY(ARRAY( \
     SELECT id FROM webhooks.deliveries WHERE finished_at < $1 \
     ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))";

fn uuid(row: &Row, column: usize) -> Step<Uuid> {
    Ok(row.try_get(column)?)
}

fn subscription_row(row: &Row) -> Step<Subscription> {
    Ok(SubscriptionRow {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        secret: row.try_get(2)?,
        previous_secret: row.try_get(3)?,
        previous_valid_until: row.try_get(4)?,
        disabled_reason: row.try_get(5)?,
        disabled_at: row.try_get(6)?,
        consecutive_failures: row.try_get(7)?,
        created_at: row.try_get(8)?,
        event_types: row.try_get(9)?,
        owner: row.try_get(10)?,
        settings: row.try_get(11)?,
        channels: row.try_get(12)?,
    }
    .decode()?)
}

fn delivery_row(row: &Row) -> Step<Delivery> {
    Ok(DeliveryRow {
        id: row.try_get(0)?,
        event_id: row.try_get(1)?,
        event_type: row.try_get(2)?,
        subscription_id: row.try_get(3)?,
        body: row.try_get(4)?,
        state: row.try_get(5)?,
        attempts: row.try_get(6)?,
        next_attempt_at: row.try_get(7)?,
        created_at: row.try_get(8)?,
        cycle: row.try_get(9)?,
        waiting: row.try_get(10)?,
    }
    .decode()?)
}

/// Ids as the `UUID[]` a statement takes.
trait Ids {
    fn uuids(&self) -> Vec<Uuid>;
}

impl Ids for [SubscriptionId] {
    fn uuids(&self) -> Vec<Uuid> {
        self.iter().map(SubscriptionId::as_uuid).collect()
    }
}

impl Ids for [DeliveryId] {
    fn uuids(&self) -> Vec<Uuid> {
        self.iter().map(DeliveryId::as_uuid).collect()
    }
}

/// Subscription `id`'s [`Standing`], locking it against changes and
/// publishes (`FOR UPDATE`) until the transaction ends; `None` when there
/// is no such subscription.
pub(crate) async fn lock_subscription(db: &Db<'_>, id: SubscriptionId) -> Step<Option<Standing>> {
    optional_row(
        db,
        "SELECT disabled_at IS NULL, ordered FROM webhooks.subscriptions WHERE id = $1 FOR UPDATE",
        &[&id.as_uuid()],
        standing,
    )
    .await
}

/// A [`Standing`] from columns `disabled_at IS NULL, ordered`.
fn standing(row: &Row) -> Step<Standing> {
    Ok(Standing { enabled: row.try_get(0)?, ordered: row.try_get(1)? })
}

/// Adds a subscription with its event types; `false` when one with its id
/// exists.
pub(crate) async fn insert_subscription(db: &Db<'_>, subscription: &Subscription) -> Step<bool> {
    let (disabled_reason, disabled_at) = match &subscription.status {
        SubscriptionStatus::Enabled => (None, None),
        SubscriptionStatus::Disabled { reason, at } => (Some(reason.as_str()), Some(codec::micros(*at))),
    };
    let previous = subscription.previous_secret.as_ref();
    let inserted = execute(
        db,
        "INSERT INTO webhooks.subscriptions (id, url, secret, previous_secret, previous_valid_until, \
         disabled_reason, disabled_at, consecutive_failures, created_at, owner, settings, ordered, channels) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
        &[
            &subscription.id.as_uuid(),
            &subscription.url.as_str(),
            &subscription.secret.expose(),
            &previous.map(|p| p.secret.expose()),
            &previous.map(|p| codec::micros(p.valid_until)),
            &disabled_reason,
            &disabled_at,
            &i64::from(subscription.consecutive_failures),
            &codec::micros(subscription.created_at),
            &subscription.owner.as_str(),
            &settings_to_text(&subscription.settings),
            &subscription.settings.ordered,
            &channels(subscription),
        ],
    )
    .await?;
    if inserted == 0 {
        return Ok(false);
    }
    insert_event_types(db, subscription).await?;
    Ok(true)
}

/// A subscription's channels, as a `text[]` takes them.
fn channels(subscription: &Subscription) -> Vec<&str> {
    subscription.channels.iter().map(String::as_str).collect()
}

/// Replaces a locked subscription's URL, event types, secrets and
/// settings; puts its deliveries in order when ordering is turned on, and
/// lets every waiting one go when it is turned off.
pub(crate) async fn update_subscription(db: &Db<'_>, subscription: &Subscription) -> Step<()> {
    let previous = subscription.previous_secret.as_ref();
    let was_ordered: bool = row(
        db,
        "UPDATE webhooks.subscriptions s SET url = $2, secret = $3, previous_secret = $4, \
         previous_valid_until = $5, settings = $6, ordered = $7, channels = $8 \
         FROM (SELECT ordered FROM webhooks.subscriptions WHERE id = $1) AS old \
         WHERE s.id = $1 RETURNING old.ordered",
        &[
            &subscription.id.as_uuid(),
            &subscription.url.as_str(),
            &subscription.secret.expose(),
            &previous.map(|p| p.secret.expose()),
            &previous.map(|p| codec::micros(p.valid_until)),
            &settings_to_text(&subscription.settings),
            &subscription.settings.ordered,
            &channels(subscription),
        ],
        |row| Ok(row.try_get(0)?),
    )
    .await?;
    match Reordering::between(was_ordered, subscription.settings.ordered) {
        Some(Reordering::PutInOrder) => put_in_order(db, subscription.id).await?,
        // Each due when it was: its publish time or its retry time.
        Some(Reordering::ReleaseAll) => {
            execute(
                db,
                "UPDATE webhooks.deliveries SET waiting = false WHERE id = ANY(ARRAY( \
                 SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 AND waiting \
                 ORDER BY id FOR NO KEY UPDATE))",
                &[&subscription.id.as_uuid()],
            )
            .await?;
        }
        None => {}
    }
    execute(
        db,
        "DELETE FROM webhooks.subscription_event_types WHERE subscription_id = $1",
        &[&subscription.id.as_uuid()],
    )
    .await?;
    insert_event_types(db, subscription).await
}

async fn insert_event_types(db: &Db<'_>, subscription: &Subscription) -> Step<()> {
    let event_types: Vec<&str> = subscription.event_types.iter().map(String::as_str).collect();
    execute(
        db,
        "INSERT INTO webhooks.subscription_event_types (event_type, subscription_id, owner) \
         SELECT unnest($1::text[]), $2, $3",
        &[&event_types, &subscription.id.as_uuid(), &subscription.owner.as_str()],
    )
    .await?;
    Ok(())
}

/// One of `owner`'s subscriptions, in one query.
pub(crate) async fn owned_subscription(
    db: &Db<'_>,
    owner: &Owner,
    id: SubscriptionId,
) -> Step<Option<Subscription>> {
    optional_row(db, OWNED_SUBSCRIPTION, &[&id.as_uuid(), &owner.as_str()], subscription_row).await
}

/// One of owner `$2`'s subscriptions, `$1`.
pub const OWNED_SUBSCRIPTION: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM webhooks.subscriptions s WHERE s.id = $1 AND s.owner = $2"
);

/// One delivery to a subscription of `owner`'s, in one query.
pub(crate) async fn owned_delivery(db: &Db<'_>, owner: &Owner, id: DeliveryId) -> Step<Option<Delivery>> {
    optional_row(db, OWNED_DELIVERY, &[&id.as_uuid(), &owner.as_str()], delivery_row).await
}

/// Delivery `$1`, if its subscription is owner `$2`'s.
pub const OWNED_DELIVERY: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM webhooks.deliveries d JOIN webhooks.events e ON e.seq = d.event_seq \
     JOIN webhooks.subscriptions s ON s.id = d.subscription_id WHERE d.id = $1 AND s.owner = $2"
);

/// One subscription.
pub(crate) async fn subscription(db: &Db<'_>, id: SubscriptionId) -> Step<Option<Subscription>> {
    optional_row(
        db,
        concat!("SELECT ", subscription_columns!(), " FROM webhooks.subscriptions s WHERE s.id = $1"),
        &[&id.as_uuid()],
        subscription_row,
    )
    .await
}

/// The subscriptions `ids` names that exist, by id.
pub(crate) async fn subscriptions_by_id(
    db: &Db<'_>,
    ids: &[SubscriptionId],
) -> Step<HashMap<SubscriptionId, Subscription>> {
    rows(
        db,
        concat!("SELECT ", subscription_columns!(), " FROM webhooks.subscriptions s WHERE s.id = ANY($1)"),
        &[&ids.uuids()],
        |row| subscription_row(row).map(|s| (s.id, s)),
    )
    .await
}

/// Every subscription, oldest first.
pub(crate) async fn subscriptions(db: &Db<'_>) -> Step<Vec<Subscription>> {
    rows(
        db,
        concat!("SELECT ", subscription_columns!(), " FROM webhooks.subscriptions s ORDER BY s.id"),
        &[],
        subscription_row,
    )
    .await
}

/// One owner's subscriptions, oldest first.
pub const OWNER_SUBSCRIPTIONS: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM webhooks.subscriptions s WHERE s.owner = $1 ORDER BY s.id"
);

/// One owner's subscriptions, oldest first.
pub(crate) async fn owner_subscriptions(db: &Db<'_>, owner: &Owner) -> Step<Vec<Subscription>> {
    rows(db, OWNER_SUBSCRIPTIONS, &[&owner.as_str()], subscription_row).await
}

/// Locks an owner's subscriptions in id order, as deleting each would.
pub(crate) async fn lock_owner(db: &Db<'_>, owner: &Owner) -> Step<Vec<SubscriptionId>> {
    rows(
        db,
        "SELECT id FROM webhooks.subscriptions WHERE owner = $1 ORDER BY id FOR UPDATE",
        &[&owner.as_str()],
        |row| Ok(uuid(row, 0)?.into()),
    )
    .await
}

/// Deletes a locked subscription; its event types, deliveries, their
/// attempts and events go with it (foreign keys and a trigger). Its
/// deliveries are locked first, in id order, as everywhere.
pub(crate) async fn delete_subscription(db: &Db<'_>, id: SubscriptionId) -> Step<()> {
    execute(
        db,
        "SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 ORDER BY id FOR UPDATE",
        &[&id.as_uuid()],
    )
    .await?;
    execute(db, "DELETE FROM webhooks.subscriptions WHERE id = $1", &[&id.as_uuid()]).await?;
    Ok(())
}

/// Writes what disabling a locked subscription does ([`Standing::disabling`]).
pub(crate) async fn disable_subscription(db: &Db<'_>, id: SubscriptionId, disabling: &Disabling) -> Step<()> {
    let (reason, at) = match &disabling.status {
        SubscriptionStatus::Disabled { reason, at } => (Some(reason.as_str()), Some(codec::micros(*at))),
        SubscriptionStatus::Enabled => (None, None),
    };
    execute(
        db,
        "UPDATE webhooks.subscriptions SET disabled_reason = $2, disabled_at = $3 WHERE id = $1",
        &[&id.as_uuid(), &reason, &at],
    )
    .await?;
    if disabling.hold_pending {
        execute(db, HOLD_PENDING, &[&id.as_uuid()]).await?;
    }
    Ok(())
}

/// Holds subscription `$1`'s pending deliveries, locking them in id order.
pub const HOLD_PENDING: &str = "UPDATE webhooks.deliveries SET held = true WHERE id = ANY(ARRAY( \
     SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 AND state = 'pending' AND NOT held \
     ORDER BY id FOR NO KEY UPDATE))";

/// Writes what enabling a locked subscription does
/// ([`Standing::enabling`]): its held deliveries due by
/// [`Enabling::due`], set-wise.
pub(crate) async fn enable_subscription(db: &Db<'_>, id: SubscriptionId, enabling: Enabling) -> Step<()> {
    execute(
        db,
        "UPDATE webhooks.subscriptions SET disabled_reason = NULL, disabled_at = NULL, \
         consecutive_failures = $2 WHERE id = $1",
        &[&id.as_uuid(), &i64::from(enabling.consecutive_failures)],
    )
    .await?;
    let Some(by) = enabling.release_held_by else { return Ok(()) };
    execute(
        db,
        "UPDATE webhooks.deliveries SET held = false, next_attempt_at = LEAST(next_attempt_at, $2) \
         WHERE id = ANY(ARRAY(SELECT id FROM webhooks.deliveries WHERE subscription_id = $1 \
                              AND state = 'pending' AND held ORDER BY id FOR NO KEY UPDATE))",
        &[&id.as_uuid(), &codec::micros(by)],
    )
    .await?;
    Ok(())
}

/// The subscriptions a publish reaches, locked.
#[derive(Default)]
pub(crate) struct Reached {
    /// By event type and audience, in id order.
    pub(crate) listeners: Listeners,
    /// Those whose new delivery waits behind a pending one (the ordered
    /// ones; see [`Standing::placement`]), sorted.
    pub(crate) ordered: Vec<Uuid>,
    /// Those whose new delivery is held (the disabled ones), sorted.
    pub(crate) held: Vec<Uuid>,
    /// The channels of those that name any: an event reaches them only on
    /// one of these.
    pub(crate) channels: HashMap<Uuid, BTreeSet<String>>,
}

impl Reached {
    fn add(&mut self, row: &impl Columns, event_type: String, audience: String) -> Step<()> {
        let id = row.uuid(0)?;
        self.listeners.entry((event_type, audience)).or_default().push(id);
        let placement = Standing { ordered: row.boolean(2)?, enabled: !row.boolean(3)? }.placement();
        if placement.waits_behind_pending {
            self.ordered.push(id);
        }
        if placement.held {
            self.held.push(id);
        }
        let channels = row.texts(4)?;
        if !channels.is_empty() {
            self.channels.insert(id, channels.into_iter().collect());
        }
        Ok(())
    }

    /// The listeners `event` reaches among those of its type and audience.
    pub(crate) fn reached_by(&self, event: &Event) -> Cow<'_, [Uuid]> {
        let key = (event.name.clone(), event.audience.stored_key().to_owned());
        let all = self.listeners.get(&key).map_or(&[][..], Vec::as_slice);
        if self.channels.is_empty() {
            return Cow::Borrowed(all);
        }
        let hears = |id: &&Uuid| self.channels.get(*id).is_none_or(|c| channels_meet(c, &event.channels));
        Cow::Owned(all.iter().filter(hears).copied().collect())
    }
}

/// Locks the subscriptions listening to any of `event_types` (see
/// [`LOCK_LISTENERS`]) and returns them by event type, in id order, with
/// the ordered and the disabled ones among them.
pub(crate) async fn lock_listeners<C: Connection>(db: &C, events: &[&Event]) -> Step<Reached> {
    let mut reached = Reached::default();
    let mut everyone: Vec<&str> = events
        .iter()
        .filter(|event| event.audience == Audience::EveryOwner)
        .map(|event| event.name.as_str())
        .collect();
    everyone.sort_unstable();
    everyone.dedup();
    if !everyone.is_empty() {
        for row in db.fetch(LOCK_LISTENERS, &[Param::Texts(&everyone)]).await? {
            reached.add(&row, row.text(1)?, String::new())?;
        }
    }
    let mut pairs: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|event| Some((event.audience.owner()?.as_str(), event.name.as_str())))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    if !pairs.is_empty() {
        let (owners, names): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
        for row in db.fetch(LOCK_OWNER_LISTENERS, &[Param::Texts(&owners), Param::Texts(&names)]).await? {
            reached.add(&row, row.text(1)?, row.text(5)?)?;
        }
    }
    for ids in [&mut reached.ordered, &mut reached.held] {
        ids.sort_unstable();
        ids.dedup();
    }
    Ok(reached)
}

/// Takes the row locks of the ordered ones among `subscriptions` (all
/// locked `KEY SHARE` already) in id order, `NO KEY UPDATE` as recording
/// takes them: a publish and a recording to one ordered subscription take
/// turns, so a delivery made to wait always sees the recording that would
/// release it, and the other way round.
pub(crate) async fn lock_ordered<C: Connection>(db: &C, subscriptions: &[Uuid]) -> Step<()> {
    if subscriptions.is_empty() {
        return Ok(());
    }
    let sql =
        "SELECT id FROM webhooks.subscriptions WHERE id = ANY($1) AND ordered ORDER BY id FOR NO KEY UPDATE";
    db.run(sql, &[Param::Uuids(subscriptions)]).await?;
    Ok(())
}

/// Listeners by event type and audience ([`Audience::stored_key`]).
pub(crate) type Listeners = HashMap<(String, String), Vec<Uuid>>;

/// The publication of the event holding `key` in `audience` at `at`, if
/// one does: its id and those of its deliveries still kept.
pub(crate) async fn held_key<C: Connection>(
    db: &C,
    audience: &str,
    key: &IdempotencyKey,
    at: DateTime<Utc>,
) -> Step<Option<Publication>> {
    let params = [Param::Text(audience), Param::Text(&key.key), Param::Int(Some(codec::micros(at)))];
    let Some(row) = db.fetch(HELD_KEY, &params).await?.pop() else {
        return Ok(None);
    };
    Ok(Some(repeated(&row)?))
}

/// The event holding key `$2` of audience `$1` at `$3`, and its deliveries.
pub const HELD_KEY: &str = "SELECT k.event_id, ARRAY(SELECT d.id FROM webhooks.deliveries d \
         JOIN webhooks.events e ON e.seq = d.event_seq \
         WHERE d.event_seq = k.event_seq AND e.id = k.event_id ORDER BY d.id) \
     FROM webhooks.idempotency_keys k WHERE k.audience = $1 AND k.key = $2 AND k.held_until > $3";

/// A publication read back for a held key, marked repeated.
fn repeated(row: &impl Columns) -> Step<Publication> {
    let deliveries = row.uuids(1)?;
    Ok(Publication {
        event_id: row.uuid(0)?.into(),
        deliveries: deliveries.into_iter().map(DeliveryId::from).collect(),
        repeated: true,
    })
}

/// Takes `event`'s key, or finds it held: inserts the key's row, or
/// replaces one no longer held at the event's time, with an event number
/// drawn for the event; when another event holds the key (another
/// transaction's first: this waits for it to end), that event's
/// publication comes back instead.
async fn take_key<C: Connection>(
    db: &C,
    event: &Event,
    key: &IdempotencyKey,
) -> Step<Result<i64, Publication>> {
    let audience = event.audience.stored_key();
    let taken = db
        .fetch(
            "INSERT INTO webhooks.idempotency_keys AS k (audience, key, event_id, event_seq, held_until)
             VALUES ($1, $2, $3, nextval(pg_get_serial_sequence('webhooks.events', 'seq')), $4)
             ON CONFLICT (audience, key) DO UPDATE SET
                 event_id = EXCLUDED.event_id, event_seq = EXCLUDED.event_seq, held_until = EXCLUDED.held_until
             WHERE k.held_until <= $5
             RETURNING event_seq",
            &[
                Param::Text(audience),
                Param::Text(&key.key),
                Param::Uuid(event.id.as_uuid()),
                Param::Int(Some(codec::micros(key.held_until))),
                Param::Int(Some(codec::micros(event.occurred_at))),
            ],
        )
        .await?;
    if let Some(row) = taken.first() {
        return Ok(Ok(row.int(0)?));
    }
    let first = held_key(db, audience, key, event.occurred_at).await?;
    // Held, yet not found held: only a key held until a time before the
    // event's own, which the insert would have replaced.
    first.map(Err).ok_or_else(|| StoreError::backend("an idempotency key was neither taken nor held").into())
}

/// Forgets up to `limit` keys held until `now` or before; returns how many.
pub(crate) async fn forget_keys(db: &Db<'_>, now: DateTime<Utc>, limit: i64) -> Step<u64> {
    execute(db, FORGET_KEYS, &[&codec::micros(now), &limit]).await
}

/// See `forget_keys`: from the front of the expiry index, passing over
/// keys another transaction is taking.
/// The rows are named by `ctid` (locked, they stay put): a key of two
/// columns would be matched by a join over the whole table.
pub const FORGET_KEYS: &str = "DELETE FROM webhooks.idempotency_keys WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM webhooks.idempotency_keys WHERE held_until <= $1 \
     ORDER BY held_until LIMIT $2 FOR UPDATE SKIP LOCKED))";

/// Forgets the idempotency keys of `owner`'s events.
pub(crate) async fn delete_owner_keys(db: &Db<'_>, owner: &Owner) -> Step<u64> {
    execute(db, DELETE_OWNER_KEYS, &[&owner.as_str()]).await
}

/// See `delete_owner_keys`; `$1` is the owner.
pub const DELETE_OWNER_KEYS: &str = "DELETE FROM webhooks.idempotency_keys WHERE audience = $1";

/// Stores the event's body once and one pending delivery of it, due at
/// `occurred_at`, for each of `listeners` (locked, enabled). An event
/// nobody listens to leaves nothing behind but its key. A keyed event takes
/// its key first; when the key is held, this stores nothing and returns
/// the first event's publication, marked repeated.
pub(crate) async fn publish<C: Connection>(
    db: &C,
    event: &Event,
    body: &[u8],
    listeners: &[Uuid],
    reached: &Reached,
) -> Step<Publication> {
    let seq = match &event.idempotency_key {
        Some(key) => match take_key(db, event, key).await? {
            Ok(seq) => Some(seq),
            Err(first) => return Ok(first),
        },
        None => None,
    };
    if listeners.is_empty() {
        return Ok(Publication { event_id: event.id, deliveries: Vec::new(), repeated: false });
    }
    let deliveries: Vec<DeliveryId> = listeners.iter().map(|_| DeliveryId::at(event.occurred_at)).collect();
    insert_deliveries(db, event, seq, body, &deliveries, listeners, &reached.ordered, &reached.held).await?;
    Ok(Publication { event_id: event.id, deliveries, repeated: false })
}

/// Events published together in one statement: those with no idempotency
/// key and no ordered listener, the usual case. A batch of a thousand
/// events costs one round trip and one statement, not a thousand.
#[derive(Default)]
pub(crate) struct PublishBatch<'a> {
    ids: Vec<Uuid>,
    names: Vec<&'a str>,
    occurred_at: Vec<i64>,
    bodies: Vec<&'a [u8]>,
    audiences: Vec<&'a str>,
    deliveries: Vec<Uuid>,
    /// The position in the events above, from 1, of each delivery's event.
    of_event: Vec<i64>,
    subscriptions: Vec<Uuid>,
    /// Each delivery's subscription is disabled.
    held: Vec<bool>,
}

impl<'a> PublishBatch<'a> {
    /// Whether `event` to `listeners` can go in a batch: with a key it may
    /// be a repeat, and an ordered listener's delivery may have to wait
    /// behind one published earlier in the same batch.
    pub(crate) fn fits(event: &Event, listeners: &[Uuid], ordered: &[Uuid]) -> bool {
        event.idempotency_key.is_none() && !listeners.iter().any(|id| ordered.binary_search(id).is_ok())
    }

    /// Adds `event` with one delivery per listener, held for those among
    /// `held` (sorted); an event nobody listens to is not stored.
    pub(crate) fn add(
        &mut self,
        event: &'a Event,
        body: &'a [u8],
        listeners: &[Uuid],
        held: &[Uuid],
    ) -> Publication {
        let deliveries: Vec<DeliveryId> =
            listeners.iter().map(|_| DeliveryId::at(event.occurred_at)).collect();
        if !deliveries.is_empty() {
            self.ids.push(event.id.as_uuid());
            self.names.push(&event.name);
            self.occurred_at.push(codec::micros(event.occurred_at));
            self.bodies.push(body);
            self.audiences.push(event.audience.stored_key());
            let position = i64::try_from(self.ids.len()).unwrap_or(i64::MAX);
            for (delivery, subscription) in deliveries.iter().zip(listeners) {
                self.deliveries.push(delivery.as_uuid());
                self.of_event.push(position);
                self.subscriptions.push(*subscription);
                self.held.push(held.binary_search(subscription).is_ok());
            }
        }
        Publication { event_id: event.id, deliveries, repeated: false }
    }

    /// Stores the batch: every event, then every delivery, due when its
    /// event occurred. The events' numbers are drawn first, so each
    /// delivery finds its event by position, not by a look-up.
    pub(crate) async fn insert<C: Connection>(self, db: &C) -> Step<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        db.run(
                "WITH input AS MATERIALIZED (
                     SELECT nextval(pg_get_serial_sequence('webhooks.events', 'seq')) AS seq, i.*
                     FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bytea[], $5::text[])
                         WITH ORDINALITY AS i (id, name, occurred_at, body, audience, position)
                 ),
                 event AS (
                     INSERT INTO webhooks.events (seq, id, name, occurred_at, body, audience)
                     OVERRIDING SYSTEM VALUE
                     SELECT seq, id, name, occurred_at, body, audience FROM input
                 )
                 INSERT INTO webhooks.deliveries
                     (id, event_seq, subscription_id, state, attempts, next_attempt_at, held, waiting)
                 SELECT d.id, input.seq, d.subscription_id, 'pending', 0, input.occurred_at, d.held, false
                 FROM unnest($6::uuid[], $7::bigint[], $8::uuid[], $9::bool[]) AS d (id, position, subscription_id, held)
                 JOIN input ON input.position = d.position",
            &[
                Param::Uuids(&self.ids),
                Param::Texts(&self.names),
                Param::Ints(&self.occurred_at),
                Param::ByteStrings(&self.bodies),
                Param::Texts(&self.audiences),
                Param::Uuids(&self.deliveries),
                Param::Ints(&self.of_event),
                Param::Uuids(&self.subscriptions),
                Param::Bools(&self.held),
            ],
        )
        .await?;
        Ok(())
    }
}

/// Stores the event and one delivery of it per `(deliveries, subscriptions)`
/// pair, in one statement; one for a subscription among `ordered` (as
/// locked for this transaction) that has a pending delivery waits.
#[allow(clippy::too_many_arguments)]
async fn insert_deliveries<C: Connection>(
    db: &C,
    event: &Event,
    seq: Option<i64>,
    body: &[u8],
    deliveries: &[DeliveryId],
    subscriptions: &[Uuid],
    ordered: &[Uuid],
    held: &[Uuid],
) -> Step<u64> {
    db.run(
            "WITH event AS (
                 INSERT INTO webhooks.events (seq, id, name, occurred_at, body, audience)
                 OVERRIDING SYSTEM VALUE
                 VALUES (coalesce($9, nextval(pg_get_serial_sequence('webhooks.events', 'seq'))), $1, $2, $3, $4, $8)
                 RETURNING seq
             )
             INSERT INTO webhooks.deliveries
                 (id, event_seq, subscription_id, state, attempts, next_attempt_at, held, waiting)
             SELECT d.id, event.seq, d.subscription_id, 'pending', 0, $3, d.subscription_id = ANY($7::uuid[]),
                    d.subscription_id = ANY($10::uuid[])
                    AND EXISTS (SELECT 1 FROM webhooks.deliveries p
                                WHERE p.subscription_id = d.subscription_id AND p.state = 'pending')
             FROM event, unnest($5::uuid[], $6::uuid[]) AS d (id, subscription_id)",
            &[
                Param::Uuid(event.id.as_uuid()),
                Param::Text(&event.name),
                Param::Int(Some(codec::micros(event.occurred_at))),
                Param::Bytes(body),
                Param::Uuids(&deliveries.uuids()),
                Param::Uuids(subscriptions),
                Param::Uuids(held),
                Param::Text(event.audience.stored_key()),
                Param::Int(seq),
                Param::Uuids(ordered),
            ],
        )
        .await
}

/// Stores `event` and one pending delivery of it for `subscription` alone,
/// held if the subscription is disabled; `None` when there is no such
/// subscription. The subscription is locked (`KEY SHARE`) first, as a
/// publish locks its listeners.
pub(crate) async fn publish_to(
    db: &Db<'_>,
    event: &Event,
    body: &[u8],
    subscription: SubscriptionId,
) -> Step<Option<DeliveryId>> {
    let Some(found) = optional_row(
        db,
        "SELECT disabled_at IS NULL, ordered FROM webhooks.subscriptions WHERE id = $1 FOR KEY SHARE",
        &[&subscription.as_uuid()],
        standing,
    )
    .await?
    else {
        return Ok(None);
    };
    let placement = found.placement();
    let only = [subscription.as_uuid()];
    let ordered: &[Uuid] = if placement.waits_behind_pending { &only } else { &[] };
    let held: &[Uuid] = if placement.held { &only } else { &[] };
    lock_ordered(db, ordered).await?;
    let id = DeliveryId::at(event.occurred_at);
    insert_deliveries(db, event, None, body, &[id], &only, ordered, held).await?;
    Ok(Some(id))
}

/// Leases up to `limit` deliveries claimable at `now` until `lease_until`,
/// none of `skip`'s, and returns them earliest first.
pub(crate) async fn claim(
    db: &Db<'_>,
    now: DateTime<Utc>,
    limit: i64,
    lease_until: DateTime<Utc>,
    skip: &[SubscriptionId],
) -> Step<Vec<Delivery>> {
    let due: Vec<Uuid> =
        rows(db, CLAIMABLE, &[&codec::micros(now), &skip.uuids(), &limit], |row| uuid(row, 0)).await?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let mut leased: HashMap<Uuid, Delivery> =
        rows(db, LEASE, &[&due, &codec::micros(lease_until)], |row| Ok((uuid(row, 0)?, delivery_row(row)?)))
            .await?;
    // RETURNING keeps no order; the claim order is the locking order.
    Ok(due.iter().filter_map(|id| leased.remove(id)).collect())
}

/// Sets the leases of deliveries `ids` to end at `until`.
pub(crate) async fn release(db: &Db<'_>, ids: &[DeliveryId], until: DateTime<Utc>) -> Step<()> {
    execute(
        db,
        "UPDATE webhooks.deliveries SET lease_until = $2 WHERE id = ANY(ARRAY( \
         SELECT id FROM webhooks.deliveries WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE))",
        &[&ids.uuids(), &codec::micros(until)],
    )
    .await?;
    Ok(())
}

/// Deliveries matching `query`, in id order.
pub(crate) async fn list_deliveries(db: &Db<'_>, query: &DeliveryQuery) -> Step<Vec<Delivery>> {
    let filter = Filter::deliveries(query, Placeholder::Dollar);
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = filter
        .values
        .into_iter()
        .map(|value| -> Box<dyn ToSql + Sync + Send> {
            match value {
                SqlValue::Id(id) => Box::new(id),
                SqlValue::Text(text) => Box::new(text),
                SqlValue::Micros(micros) => Box::new(micros),
            }
        })
        .collect();
    values.push(Box::new(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhooks.deliveries d JOIN webhooks.events e ON e.seq = d.event_seq",
            " JOIN webhooks.subscriptions s ON s.id = d.subscription_id",
            " WHERE {} ORDER BY d.id LIMIT ${}"
        ),
        filter.condition,
        values.len()
    );
    let values: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
    rows(db, &sql, &values, delivery_row).await
}

/// Resends one delivery as [`Standing::resend`] says; `false` when there
/// is none. The subscription is locked first (`NO KEY UPDATE`, as
/// recording locks it), so neither a disable nor a publish or recording to
/// it can slip in between.
pub(crate) async fn resend(db: &Db<'_>, id: DeliveryId, now: DateTime<Utc>) -> Step<bool> {
    let Some((found, subscription)) = optional_row(
        db,
        "SELECT s.disabled_at IS NULL, s.ordered, s.id FROM webhooks.subscriptions s \
         WHERE s.id = (SELECT subscription_id FROM webhooks.deliveries WHERE id = $1) FOR NO KEY UPDATE",
        &[&id.as_uuid()],
        |row| Ok((standing(row)?, row.try_get::<_, Uuid>(2)?)),
    )
    .await?
    else {
        return Ok(false);
    };
    let resend = found.resend(now);
    let cycle = resend.cycle;
    let attempts = i64::from(NewCycle::ATTEMPTS);
    let params: [&(dyn ToSql + Sync); 4] = [&id.as_uuid(), &codec::micros(cycle.due), &cycle.held, &attempts];
    let updated = execute(
        db,
        "UPDATE webhooks.deliveries SET state = 'pending', attempts = $4, cycle = cycle + 1, \
         next_attempt_at = $2, lease_until = NULL, finished_at = NULL, held = $3, waiting = false \
         WHERE id = $1",
        &params,
    )
    .await?;
    if updated == 0 {
        return Ok(false);
    }
    if resend.put_in_order {
        put_in_order(db, subscription.into()).await?;
    }
    Ok(true)
}

/// See [`PUT_IN_ORDER`].
async fn put_in_order(db: &Db<'_>, subscription: SubscriptionId) -> Step<()> {
    execute(db, PUT_IN_ORDER, &[&subscription.as_uuid()]).await?;
    Ok(())
}

/// Lets a locked ordered subscription's next delivery go, as
/// [`webhooks_core::release_next`] picks it from what [`NEXT_TO_RELEASE`]
/// reads.
pub(crate) async fn release_next(db: &Db<'_>, subscription: SubscriptionId, now: DateTime<Utc>) -> Step<()> {
    let (pending_going, earliest_waiting) = row(db, NEXT_TO_RELEASE, &[&subscription.as_uuid()], |row| {
        let earliest_waiting: Option<Uuid> = row.try_get(1)?;
        Ok((row.try_get(0)?, earliest_waiting))
    })
    .await?;
    let Some(released) =
        webhooks_core::release_next(pending_going, earliest_waiting.map(DeliveryId::from), now)
    else {
        return Ok(());
    };
    execute(
        db,
        "UPDATE webhooks.deliveries SET waiting = false, next_attempt_at = $2, lease_until = NULL \
         WHERE id = $1",
        &[&released.delivery.as_uuid(), &codec::micros(released.due)],
    )
    .await?;
    Ok(())
}

/// Recovers a locked subscription as [`Standing::recovery`] says; returns
/// how many deliveries restarted. The statement's filter is
/// [`Recovery::restarts`] set-wise: dropped since `$3`, or held when `$4`.
pub(crate) async fn recover(db: &Db<'_>, id: SubscriptionId, recovery: &Recovery) -> Step<u64> {
    let attempts = i64::from(NewCycle::ATTEMPTS);
    let params: [&(dyn ToSql + Sync); 6] = [
        &id.as_uuid(),
        &codec::micros(recovery.cycle.due),
        &codec::micros(recovery.dropped_since),
        &recovery.restart_held,
        &recovery.cycle.held,
        &attempts,
    ];
    let restarted = execute(
        db,
        "UPDATE webhooks.deliveries SET state = 'pending', attempts = $6, cycle = cycle + 1, \
         next_attempt_at = $2, lease_until = NULL, finished_at = NULL, held = $5, waiting = false \
         WHERE id = ANY(ARRAY( \
         SELECT d.id FROM webhooks.deliveries d JOIN webhooks.events e ON e.seq = d.event_seq \
         WHERE d.subscription_id = $1 \
           AND ((d.state = 'dropped' AND e.occurred_at >= $3) OR ($4 AND d.state = 'pending' AND d.held)) \
         ORDER BY d.id FOR NO KEY UPDATE OF d))",
        &params,
    )
    .await?;
    enable_subscription(db, id, recovery.enabling).await?;
    if recovery.put_in_order {
        put_in_order(db, id).await?;
    }
    Ok(restarted)
}

/// What a subscription's attempts add up to; `None` when there is no such
/// subscription.
pub(crate) async fn subscription_stats(db: &Db<'_>, id: SubscriptionId) -> Step<Option<SubscriptionStats>> {
    let Some(consecutive_failures) = optional_row(
        db,
        "SELECT consecutive_failures FROM webhooks.subscriptions WHERE id = $1",
        &[&id.as_uuid()],
        |row| codec::count(row.try_get(0)?, "consecutive failures"),
    )
    .await?
    else {
        return Ok(None);
    };
    let stats = row(
        db,
        "SELECT count(*), \
                count(*) FILTER (WHERE a.status BETWEEN 200 AND 299), \
                max(a.started_at) FILTER (WHERE a.status BETWEEN 200 AND 299), \
                max(a.started_at) FILTER (WHERE NOT coalesce(a.status BETWEEN 200 AND 299, false)) \
         FROM webhooks.deliveries d JOIN webhooks.attempts a ON a.delivery_id = d.id \
         WHERE d.subscription_id = $1",
        &[&id.as_uuid()],
        |row| {
            Ok(SubscriptionStats {
                attempts: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                succeeded: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
                last_success_at: row.try_get::<_, Option<i64>>(2)?.map(codec::time),
                last_failure_at: row.try_get::<_, Option<i64>>(3)?.map(codec::time),
                consecutive_failures,
            })
        },
    )
    .await?;
    Ok(Some(stats))
}

/// Pending deliveries in the store, held ones included.
/// Every pending delivery, counted in the partial index of them alone.
pub const PENDING_COUNT: &str = "SELECT count(*) FROM webhooks.deliveries WHERE state = 'pending'";

pub(crate) async fn pending_count(db: &Db<'_>) -> Step<u64> {
    row(db, PENDING_COUNT, &[], |row| Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))).await
}

/// One delivery.
pub(crate) async fn delivery(db: &Db<'_>, id: DeliveryId) -> Step<Option<Delivery>> {
    optional_row(
        db,
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM webhooks.deliveries d JOIN webhooks.events e ON e.seq = d.event_seq WHERE d.id = $1"
        ),
        &[&id.as_uuid()],
        delivery_row,
    )
    .await
}

/// The subscriptions of the deliveries `ids` names that exist.
pub(crate) async fn subscriptions_of(
    db: &Db<'_>,
    ids: &[DeliveryId],
) -> Step<HashMap<DeliveryId, SubscriptionId>> {
    rows(
        db,
        "SELECT id, subscription_id FROM webhooks.deliveries WHERE id = ANY($1)",
        &[&ids.uuids()],
        |row| Ok((uuid(row, 0)?.into(), uuid(row, 1)?.into())),
    )
    .await
}

/// Locks subscriptions `ids` and returns the failure counts and status of
/// those that exist. Those `counts` says are counted (read first without
/// a lock) are locked `NO KEY UPDATE` against other recorders, in id
/// order; the others only `KEY SHARE` (no change of status, ordering or
/// listeners meanwhile), after them, and never more: a share lock that
/// waited for nothing stronger than itself cannot close a cycle. A shared
/// one is read with no failures: every attempt of it in the batch
/// succeeded, so the batch comes before any failure recorded meanwhile,
/// and there is nothing to write.
pub(crate) async fn lock_subscriptions_to_count(
    db: &Db<'_>,
    ids: &[SubscriptionId],
    counts: impl Fn(SubscriptionId, &Failures) -> bool,
) -> Step<HashMap<SubscriptionId, Failures>> {
    let (counted, shared): (Vec<_>, Vec<_>) =
        failures(db, ids, "").await?.into_iter().partition(|(id, failures)| counts(*id, failures));
    let counted: Vec<SubscriptionId> = counted.into_iter().map(|(id, _)| id).collect();
    let shared: Vec<SubscriptionId> = shared.into_iter().map(|(id, _)| id).collect();
    let mut found = failures(db, &counted, "FOR NO KEY UPDATE").await?;
    let mut late = Vec::new();
    for (id, failures) in failures(db, &shared, "FOR KEY SHARE").await? {
        if failures.ordered {
            // Ordered since the first read: the rare case worth a stronger lock.
            late.push(id);
        } else {
            found.insert(id, Failures { consecutive: 0, locked: 0, ..failures });
        }
    }
    found.extend(failures(db, &late, "FOR NO KEY UPDATE").await?);
    Ok(found)
}

/// The failure counts and status of subscriptions `ids`, locked as `lock`
/// says, in id order.
async fn failures(
    db: &Db<'_>,
    ids: &[SubscriptionId],
    lock: &str,
) -> Step<HashMap<SubscriptionId, Failures>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT id, consecutive_failures, disabled_at IS NULL, ordered FROM webhooks.subscriptions \
         WHERE id = ANY($1) ORDER BY id {lock}"
    );
    rows(db, &sql, &[&ids.uuids()], |row| {
        let consecutive = codec::count(row.try_get(1)?, "consecutive failures")?;
        Ok((
            uuid(row, 0)?.into(),
            Failures { consecutive, enabled: row.try_get(2)?, ordered: row.try_get(3)?, locked: consecutive },
        ))
    })
    .await
}

/// Locks deliveries `ids` in id order, and returns what recording changes
/// of those that exist, as it is now.
pub(crate) async fn lock_deliveries(db: &Db<'_>, ids: &[DeliveryId]) -> Step<HashMap<DeliveryId, Progress>> {
    rows(
        db,
        "SELECT id, state, attempts, next_attempt_at, finished_at, cycle FROM webhooks.deliveries \
         WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        &[&ids.uuids()],
        |row| {
            let progress = Progress {
                state: codec::state(row.try_get(1)?)?,
                attempts: codec::count(row.try_get(2)?, "attempts")?,
                cycle: codec::count(row.try_get(5)?, "cycle")?,
                next_attempt_at: row.try_get::<_, Option<i64>>(3)?.map(codec::time),
                finished_at: row.try_get::<_, Option<i64>>(4)?.map(codec::time),
                changed: false,
            };
            Ok((uuid(row, 0)?.into(), progress))
        },
    )
    .await
}

/// Appends attempts to their deliveries' logs, in order, in one statement.
pub(crate) async fn insert_attempts(db: &Db<'_>, attempts: &[&Attempt]) -> Step<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut columns = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cycles = Vec::with_capacity(attempts.len());
    for attempt in attempts {
        let (status, response, error) = match &attempt.result {
            AttemptResult::Response { status, body } => {
                (Some(i32::from(*status)), Some(codec::text(body).into_owned()), None)
            }
            AttemptResult::Error(error) => (None, None, Some(codec::text(error).into_owned())),
        };
        columns.0.push(attempt.delivery_id.as_uuid());
        columns.1.push(i64::from(attempt.number));
        columns.2.push(codec::micros(attempt.started_at));
        columns.3.push(codec::duration_micros(attempt.duration));
        columns.4.push(status);
        columns.5.push(response);
        columns.6.push(error);
        cycles.push(i64::from(attempt.cycle));
    }
    let (ids, numbers, started, durations, statuses, responses, errors) = &columns;
    execute(
        db,
        "INSERT INTO webhooks.attempts \
             (delivery_id, number, started_at, duration_us, status, response, error, cycle) \
         SELECT a.delivery_id, a.number, a.started_at, a.duration_us, a.status, a.response, a.error, a.cycle \
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::int[], $6::text[], $7::text[], \
                     $8::bigint[]) \
              WITH ORDINALITY AS a (delivery_id, number, started_at, duration_us, status, response, error, \
                                    cycle, n) \
         ORDER BY a.n",
        &[ids, numbers, started, durations, statuses, responses, errors, &cycles],
    )
    .await?;
    Ok(())
}

/// Writes the deliveries a batch changed, ending their leases, in one
/// statement. A finished delivery is no longer held: `held` marks only
/// pending deliveries of a disabled subscription. The `= ANY` term, redundant beside the join, lets the planner
/// look them up by key.
pub(crate) async fn write_progress(db: &Db<'_>, progress: &HashMap<DeliveryId, Progress>) -> Step<()> {
    let changed: Vec<(&DeliveryId, &Progress)> = progress.iter().filter(|(_, p)| p.changed).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.iter().map(|(id, _)| id.as_uuid()).collect();
    let attempts: Vec<i64> = changed.iter().map(|(_, p)| i64::from(p.attempts)).collect();
    let states: Vec<&str> = changed.iter().map(|(_, p)| p.state.as_str()).collect();
    let next: Vec<Option<i64>> = changed.iter().map(|(_, p)| p.next_attempt_at.map(codec::micros)).collect();
    let finished: Vec<Option<i64>> = changed.iter().map(|(_, p)| p.finished_at.map(codec::micros)).collect();
    execute(db, WRITE_PROGRESS, &[&ids, &attempts, &states, &next, &finished]).await?;
    Ok(())
}

/// See `write_progress`.
pub const WRITE_PROGRESS: &str = "UPDATE webhooks.deliveries d SET attempts = v.attempts, \
     lease_until = NULL, state = v.state, next_attempt_at = v.next_attempt_at, finished_at = v.finished_at, \
     held = d.held AND v.state = 'pending', waiting = d.waiting AND v.state = 'pending' \
     FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) \
          AS v (id, attempts, state, next_attempt_at, finished_at) \
     WHERE d.id = v.id AND d.id = ANY($1)";

/// Writes the failure counts a batch changed, in one statement.
pub(crate) async fn write_failures(db: &Db<'_>, failures: &HashMap<SubscriptionId, Failures>) -> Step<()> {
    let changed: Vec<(&SubscriptionId, &Failures)> =
        failures.iter().filter(|(_, f)| f.consecutive != f.locked).collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changed.iter().map(|(id, _)| id.as_uuid()).collect();
    let counts: Vec<i64> = changed.iter().map(|(_, f)| i64::from(f.consecutive)).collect();
    execute(
        db,
        "UPDATE webhooks.subscriptions s SET consecutive_failures = v.consecutive_failures \
         FROM unnest($1::uuid[], $2::bigint[]) AS v (id, consecutive_failures) \
         WHERE s.id = v.id AND s.id = ANY($1)",
        &[&ids, &counts],
    )
    .await?;
    Ok(())
}

fn attempt_row(row: &Row, id: DeliveryId) -> Step<Attempt> {
    Ok(AttemptRow {
        number: row.try_get(0)?,
        started_at: row.try_get(1)?,
        duration_us: row.try_get(2)?,
        status: row.try_get::<_, Option<i32>>(3)?.map(i64::from),
        response: row.try_get(4)?,
        error: row.try_get(5)?,
        cycle: row.try_get(6)?,
    }
    .decode(id)?)
}

/// A delivery's attempts in the order they were recorded.
pub(crate) async fn attempts(db: &Db<'_>, id: DeliveryId) -> Step<Vec<Attempt>> {
    rows(
        db,
        "SELECT number, started_at, duration_us, status, response, error, cycle FROM webhooks.attempts \
         WHERE delivery_id = $1 ORDER BY seq",
        &[&id.as_uuid()],
        |row| attempt_row(row, id),
    )
    .await
}

/// The attempts of deliveries `ids`, in one statement, in the order of
/// `ids`, each log in recording order.
pub(crate) async fn attempts_of(db: &Db<'_>, ids: &[DeliveryId]) -> Step<Vec<(DeliveryId, Vec<Attempt>)>> {
    let attempts: Vec<(DeliveryId, Attempt)> = rows(db, ATTEMPTS_OF, &[&ids.uuids()], |row| {
        let id = DeliveryId::from(uuid(row, 7)?);
        Ok((id, attempt_row(row, id)?))
    })
    .await?;
    let mut logs: HashMap<DeliveryId, Vec<Attempt>> = HashMap::new();
    for (id, attempt) in attempts {
        logs.entry(id).or_default().push(attempt);
    }
    Ok(ids.iter().map(|id| (*id, logs.get(id).cloned().unwrap_or_default())).collect())
}

/// A subscription's deliveries counted by state.
/// Subscription `$1`'s deliveries counted by state, from its index entries.
pub const DELIVERY_COUNTS: &str =
    "SELECT state, count(*) FROM webhooks.deliveries WHERE subscription_id = $1 GROUP BY state";

pub(crate) async fn delivery_counts(db: &Db<'_>, id: SubscriptionId) -> Step<DeliveryCounts> {
    let by_state: Vec<(DeliveryState, u64)> = rows(db, DELIVERY_COUNTS, &[&id.as_uuid()], |row| {
        let count = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
        Ok((codec::state(row.try_get(0)?)?, count))
    })
    .await?;
    let mut counts = DeliveryCounts::default();
    for (state, count) in by_state {
        counts.add(state, count);
    }
    Ok(counts)
}

/// When the first claimable delivery can be claimed, if any.
pub(crate) async fn next_claimable(db: &Db<'_>) -> Step<Option<DateTime<Utc>>> {
    optional_row(db, NEXT_CLAIMABLE, &[], |row| Ok(codec::time(row.try_get(0)?))).await
}

/// Deletes up to `limit` deliveries finished before `before`, with their
/// attempts (and events no delivery needs any more); returns how many.
pub(crate) async fn purge_finished(db: &Db<'_>, before: DateTime<Utc>, limit: i64) -> Step<u64> {
    execute(db, PURGE_FINISHED, &[&codec::micros(before), &limit]).await
}
