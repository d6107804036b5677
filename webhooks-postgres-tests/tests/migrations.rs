//! Migrations the host controls: connecting without migrating, `migrate`
//! as a deploy step, and the checksums that refuse a database migrated by a
//! modified build.

use webhooks_postgres::{Error, PostgresStore};
use webhooks_postgres_tests::TestDatabase;

/// Runs `sql` on `database` beside the store.
async fn execute(database: &TestDatabase, sql: &str) {
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

/// The rows of `webhooks.schema_migrations` that have a checksum.
async fn checksums(store: &PostgresStore) -> i64 {
    let client = store.pool().get().await.unwrap();
    let sql = "SELECT count(*) FROM webhooks.schema_migrations WHERE length(checksum) = 64";
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_database_behind_is_refused_until_the_deploy_step_migrates_it() {
    let database = TestDatabase::create().await.expect("a test database");
    match PostgresStore::connect_without_migrating(database.url()).await {
        Err(Error::SchemaBehind(behind)) => {
            assert_eq!((behind.found, behind.expected), (0, PostgresStore::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaBehind, got {other:?}"),
    }

    let migrated = PostgresStore::migrate(database.url()).await.unwrap();
    assert_eq!((migrated.from, migrated.to), (0, PostgresStore::SCHEMA_VERSION));
    let store = PostgresStore::connect_without_migrating(database.url()).await.unwrap();
    assert_eq!(checksums(&store).await, PostgresStore::SCHEMA_VERSION);

    let again = PostgresStore::migrate(database.url()).await.unwrap();
    assert_eq!((again.from, again.to), (PostgresStore::SCHEMA_VERSION, PostgresStore::SCHEMA_VERSION));
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_database_from_before_checksums_gets_those_shipped() {
    let database = TestDatabase::create().await.expect("a test database");
    PostgresStore::migrate(database.url()).await.unwrap();
    // As the version before checksums left it.
    let last = PostgresStore::SCHEMA_VERSION;
    execute(
        &database,
        &format!(
            "ALTER TABLE webhooks.schema_migrations DROP COLUMN checksum;
             DELETE FROM webhooks.schema_migrations WHERE version = {last};"
        ),
    )
    .await;
    match PostgresStore::connect_without_migrating(database.url()).await {
        Err(Error::SchemaBehind(behind)) => assert_eq!(behind.found, last - 1),
        other => panic!("expected SchemaBehind, got {other:?}"),
    }
    let store = PostgresStore::connect(database.url()).await.unwrap();
    assert_eq!(checksums(&store).await, last);
    PostgresStore::connect_without_migrating(database.url()).await.unwrap();
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_database_migrated_by_a_modified_build_is_refused_and_left_alone() {
    let database = TestDatabase::create().await.expect("a test database");
    PostgresStore::migrate(database.url()).await.unwrap();
    execute(&database, "UPDATE webhooks.schema_migrations SET checksum = 'edited' WHERE version = 2").await;

    let opened = [
        PostgresStore::connect_without_migrating(database.url()).await.map(drop),
        PostgresStore::connect(database.url()).await.map(drop),
        PostgresStore::migrate(database.url()).await.map(drop),
    ];
    for outcome in opened {
        match outcome {
            Err(Error::MigrationChanged(changed)) => {
                assert_eq!((changed.version, changed.applied.as_str()), (2, "edited"));
                assert_eq!(changed.shipped.len(), 64);
            }
            other => panic!("expected MigrationChanged, got {other:?}"),
        }
    }
}
