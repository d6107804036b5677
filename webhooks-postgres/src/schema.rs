//! The schema, with its versioned migrations.
//!
//! Everything lives in the schema `webhooks`, beside the host's own tables.
//! Migrations run in one transaction that first takes a transaction-scoped
//! advisory lock, so instances starting at once migrate the database once,
//! one after the other, and a failed migration leaves it as it was
//! (PostgreSQL's DDL is transactional).

use deadpool_postgres::Object;

use webhooks_core::sql::SchemaTooNew;

use crate::error::Error;

/// The advisory lock key migrations hold: "webhooks" in ASCII. Any session
/// of the same database asking for it waits until the migrating one commits.
pub(crate) const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b73;

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`.
/// Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The schema version this crate writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Times are unix microseconds (`BIGINT`), as in the SQLite store, so every
/// `DateTime<Utc>` round-trips exactly, `MAX_UTC` ("never") included; ids
/// are `UUID`s, and UUIDv7 ids sort by creation time. Counts the model
/// keeps as `u32` are `BIGINT`s checked into that range.
const V1: &str = "
CREATE TABLE webhooks.subscriptions (
    id                   UUID PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_valid_until BIGINT,
    -- Both NULL while the subscription is enabled.
    disabled_reason      TEXT,
    disabled_at          BIGINT,
    consecutive_failures BIGINT NOT NULL CHECK (consecutive_failures BETWEEN 0 AND 4294967295),
    created_at           BIGINT NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_valid_until IS NULL)),
    CHECK ((disabled_reason IS NULL) = (disabled_at IS NULL))
);

-- Keyed by event type first: publishing looks subscriptions up by it.
CREATE TABLE webhooks.subscription_event_types (
    event_type      TEXT NOT NULL,
    subscription_id UUID NOT NULL REFERENCES webhooks.subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, subscription_id)
);
CREATE INDEX subscription_event_types_by_subscription
    ON webhooks.subscription_event_types (subscription_id);

-- One row per publish that reached a subscription: the body is stored once,
-- however many deliveries carry it, and lives as long as one of them does.
CREATE TABLE webhooks.events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL,
    name        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    body        BYTEA NOT NULL
);

CREATE TABLE webhooks.deliveries (
    id              UUID PRIMARY KEY,
    event_seq       BIGINT NOT NULL REFERENCES webhooks.events (seq),
    subscription_id UUID NOT NULL REFERENCES webhooks.subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped')),
    attempts        BIGINT NOT NULL CHECK (attempts BETWEEN 0 AND 4294967295),
    -- NULL once delivered or dropped.
    next_attempt_at BIGINT,
    -- The end of the last claim's lease; NULL once an attempt is recorded.
    lease_until     BIGINT,
    -- True while the subscription is disabled: kept, not claimed. Only a
    -- pending delivery is held.
    held            BOOLEAN NOT NULL DEFAULT false,
    -- When it was delivered or dropped; what purging goes by.
    finished_at     BIGINT,
    -- When it can be claimed: its due time, or the end of its lease if later
    -- (GREATEST passes over a NULL lease).
    claimable_at    BIGINT GENERATED ALWAYS AS (GREATEST(next_attempt_at, lease_until)) STORED,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL)),
    CHECK (state = 'pending' OR NOT held)
);
-- Only what can be claimed, in claim order: claiming reads from the front,
-- so its cost does not grow with the queue or with held deliveries.
CREATE INDEX deliveries_claimable ON webhooks.deliveries (claimable_at) WHERE state = 'pending' AND NOT held;
CREATE INDEX deliveries_by_subscription ON webhooks.deliveries (subscription_id, state);
CREATE INDEX deliveries_by_event ON webhooks.deliveries (event_seq);
CREATE INDEX deliveries_finished ON webhooks.deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- An event goes with its last delivery, however that is deleted. The lock
-- on the event row makes transactions deleting its last deliveries at once
-- take turns, so the last of them sees that none is left.
CREATE FUNCTION webhooks.delete_unreferenced_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhooks.events WHERE seq = OLD.event_seq FOR UPDATE;
    DELETE FROM webhooks.events e WHERE e.seq = OLD.event_seq
        AND NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.event_seq = OLD.event_seq);
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_delete_unreferenced_event AFTER DELETE ON webhooks.deliveries
    FOR EACH ROW EXECUTE FUNCTION webhooks.delete_unreferenced_event();

CREATE TABLE webhooks.attempts (
    -- Recording order.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id UUID NOT NULL REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
    number      BIGINT NOT NULL CHECK (number BETWEEN 0 AND 4294967295),
    started_at  BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    -- The response's status and the start of its body, or why none came.
    status      INTEGER,
    response    TEXT,
    error       TEXT,
    CHECK ((status IS NULL) = (error IS NOT NULL)),
    CHECK ((status IS NULL) = (response IS NULL))
);
CREATE INDEX attempts_by_delivery ON webhooks.attempts (delivery_id, seq);
";

/// Pending deliveries alone, so counting them (the dispatcher's gauge, a
/// subscription's counts) reads no finished one.
const V2: &str = "
CREATE INDEX deliveries_pending ON webhooks.deliveries (subscription_id) WHERE state = 'pending';
";

/// Owners: every subscription has one (`default` for those made before), an
/// event is for one owner or for all (`audience` empty), and an event may
/// hold an idempotency key, unique within its audience, which the index
/// enforces across instances. An owner never changes, so the event types
/// carry it too: publishing finds one owner's listeners by key, however
/// many subscriptions other owners have.
const V3: &str = "
ALTER TABLE webhooks.subscriptions ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscriptions_by_owner ON webhooks.subscriptions (owner, id);
ALTER TABLE webhooks.subscription_event_types ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscription_event_types_by_owner ON webhooks.subscription_event_types (owner, event_type);
ALTER TABLE webhooks.events ADD COLUMN audience TEXT NOT NULL DEFAULT 'default';
ALTER TABLE webhooks.events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_idempotency_key ON webhooks.events (audience, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
";

/// Endpoint settings, delivery cycles and ordered delivery. `settings` is
/// JSON text (secret header values included); `ordered` repeats its flag
/// for the statements that need it. Attempts carry their delivery's cycle.
/// A `waiting` delivery is pending behind an earlier one of its ordered
/// subscription: the claim index leaves it out, and `deliveries_waiting`
/// finds a subscription's earliest one when the one before finishes. Its
/// `next_attempt_at` stays set (the table's checks want it for every
/// pending delivery) and is not reported while it waits.
const V4: &str = "
ALTER TABLE webhooks.subscriptions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE webhooks.subscriptions ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE webhooks.deliveries ADD COLUMN cycle BIGINT NOT NULL DEFAULT 1
    CHECK (cycle BETWEEN 1 AND 4294967295);
ALTER TABLE webhooks.deliveries ADD COLUMN waiting BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE webhooks.deliveries ADD CONSTRAINT deliveries_only_pending_wait CHECK (state = 'pending' OR NOT waiting);
ALTER TABLE webhooks.attempts ADD COLUMN cycle BIGINT NOT NULL DEFAULT 1
    CHECK (cycle BETWEEN 1 AND 4294967295);
DROP INDEX webhooks.deliveries_claimable;
CREATE INDEX deliveries_claimable ON webhooks.deliveries (claimable_at)
    WHERE state = 'pending' AND NOT held AND NOT waiting;
DROP INDEX webhooks.deliveries_pending;
CREATE INDEX deliveries_pending ON webhooks.deliveries (subscription_id, waiting) WHERE state = 'pending';
CREATE INDEX deliveries_waiting ON webhooks.deliveries (subscription_id, id) WHERE waiting;
";

/// Brings the schema up to date, or refuses a database a newer version of
/// this crate migrated.
pub(crate) async fn migrate(client: &mut Object) -> Result<(), Error> {
    let failed = |version| move |source| Error::Migrate { version, source };
    let transaction = client.transaction().await.map_err(failed(VERSION))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed(VERSION))?;
    transaction
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS webhooks;
             CREATE TABLE IF NOT EXISTS webhooks.schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(failed(VERSION))?;
    let found: i64 = transaction
        .query_one("SELECT coalesce(max(version), 0) FROM webhooks.schema_migrations", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed(VERSION))?;
    if found > VERSION {
        return Err(SchemaTooNew { store: "webhooks-postgres", found, supported: VERSION }.into());
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(found).unwrap_or(0)) {
        transaction.batch_execute(sql).await.map_err(failed(version))?;
        transaction
            .execute("INSERT INTO webhooks.schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(failed(version))?;
    }
    transaction.commit().await.map_err(failed(VERSION))
}
