//! The schema, with its versioned migrations.
//!
//! Everything lives in the schema `webhooks`, beside the host's own tables.
//! Migrations run in one transaction that first takes a transaction-scoped
//! advisory lock, so instances starting at once migrate the database once,
//! one after the other, and a failed migration leaves it as it was
//! (PostgreSQL's DDL is transactional). Each migration applied is recorded
//! with the checksum of its text in `webhooks.schema_migrations`.

use std::collections::HashMap;

use deadpool_postgres::Object;
use tokio_postgres::Transaction;

use webhooks_core::sql::{self, Migrated, SchemaBehind, SchemaTooNew, checksum};

use crate::error::Error;

/// The advisory lock key migrations hold: "webhooks" in ASCII. Any session
/// of the same database asking for it waits until the migrating one commits.
pub(crate) const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b73;

/// Migration `n` (from 1) takes the schema from version `n - 1` to `n`,
/// the SQL file `migrations/V<n>.sql`. Append only: a released migration
/// never changes.
///
/// 1. Times are unix microseconds (`BIGINT`), as in the SQLite store, so
///    every `DateTime<Utc>` round-trips exactly, `MAX_UTC` ("never")
///    included; ids are `UUID`s, and UUIDv7 ids sort by creation time. Counts
///    the model keeps as `u32` are `BIGINT`s checked into that range.
/// 2. Pending deliveries alone, so counting them (the dispatcher's gauge, a
///    subscription's counts) reads no finished one.
/// 3. Owners: every subscription has one (`default` for those made before),
///    an event is for one owner or for all (`audience` empty), and an event
///    may hold an idempotency key, unique within its audience, which the
///    index enforces across instances. An owner never changes, so the event
///    types carry it too: publishing finds one owner's listeners by key,
///    however many subscriptions other owners have.
/// 4. Endpoint settings, delivery cycles and ordered delivery. `settings` is
///    JSON text (secret header values included); `ordered` repeats its flag
///    for the statements that need it. Attempts carry their delivery's cycle.
///    A `waiting` delivery is pending behind an earlier one of its ordered
///    subscription: the claim index leaves it out, and `deliveries_waiting`
///    finds a subscription's earliest one when the one before finishes. Its
///    `next_attempt_at` stays set (the table's checks want it for every
///    pending delivery) and is not reported while it waits.
/// 5. Idempotency keys in a table of their own, each held until the end of
///    its window (`held_until`) rather than as long as its event's
///    deliveries.
/// 6. The channels a subscription listens on, read with its listeners at
///    publish.
/// 7. The checksums of the migrations applied.
const MIGRATIONS: &[&str] = sql::migrations!(1, 2, 3, 4, 5, 6, 7);

/// The schema version this crate writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// The first version with checksums: a database below it has none to
/// compare.
const CHECKSUMS_SINCE: i64 = 7;

/// Brings the schema up to date and records the checksums of the
/// migrations, or refuses a database a newer version of this crate
/// migrated, or one whose applied migrations differ from those shipped.
pub(crate) async fn migrate(client: &mut Object) -> Result<Migrated, Error> {
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
    let found = version(&transaction).await.map_err(failed(VERSION))?;
    if found > VERSION {
        return Err(SchemaTooNew { store: "webhooks-postgres", found, supported: VERSION }.into());
    }
    compare_checksums(&transaction, found, failed(VERSION)).await?;
    for (version, sql) in (1..).zip(MIGRATIONS).skip(usize::try_from(found).unwrap_or(0)) {
        transaction.batch_execute(sql).await.map_err(failed(version))?;
        transaction
            .execute("INSERT INTO webhooks.schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(failed(version))?;
    }
    // Those applied before the column existed are taken as shipped.
    for (version, sql) in (1..).zip(MIGRATIONS) {
        transaction
            .execute(
                "UPDATE webhooks.schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL",
                &[&version, &checksum(sql)],
            )
            .await
            .map_err(failed(version))?;
    }
    transaction.commit().await.map_err(failed(VERSION))?;
    Ok(Migrated::new(found, VERSION))
}

/// Refuses a schema that is not exactly the one this crate uses.
pub(crate) async fn check(client: &mut Object) -> Result<(), Error> {
    let failed = |source| Error::Query { operation: "read the schema's migrations", source };
    let transaction = client.transaction().await.map_err(failed)?;
    let exists: bool = transaction
        .query_one("SELECT to_regclass('webhooks.schema_migrations') IS NOT NULL", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    let found = if exists { version(&transaction).await.map_err(failed)? } else { 0 };
    if found > VERSION {
        return Err(SchemaTooNew { store: "webhooks-postgres", found, supported: VERSION }.into());
    }
    if found < VERSION {
        return Err(SchemaBehind { store: "webhooks-postgres", found, expected: VERSION }.into());
    }
    compare_checksums(&transaction, found, failed).await
}

/// The newest migration applied.
async fn version(transaction: &Transaction<'_>) -> Result<i64, tokio_postgres::Error> {
    transaction
        .query_one("SELECT coalesce(max(version), 0) FROM webhooks.schema_migrations", &[])
        .await
        .and_then(|row| row.try_get(0))
}

/// Refuses a database whose applied migrations (up to `found`) are not the
/// text this crate ships; `failed` names a query that failed.
async fn compare_checksums(
    transaction: &Transaction<'_>,
    found: i64,
    failed: impl FnOnce(tokio_postgres::Error) -> Error,
) -> Result<(), Error> {
    if found < CHECKSUMS_SINCE {
        return Ok(());
    }
    let sql = "SELECT version, checksum FROM webhooks.schema_migrations WHERE checksum IS NOT NULL";
    let applied: HashMap<i64, String> = match transaction.query(sql, &[]).await {
        Ok(rows) => rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect(),
        Err(error) => Err(error),
    }
    .map_err(failed)?;
    Ok(sql::compare_checksums("webhooks-postgres", MIGRATIONS, found, &applied)?)
}
