//! Migrations the host controls: opening without migrating, `migrate` as a
//! deploy step, and the checksums that refuse a file migrated by a modified
//! build.

use std::path::Path;

use webhooks_sqlite::{Error, SqliteStore};

fn query(path: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(path).unwrap().query_row(sql, [], |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn opening_without_migrating_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let error = SqliteStore::open_without_migrating(&path).await.unwrap_err();
    assert!(matches!(error, Error::Open { .. }), "{error:?}");
    assert!(!path.exists(), "the file is not created");
}

#[tokio::test]
async fn a_file_behind_is_refused_until_the_deploy_step_migrates_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    drop(rusqlite::Connection::open(&path).unwrap());

    let error = SqliteStore::open_without_migrating(&path).await.unwrap_err();
    match &error {
        Error::SchemaBehind(behind) => {
            assert_eq!((behind.found, behind.expected), (0, SqliteStore::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaBehind, got {other:?}"),
    }
    assert!(error.to_string().contains("run its migrate step"), "{error}");
    assert_eq!(query(&path, "SELECT count(*) FROM sqlite_schema"), 0, "nothing was created");

    let migrated = SqliteStore::migrate(&path).await.unwrap();
    assert_eq!((migrated.from, migrated.to), (0, SqliteStore::SCHEMA_VERSION));
    let store = SqliteStore::open_without_migrating(&path).await.unwrap();
    store.close().await.unwrap();

    let again = SqliteStore::migrate(&path).await.unwrap();
    assert_eq!((again.from, again.to), (SqliteStore::SCHEMA_VERSION, SqliteStore::SCHEMA_VERSION));
    assert_eq!(query(&path, "SELECT count(*) FROM schema_migrations"), SqliteStore::SCHEMA_VERSION);
}

#[tokio::test]
async fn a_file_migrated_by_a_modified_build_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    SqliteStore::migrate(&path).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 3", [])
        .unwrap();

    for opened in [SqliteStore::open_without_migrating(&path).await, SqliteStore::open(&path).await] {
        match opened {
            Err(Error::MigrationChanged(changed)) => {
                assert_eq!((changed.version, changed.applied.as_str()), (3, "edited"));
                assert_eq!(changed.shipped.len(), 64);
            }
            other => panic!("expected MigrationChanged, got {other:?}"),
        }
    }
    assert!(matches!(SqliteStore::migrate(&path).await, Err(Error::MigrationChanged(_))));
    assert_eq!(query(&path, "PRAGMA user_version"), SqliteStore::SCHEMA_VERSION);
    assert_eq!(query(&path, "SELECT count(*) FROM schema_migrations WHERE checksum = 'edited'"), 1);
}

#[tokio::test]
async fn a_missing_checksum_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.db");
    SqliteStore::migrate(&path).await.unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM schema_migrations WHERE version = 1", [])
        .unwrap();
    match SqliteStore::open_without_migrating(&path).await {
        Err(Error::MigrationChanged(changed)) => {
            assert_eq!((changed.version, changed.applied.as_str()), (1, "none"))
        }
        other => panic!("expected MigrationChanged, got {other:?}"),
    }
}
