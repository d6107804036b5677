//! The connection's settings and the schema, with its versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`, and the checksum of
//! each migration applied in `schema_migrations`. Migrations run in order in
//! one `BEGIN IMMEDIATE` transaction, so processes opening the same file at
//! once migrate it once, and a failed migration leaves the file as it was.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use webhooks_core::sql::{self, Migrated, SchemaBehind, SchemaTooNew, checksum};

use crate::error::Error;

/// How long a statement waits for another connection's write lock before it
/// fails with "database is locked".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `n` (from 1) takes the schema from version `n - 1` to `n`,
/// the SQL file `migrations/V<n>.sql`. Append only: a released migration
/// never changes.
///
/// 1. Times are unix microseconds (`INTEGER`); ids are UUIDs as 16-byte
///    `BLOB`s, and UUIDv7 ids sort by creation time.
/// 2. Pending deliveries alone, so counting them (the dispatcher's gauge, a
///    subscription's counts) reads no finished one.
/// 3. Owners: every subscription has one (`default` for those made before),
///    an event is for one owner or for all (`audience` empty), and an event
///    may hold an idempotency key, unique within its audience. An owner never
///    changes, so the event types carry it too: publishing looks one owner's
///    listeners up by key, however many subscriptions other owners have.
/// 4. Endpoint settings, delivery cycles and ordered delivery. `settings` is
///    JSON (secret header values included); `ordered` repeats its flag for
///    the statements that need it. Attempts carry their delivery's cycle. A
///    `waiting` delivery is pending behind an earlier one of its ordered
///    subscription: the claim index leaves it out, and `deliveries_waiting`
///    finds a subscription's earliest one when the one before finishes. Its
///    `next_attempt_at` stays set (the table's checks want it for every
///    pending delivery) and is not reported while it waits.
/// 5. Every delivery by subscription alone, in place of the index by
///    subscription and state, whose entry moved (a delete and an insert) each
///    time a delivery finished: writing pages is what bounds this store. The
///    new entry is written once, at publish. It still serves the foreign key,
///    so deleting a subscription reads no whole table, and the statements
///    over one subscription's deliveries; its pending ones are found by
///    `deliveries_pending`.
/// 6. Each subscription's claimable deliveries by when they can be claimed,
///    so a claim that passes over busy endpoints reads the others' fronts and
///    never a busy endpoint's backlog.
/// 7. Idempotency keys in a table of their own, each held until the end of
///    its window (`held_until`) rather than as long as its event's
///    deliveries.
/// 8. The channels a subscription listens on, a JSON array read with its
///    listeners at publish.
/// 9. The checksums of the migrations applied.
const MIGRATIONS: &[&str] = sql::migrations!(1, 2, 3, 4, 5, 6, 7, 8, 9);

/// The schema version this crate writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// The first version with `schema_migrations`: a file below it has no
/// checksums to compare.
const CHECKSUMS_SINCE: i64 = 9;

/// What opening does to the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schema {
    /// Bring it up to date, creating the file if it is missing.
    Migrate,
    /// Only check that it is the one this crate uses: the host migrates as
    /// a step of its own.
    Check,
}

/// Opens `path`, sets the connection up and migrates or checks the schema.
pub(crate) fn open(path: &Path, schema: Schema) -> Result<Connection, Error> {
    let mut connection = connect(path, schema)?;
    match schema {
        Schema::Migrate => drop(migrate(&mut connection)?),
        Schema::Check => check(&connection)?,
    }
    Ok(connection)
}

/// Brings the schema of the file at `path` up to date (creating it if
/// missing) and closes it.
pub(crate) fn migrate_file(path: &Path) -> Result<Migrated, Error> {
    let mut connection = connect(path, Schema::Migrate)?;
    let migrated = migrate(&mut connection)?;
    connection.close().map_err(|(_, source)| Error::Open { path: path.to_owned(), source })?;
    Ok(migrated)
}

/// Opens `path` in WAL mode with the connection's settings; only a
/// migrating open creates a missing file.
fn connect(path: &Path, schema: Schema) -> Result<Connection, Error> {
    let failed = |source| Error::Open { path: path.to_owned(), source };
    let mut flags = OpenFlags::default();
    if schema == Schema::Check {
        flags.remove(OpenFlags::SQLITE_OPEN_CREATE);
    }
    let connection = Connection::open_with_flags(path, flags).map_err(failed)?;
    configure(&connection).map_err(failed)?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(failed)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NotWal { path: path.to_owned(), mode });
    }
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
    // Deleted and rewritten content is zeroed within its page, at no extra
    // I/O: a secret sealed in place, or a subscription deleted, leaves no
    // copy in the page's free space.
    connection.pragma_update(None, "secure_delete", "FAST")?;
    connection.pragma_update(None, "synchronous", "FULL")
}

/// Applies the migrations the file lacks and records their checksums, or
/// refuses a file from a newer version of this crate or one whose applied
/// migrations differ from those shipped.
pub(crate) fn migrate(connection: &mut Connection) -> Result<Migrated, Error> {
    let failed = |version| move |source| Error::Migrate { version, source };
    let transaction =
        connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed(VERSION))?;
    let found = version(&transaction, failed(VERSION))?;
    compare_checksums(&transaction, found, failed(VERSION))?;
    for (version, sql) in (1..).zip(MIGRATIONS).skip(found as usize) {
        transaction
            .execute_batch(sql)
            .and_then(|()| transaction.pragma_update(None, "user_version", version))
            .map_err(failed(version))?;
    }
    // Those applied before the table existed are taken as shipped.
    let mut record = transaction
        .prepare("INSERT OR IGNORE INTO schema_migrations (version, checksum) VALUES (?1, ?2)")
        .map_err(failed(VERSION))?;
    for (version, sql) in (1..).zip(MIGRATIONS) {
        record.execute((version, checksum(sql))).map_err(failed(version))?;
    }
    drop(record);
    transaction.commit().map_err(failed(VERSION))?;
    Ok(Migrated::new(found, VERSION))
}

/// Refuses a schema that is not exactly the one this crate uses.
fn check(connection: &Connection) -> Result<(), Error> {
    let failed = |source| Error::Sqlite { operation: "read the schema's migrations", source };
    let found = version(connection, failed)?;
    if found < VERSION {
        return Err(SchemaBehind { store: "webhooks-sqlite", found, expected: VERSION }.into());
    }
    compare_checksums(connection, found, failed)
}

/// The file's schema version, refused when this crate never wrote it.
fn version(connection: &Connection, failed: impl Fn(rusqlite::Error) -> Error) -> Result<i64, Error> {
    let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(failed)?;
    if found > VERSION {
        return Err(SchemaTooNew { store: "webhooks-sqlite", found, supported: VERSION }.into());
    }
    if found < 0 {
        return Err(Error::SchemaUnknown { found });
    }
    Ok(found)
}

/// Refuses a file whose applied migrations (up to `found`) are not the
/// text this crate ships.
fn compare_checksums(
    connection: &Connection,
    found: i64,
    failed: impl Fn(rusqlite::Error) -> Error,
) -> Result<(), Error> {
    if found < CHECKSUMS_SINCE {
        return Ok(());
    }
    let applied: HashMap<i64, String> = connection
        .prepare("SELECT version, checksum FROM schema_migrations")
        .and_then(|mut statement| statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
        .map_err(failed)?;
    Ok(sql::compare_checksums("webhooks-sqlite", MIGRATIONS, found, &applied)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables, indexes and triggers of `connection`, as SQLite keeps them.
    fn schema(connection: &Connection) -> Vec<(String, String)> {
        connection
            .prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A database at schema `version`, as this crate wrote it then.
    fn at_version(version: usize) -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..version] {
            connection.execute_batch(sql).unwrap();
        }
        connection.pragma_update(None, "user_version", version as i64).unwrap();
        connection
    }

    #[test]
    fn every_older_schema_migrates_to_the_one_a_new_file_gets() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        for version in 1..MIGRATIONS.len() {
            let mut older = at_version(version);
            migrate(&mut older).unwrap();
            let found: i64 = older.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
            assert_eq!(found, VERSION);
            assert_eq!(schema(&older), schema(&fresh), "from version {version}");
        }
    }

    #[test]
    fn a_file_from_before_checksums_gets_those_shipped() {
        let mut db = at_version(8);
        assert_eq!(migrate(&mut db).unwrap(), Migrated::new(8, VERSION));
        let recorded: Vec<(i64, String)> = db
            .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let shipped: Vec<(i64, String)> = (1..).zip(MIGRATIONS).map(|(v, sql)| (v, checksum(sql))).collect();
        assert_eq!(recorded, shipped);
        check(&db).unwrap();
    }

    #[test]
    fn version_4_deliveries_are_in_the_version_5_index() {
        let mut db = at_version(4);
        db.execute_batch(
            "INSERT INTO subscriptions (id, url, secret, consecutive_failures, created_at)
             VALUES (x'01', 'https://example.com/', 's', 0, 0);
             INSERT INTO events (seq, id, name, occurred_at, body) VALUES (1, x'02', 'job.completed', 0, x'7b7d');
             INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at, finished_at)
             VALUES (x'0a', 1, x'01', 'pending', 0, 5, NULL),
                    (x'0b', 1, x'01', 'delivered', 1, NULL, 6),
                    (x'0c', 1, x'01', 'dropped', 3, NULL, 7);",
        )
        .unwrap();
        migrate(&mut db).unwrap();
        let index: Vec<String> = db
            .prepare("SELECT name FROM pragma_index_info('deliveries_by_subscription')")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(index, ["subscription_id"]);
        let states: Vec<String> = db
            .prepare(
                "SELECT state FROM deliveries INDEXED BY deliveries_by_subscription \
                 WHERE subscription_id = x'01' ORDER BY state",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(states, ["delivered", "dropped", "pending"]);
        let check: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn version_6_keys_are_held_for_a_day_from_their_event() {
        let mut db = at_version(6);
        db.execute_batch(
            "INSERT INTO events (seq, id, name, occurred_at, body, audience, idempotency_key)
             VALUES (1, x'02', 'order.created', 1000, x'7b7d', 'alice', 'order-1'),
                    (2, x'03', 'order.created', 2000, x'7b7d', 'alice', NULL);",
        )
        .unwrap();
        migrate(&mut db).unwrap();
        type KeyRow = (String, String, Vec<u8>, Option<i64>, i64);
        let keys: Vec<KeyRow> = db
            .prepare("SELECT audience, key, event_id, event_seq, held_until FROM idempotency_keys")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, [("alice".into(), "order-1".into(), vec![2], Some(1), 1000 + 86_400_000_000)]);
    }
}
