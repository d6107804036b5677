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

/// Migration `n` (from 0) takes the schema from version `n` to `n + 1`,
/// each the SQL file of its name in `migrations/`. Append only: a released
/// migration never changes.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6];

/// The schema version this crate writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Times are unix microseconds (`BIGINT`), as in the SQLite store, so every
/// `DateTime<Utc>` round-trips exactly, `MAX_UTC` ("never") included; ids
/// are `UUID`s, and UUIDv7 ids sort by creation time. Counts the model
/// keeps as `u32` are `BIGINT`s checked into that range.
const V1: &str = include_str!("../migrations/V1.sql");

/// Pending deliveries alone, so counting them (the dispatcher's gauge, a
/// subscription's counts) reads no finished one.
const V2: &str = include_str!("../migrations/V2.sql");

/// Owners: every subscription has one (`default` for those made before), an
/// event is for one owner or for all (`audience` empty), and an event may
/// hold an idempotency key, unique within its audience, which the index
/// enforces across instances. An owner never changes, so the event types
/// carry it too: publishing finds one owner's listeners by key, however
/// many subscriptions other owners have.
const V3: &str = include_str!("../migrations/V3.sql");

/// Endpoint settings, delivery cycles and ordered delivery. `settings` is
/// JSON text (secret header values included); `ordered` repeats its flag
/// for the statements that need it. Attempts carry their delivery's cycle.
/// A `waiting` delivery is pending behind an earlier one of its ordered
/// subscription: the claim index leaves it out, and `deliveries_waiting`
/// finds a subscription's earliest one when the one before finishes. Its
/// `next_attempt_at` stays set (the table's checks want it for every
/// pending delivery) and is not reported while it waits.
const V4: &str = include_str!("../migrations/V4.sql");

/// Idempotency keys in a table of their own, each held until the end of its
/// window (`held_until`) rather than as long as its event's deliveries.
const V5: &str = include_str!("../migrations/V5.sql");

/// The channels a subscription listens on, read with its listeners at
/// publish.
const V6: &str = include_str!("../migrations/V6.sql");

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
