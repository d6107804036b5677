//! The connection's settings and the schema, with its versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`. Migrations run in order
//! in one `BEGIN IMMEDIATE` transaction, so processes opening the same file
//! at once migrate it once, and a failed migration leaves the file as it was.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use webhooks_core::sql::SchemaTooNew;

use crate::error::Error;

/// How long a statement waits for another connection's write lock before it
/// fails with "database is locked".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`.
/// Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this crate writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Times are unix microseconds (`INTEGER`); ids are UUIDs as 16-byte
/// `BLOB`s, and UUIDv7 ids sort by creation time.
const V1: &str = "
CREATE TABLE subscriptions (
    id                   BLOB PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_valid_until INTEGER,
    -- Both NULL while the subscription is enabled.
    disabled_reason      TEXT,
    disabled_at          INTEGER,
    consecutive_failures INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_valid_until IS NULL)),
    CHECK ((disabled_reason IS NULL) = (disabled_at IS NULL))
);

-- Keyed by event type first: publishing looks subscriptions up by it.
CREATE TABLE subscription_event_types (
    event_type      TEXT NOT NULL,
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, subscription_id)
) WITHOUT ROWID;
CREATE INDEX subscription_event_types_by_subscription ON subscription_event_types (subscription_id);

-- One row per publish that reached a subscription: the body is stored once,
-- however many deliveries carry it, and lives as long as one of them does.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    body        BLOB NOT NULL
);

CREATE TABLE deliveries (
    id              BLOB PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped')),
    attempts        INTEGER NOT NULL,
    -- NULL once delivered or dropped.
    next_attempt_at INTEGER,
    -- The end of the last claim's lease; NULL once an attempt is recorded.
    lease_until     INTEGER,
    -- 1 while the subscription is disabled: kept, not claimed.
    held            INTEGER NOT NULL DEFAULT 0,
    -- When it was delivered or dropped; what purging goes by.
    finished_at     INTEGER,
    -- When it can be claimed: its due time, or the end of its lease if later.
    claimable_at    INTEGER GENERATED ALWAYS AS
                        (max(next_attempt_at, coalesce(lease_until, next_attempt_at))) VIRTUAL,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL))
);
-- Only what can be claimed, in claim order: claiming reads from the front,
-- so its cost does not grow with the queue or with held deliveries.
CREATE INDEX deliveries_claimable ON deliveries (claimable_at) WHERE state = 'pending' AND held = 0;
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, state);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- An event goes with its last delivery, however that is deleted.
CREATE TRIGGER deliveries_delete_unreferenced_event AFTER DELETE ON deliveries
WHEN NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = OLD.event_seq)
BEGIN
    DELETE FROM events WHERE seq = OLD.event_seq;
END;

CREATE TABLE attempts (
    -- Recording order.
    seq         INTEGER PRIMARY KEY,
    delivery_id BLOB NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    -- The response's status and the start of its body, or why none came.
    status      INTEGER,
    response    TEXT,
    error       TEXT,
    CHECK ((status IS NULL) = (error IS NOT NULL)),
    CHECK ((status IS NULL) = (response IS NULL))
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, seq);
";

/// Pending deliveries alone, so counting them (the dispatcher's gauge, a
/// subscription's counts) reads no finished one.
const V2: &str = "
CREATE INDEX deliveries_pending ON deliveries (subscription_id) WHERE state = 'pending';
";

/// Owners: every subscription has one (`default` for those made before), an
/// event is for one owner or for all (`audience` empty), and an event may
/// hold an idempotency key, unique within its audience. An owner never
/// changes, so the event types carry it too: publishing looks one owner's
/// listeners up by key, however many subscriptions other owners have.
const V3: &str = "
ALTER TABLE subscriptions ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscriptions_by_owner ON subscriptions (owner, id);
ALTER TABLE subscription_event_types ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscription_event_types_by_owner ON subscription_event_types (owner, event_type);
ALTER TABLE events ADD COLUMN audience TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_idempotency_key ON events (audience, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

/// Endpoint settings, delivery cycles and ordered delivery. `settings` is
/// JSON (secret header values included); `ordered` repeats its flag for the
/// statements that need it. Attempts carry their delivery's cycle. A
/// `waiting` delivery is pending behind an earlier one of its ordered
/// subscription: the claim index leaves it out, and `deliveries_waiting`
/// finds a subscription's earliest one when the one before finishes. Its
/// `next_attempt_at` stays set (the table's checks want it for every
/// pending delivery) and is not reported while it waits.
const V4: &str = "
ALTER TABLE subscriptions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE subscriptions ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN cycle INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN cycle INTEGER NOT NULL DEFAULT 1;
DROP INDEX deliveries_claimable;
CREATE INDEX deliveries_claimable ON deliveries (claimable_at) WHERE state = 'pending' AND held = 0 AND waiting = 0;
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_pending ON deliveries (subscription_id, waiting) WHERE state = 'pending';
CREATE INDEX deliveries_waiting ON deliveries (subscription_id, id) WHERE waiting = 1;
";

/// Opens `path` (creating it if missing), sets the connection up and
/// brings the schema up to date.
pub(crate) fn open(path: &Path) -> Result<Connection, Error> {
    let failed = |source| Error::Open { path: path.to_owned(), source };
    let mut connection = Connection::open(path).map_err(failed)?;
    configure(&connection).map_err(failed)?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(failed)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NotWal { path: path.to_owned(), mode });
    }
    migrate(&mut connection)?;
    Ok(connection)
}

/// The per-connection settings.
///
/// `synchronous = FULL`: in WAL mode SQLite then syncs the log on every
/// commit, so a transaction that committed survives a power cut. `NORMAL`
/// syncs only at checkpoints; it cannot corrupt the file either, but the
/// last commits before a power cut may vanish: an event whose publish
/// returned would be lost, which is what this store exists to prevent. The
/// cost is one sync per transaction, which the batch operations share.
/// Claims and releases alone commit with `NORMAL` (see `lease_write`): losing
/// a lease only makes a delivery claimable again.
fn configure(connection: &Connection) -> rusqlite::Result<()> {
    // Plans that do not depend on the values bound. Without this, SQLite
    // (built with STAT4) may mark a statement to be compiled again whenever
    // a new value is bound to it, and the store's hot statements are bound
    // anew for every delivery.
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "synchronous", "FULL")
}

/// Applies the migrations the file lacks, or refuses a file from a newer
/// version of this crate.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), Error> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| Error::Migrate { version: VERSION, source })?;
    let found: i64 = transaction
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| Error::Migrate { version: VERSION, source })?;
    if found > VERSION {
        return Err(SchemaTooNew { store: "webhooks-sqlite", found, supported: VERSION }.into());
    }
    if found < 0 {
        return Err(Error::SchemaUnknown { found });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
        transaction
            .execute_batch(sql)
            .and_then(|()| transaction.pragma_update(None, "user_version", version))
            .map_err(|source| Error::Migrate { version, source })?;
    }
    transaction.commit().map_err(|source| Error::Migrate { version: VERSION, source })
}
