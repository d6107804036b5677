//! The plans PostgreSQL makes for the store's hot statements on a table
//! shaped like a busy queue: each reads an index from its front or by key,
//! never a whole table, as a custom plan and as the generic plan a
//! prepared statement settles on.
use webhooks_postgres::statements::*;
use webhooks_postgres_tests::TestDatabase;

/// A migrated database shaped like a busy one, with statistics gathered
/// so the planner sees it for what it is: ten thousand subscriptions
/// with two of a hundred event types each, and `pending` claimable
/// deliveries beside as many held ones and as many finished ones, one
/// event each.
async fn big_queue(pending: i64) -> (webhooks_postgres::deadpool_postgres::Object, TestDatabase) {
    let database = TestDatabase::create().await.unwrap();
    let store = database.store().await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO webhooks.subscriptions (id, url, secret, consecutive_failures, created_at)
             SELECT gen_random_uuid(), 'https://example.com/' || i, 's', 0, 0 FROM generate_series(1, 10000) i;
             CREATE TEMP TABLE numbered AS
                 SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM webhooks.subscriptions;
             INSERT INTO webhooks.subscription_event_types (event_type, subscription_id)
             SELECT 'type.' || (n % 100), id FROM numbered
             UNION ALL SELECT 'type.' || ((n + 50) % 100), id FROM numbered;
             INSERT INTO webhooks.events (id, name, occurred_at, body)
             SELECT gen_random_uuid(), 'type.1', 0, '\\x7b7d' FROM generate_series(1, {count});
             INSERT INTO webhooks.deliveries
                 (id, event_seq, subscription_id, state, attempts, next_attempt_at, held, finished_at)
             SELECT gen_random_uuid(), e.seq, s.id,
                    CASE e.seq % 3 WHEN 2 THEN 'delivered' ELSE 'pending' END, 0,
                    CASE e.seq % 3 WHEN 2 THEN NULL ELSE e.seq END,
                    e.seq % 3 = 1,
                    CASE e.seq % 3 WHEN 2 THEN e.seq END
             FROM webhooks.events e JOIN numbered s ON s.n = e.seq % 10000;
             ANALYZE;",
            count = pending * 3
        ))
        .await
        .unwrap();
    (client, database)
}

/// The plan of `sql` run with `arguments` (SQL literals), as a custom
/// plan or as the generic plan a prepared statement settles on.
async fn plan(
    client: &webhooks_postgres::deadpool_postgres::Object,
    sql: &str,
    arguments: &str,
    generic: bool,
) -> String {
    let mode = if generic { "force_generic_plan" } else { "force_custom_plan" };
    client
        .batch_execute(&format!("DEALLOCATE ALL; SET plan_cache_mode = {mode}; PREPARE checked AS {sql}"))
        .await
        .unwrap();
    let rows = client.query(&format!("EXPLAIN EXECUTE checked{arguments}"), &[]).await.unwrap();
    rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn claiming_reads_the_claimable_index_in_order_and_locks_only_what_it_takes() {
    let (client, _database) = big_queue(20_000).await;
    for generic in [false, true] {
        let claimable = plan(&client, CLAIMABLE, "(30000, '{}', 64)", generic).await;
        assert!(claimable.contains("Index Scan using deliveries_claimable on deliveries"), "{claimable}");
        assert!(claimable.contains("LockRows") && claimable.contains("Limit"), "{claimable}");
        assert!(
            !claimable.contains("Seq Scan") && !claimable.contains("Sort"),
            "no scan, no sort: {claimable}"
        );

        let ids = client
            .query("SELECT id::text FROM webhooks.deliveries WHERE state = 'pending' LIMIT 64", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join(",");
        let lease = plan(&client, LEASE, &format!("('{{{ids}}}', 40000)"), generic).await;
        assert!(lease.contains("on deliveries_pkey"), "{lease}");
        assert!(lease.contains("Index Scan using events_pkey on events"), "{lease}");
        assert!(!lease.contains("Seq Scan"), "no scan: {lease}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn an_owners_subscription_and_delivery_are_read_by_key() {
    let (client, _database) = big_queue(20_000).await;
    for generic in [false, true] {
        let arguments = "(gen_random_uuid(), 'owner-1')";
        // By its key, or by owner and key: one row either way.
        let found = plan(&client, OWNED_SUBSCRIPTION, arguments, generic).await;
        assert!(found.contains("on subscriptions s") && found.contains("id = "), "{found}");
        assert!(!found.contains("Seq Scan on subscriptions"), "{found}");
        let found = plan(&client, OWNED_DELIVERY, arguments, generic).await;
        assert!(found.contains("Index Scan using deliveries_pkey"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn keys_are_found_by_key_and_forgotten_from_the_front_of_the_expiry_index() {
    let (client, _database) = big_queue(10).await;
    client
        .batch_execute(
            "INSERT INTO webhooks.idempotency_keys (audience, key, event_id, event_seq, held_until)
             SELECT 'owner-' || (i % 100), 'key-' || i, gen_random_uuid(), i, i FROM generate_series(1, 50000) i;
             ANALYZE webhooks.idempotency_keys;",
        )
        .await
        .unwrap();
    for generic in [false, true] {
        let held = plan(&client, HELD_KEY, "('owner-1', 'key-101', 0)", generic).await;
        assert!(held.contains("Index Scan using idempotency_keys_pkey"), "{held}");
        assert!(!held.contains("Seq Scan on idempotency_keys"), "{held}");
        let forget = plan(&client, FORGET_KEYS, "(100, 10)", generic).await;
        assert!(forget.contains("idempotency_keys_by_expiry"), "{forget}");
        assert!(!forget.contains("Seq Scan") && !forget.contains("Sort"), "{forget}");
    }
    let owner = plan(&client, DELETE_OWNER_KEYS, "('owner-1')", false).await;
    assert!(owner.contains("idempotency_keys_pkey"), "{owner}");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn the_next_due_time_comes_from_the_front_of_the_index() {
    let (client, _database) = big_queue(20_000).await;
    for generic in [false, true] {
        let plan = plan(&client, NEXT_CLAIMABLE, "", generic).await;
        assert!(plan.contains("using deliveries_claimable on deliveries"), "{plan}");
        assert!(!plan.contains("Seq Scan") && !plan.contains("Sort"), "{plan}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn publishing_looks_listeners_up_by_event_type() {
    let (client, _database) = big_queue(1_000).await;
    for generic in [false, true] {
        {
            let plan = plan(&client, LOCK_LISTENERS, "('{type.7}')", generic).await;
            // Ten thousand subscriptions are few enough to hash; the
            // event types are looked up by the key's first column.
            assert!(plan.contains("on subscription_event_types_pkey"), "{plan}");
            assert!(!plan.contains("Seq Scan on subscription_event_types"), "{plan}");
        }
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn publishing_for_one_owner_among_100_000_subscriptions_looks_its_listeners_up_by_key() {
    let database = TestDatabase::create().await.unwrap();
    let store = database.store().await.unwrap();
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO webhooks.subscriptions (id, url, secret, consecutive_failures, created_at, owner)
             SELECT gen_random_uuid(), 'https://example.com/' || i, 's', 0, 0, 'owner-' || (i % 1000)
             FROM generate_series(1, 100000) i;
             INSERT INTO webhooks.subscription_event_types (event_type, subscription_id, owner)
             SELECT 'order.created', id, owner FROM webhooks.subscriptions;
             ANALYZE webhooks.subscriptions, webhooks.subscription_event_types;",
        )
        .await
        .unwrap();
    for generic in [false, true] {
        let found = plan(&client, LOCK_OWNER_LISTENERS, "('{owner-7}', '{order.created}')", generic).await;
        assert!(found.contains("subscription_event_types_by_owner"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
        let found = plan(&client, OWNER_SUBSCRIPTIONS, "('owner-7')", generic).await;
        assert!(found.contains("subscriptions_by_owner"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
    }
}

/// The id of one of the queue's subscriptions, as text for a plan's
/// parameters.
async fn some_subscription(client: &tokio_postgres::Client) -> String {
    client.query_one("SELECT id::text FROM webhooks.subscriptions LIMIT 1", &[]).await.unwrap().get(0)
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn counting_reads_indexes_not_the_table() {
    let (client, _database) = big_queue(20_000).await;
    // As a queue is kept: most deliveries finished, the pending ones few.
    client
        .batch_execute(
            "UPDATE webhooks.deliveries SET state = 'delivered', next_attempt_at = NULL, lease_until = NULL,
                 held = false, waiting = false, finished_at = 0
             WHERE state = 'pending' AND random() < 0.95;
             ANALYZE webhooks.deliveries;",
        )
        .await
        .unwrap();
    let subscription = some_subscription(&client).await;
    for generic in [false, true] {
        let found = plan(&client, PENDING_COUNT, "", generic).await;
        assert!(found.contains("deliveries_pending") || found.contains("deliveries_claimable"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
        let found = plan(&client, DELIVERY_COUNTS, &format!("('{subscription}')"), generic).await;
        assert!(found.contains("deliveries_by_subscription"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn holding_a_subscriptions_deliveries_looks_them_up_by_key() {
    let (client, _database) = big_queue(20_000).await;
    let subscription = some_subscription(&client).await;
    for generic in [false, true] {
        let plan = plan(&client, HOLD_PENDING, &format!("('{subscription}')"), generic).await;
        assert!(
            (plan.contains("deliveries_by_subscription") || plan.contains("deliveries_pending"))
                && plan.contains("on deliveries_pkey"),
            "{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn recording_writes_a_batch_by_key() {
    let (client, _database) = big_queue(20_000).await;
    let ids: Vec<String> = client
        .query("SELECT id::text FROM webhooks.deliveries WHERE state = 'pending' LIMIT 64", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let arguments = format!(
        "('{{{}}}', '{{{}}}', '{{{}}}', '{{{}}}', '{{{}}}')",
        ids.join(","),
        vec!["1"; ids.len()].join(","),
        vec!["pending"; ids.len()].join(","),
        vec!["5000"; ids.len()].join(","),
        vec!["NULL"; ids.len()].join(","),
    );
    for generic in [false, true] {
        let plan = plan(&client, WRITE_PROGRESS, &arguments, generic).await;
        assert!(plan.contains("on deliveries_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn releasing_the_next_ordered_delivery_finds_it_by_key() {
    let (client, _database) = big_queue(20_000).await;
    // Every subscription ordered, half of the claimable deliveries waiting.
    client
        .batch_execute(
            "UPDATE webhooks.subscriptions SET ordered = true;
             UPDATE webhooks.deliveries SET waiting = true
                 WHERE state = 'pending' AND NOT held AND event_seq % 2 = 0;
             ANALYZE;",
        )
        .await
        .unwrap();
    let subscription: String = client
        .query_one("SELECT subscription_id::text FROM webhooks.deliveries WHERE waiting LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    for generic in [false, true] {
        let found = plan(&client, NEXT_TO_RELEASE, &format!("('{subscription}')"), generic).await;
        assert!(found.contains("deliveries_waiting"), "{found}");
        assert!(found.contains("deliveries_pending"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
        let claimable = plan(&client, CLAIMABLE, "(90000, '{}', 64)", generic).await;
        assert!(claimable.contains("Index Scan using deliveries_claimable on deliveries"), "{claimable}");
        assert!(!claimable.contains("Seq Scan") && !claimable.contains("Sort"), "{claimable}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_page_of_attempt_logs_is_read_by_key() {
    let (client, _database) = big_queue(20_000).await;
    client
        .batch_execute(
            "INSERT INTO webhooks.attempts (delivery_id, number, started_at, duration_us, status, response)
             SELECT id, 1, 0, 5, 200, '' FROM webhooks.deliveries;
             ANALYZE webhooks.attempts;",
        )
        .await
        .unwrap();
    let ids: Vec<String> = client
        .query("SELECT id::text FROM webhooks.deliveries LIMIT 50", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for generic in [false, true] {
        let found = plan(&client, ATTEMPTS_OF, &format!("('{{{}}}')", ids.join(",")), generic).await;
        assert!(found.contains("attempts_by_delivery"), "{found}");
        assert!(!found.contains("Seq Scan"), "{found}");
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn purging_reads_the_finished_index() {
    let (client, _database) = big_queue(20_000).await;
    // A few old ones, or most of them: either way, from the index.
    for arguments in ["(100, 1000)", "(60000, 1000)"] {
        let plan = plan(&client, PURGE_FINISHED, arguments, false).await;
        assert!(plan.contains("deliveries_finished") && plan.contains("on deliveries_pkey"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
    let many = plan(&client, PURGE_FINISHED, "(60000, 1000)", false).await;
    assert!(!many.contains("Sort"), "a batch of many is read in order, not sorted: {many}");
}
