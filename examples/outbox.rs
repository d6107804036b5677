//! Publishing inside the host's own transaction: each order row and its
//! `order.created` event commit together or not at all, on SQLite or
//! PostgreSQL. A crash between the two leaves both or neither.
//!
//! ```text
//! cargo run --example outbox -- --store sqlite:PATH|postgres://URL [--orders N]
//! ```
//!
//! It places orders `order-K`, `order-K+1`, ... up to `N` (200 by default),
//! `K` being how many orders the database holds already, each in one
//! transaction with its event (for the owner `shop`, keyed by the order id),
//! and prints `committed order-K` once each commit returns. No dispatcher
//! runs: the events wait in the queue for one.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use serde_json::json;
use webhooks_core::{Owner, Preset, Publish, Subscription, UrlRule, Webhooks};
use webhooks_postgres::PostgresStore;
use webhooks_sqlite::{SqliteStore, rusqlite};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The owner the orders belong to.
const SHOP: &str = "shop";

struct Options {
    store: Database,
    orders: u64,
}

/// The database the orders and their events go to.
enum Database {
    /// `sqlite:PATH`
    Sqlite(String),
    /// `postgres://URL` or `postgresql://URL`
    Postgres(String),
}

impl Database {
    fn parse(value: String) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("sqlite:") {
            Ok(Self::Sqlite(path.to_owned()))
        } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            Ok(Self::Postgres(value))
        } else {
            Err("--store takes sqlite:PATH or postgres://URL".to_owned())
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let (mut store, mut orders) = (None, 200);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--store" => store = Some(Database::parse(args.next().ok_or("--store needs a value")?)?),
            "--orders" => {
                orders = args.next().and_then(|n| n.parse().ok()).ok_or("--orders needs a whole number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options { store: store.ok_or("--store is required")?, orders })
}

/// The library on `store`, with the shop's endpoint subscribed once.
async fn webhooks(store: impl webhooks_core::Store) -> Result<Webhooks, Failure> {
    let preset = Preset::deepsmith().with_event_types(["order.created"]).with_url_rule(UrlRule::allow_http());
    let webhooks = Webhooks::builder().store(store).preset(preset).build()?;
    if webhooks.subscriptions(&Owner::new(SHOP)?).await?.is_empty() {
        let endpoint =
            Subscription::builder("http://127.0.0.1:9/hooks").owner(SHOP).event_type("order.created");
        webhooks.subscribe(endpoint).await?;
    }
    Ok(webhooks)
}

fn order_event(webhooks: &Webhooks, id: &str) -> Result<webhooks_core::Prepared, Failure> {
    let publish = Publish::new("order.created", json!({ "id": id })).owner(SHOP).idempotency_key(id);
    Ok(webhooks.prepare(publish)?)
}

fn committed(id: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "committed {id}")?;
    Ok(stdout.flush()?)
}

/// What a host's handlers share on SQLite: its own connection to the file,
/// behind a mutex because SQLite calls block and run on the blocking pool.
#[derive(Clone)]
struct SqliteApp {
    db: Arc<Mutex<rusqlite::Connection>>,
    webhooks: Webhooks,
}

/// An async handler placing one order: the row and its event in one
/// transaction, run where blocking is allowed.
async fn place_order_on_sqlite(app: &SqliteApp, id: String) -> Result<(), Failure> {
    // Checked and rendered before the transaction, which then only writes.
    let event = order_event(&app.webhooks, &id)?;
    let db = Arc::clone(&app.db);
    tokio::task::spawn_blocking(move || -> Result<(), Failure> {
        let mut db = db.lock().map_err(|_| "the connection's mutex is poisoned")?;
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO orders (id) VALUES (?1)", [&id])?;
        SqliteStore::publish_in(&tx, &[event])?;
        Ok(tx.commit()?)
    })
    .await??;
    // This process's dispatchers look at once; others find it when they poll.
    app.webhooks.wake_dispatchers();
    Ok(())
}

async fn on_sqlite(path: &str, orders: u64) -> Result<(), Failure> {
    let webhooks = webhooks(SqliteStore::open(path).await?).await?;
    let db = rusqlite::Connection::open(path)?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    db.execute_batch("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")?;
    let start: i64 = db.query_row("SELECT count(*) FROM orders", [], |row| row.get(0))?;
    let app = SqliteApp { db: Arc::new(Mutex::new(db)), webhooks };
    for n in start.unsigned_abs()..orders {
        let id = format!("order-{n}");
        place_order_on_sqlite(&app, id.clone()).await?;
        committed(&id)?;
    }
    Ok(())
}

async fn on_postgres(url: &str, orders: u64) -> Result<(), Failure> {
    let store = PostgresStore::connect(url).await?;
    let pool = store.pool().clone();
    let webhooks = webhooks(store).await?;
    let mut client = pool.get().await?;
    client.batch_execute("CREATE TABLE IF NOT EXISTS public.orders (id TEXT PRIMARY KEY)").await?;
    let start: i64 = client.query_one("SELECT count(*) FROM public.orders", &[]).await?.get(0);
    for n in start.unsigned_abs()..orders {
        let id = format!("order-{n}");
        let tx = client.transaction().await?;
        tx.execute("INSERT INTO public.orders (id) VALUES ($1)", &[&id]).await?;
        PostgresStore::publish_in(&tx, &[order_event(&webhooks, &id)?]).await?;
        tx.commit().await?;
        committed(&id)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let placed = match parse(std::env::args().skip(1)) {
        Ok(Options { store: Database::Sqlite(path), orders }) => on_sqlite(&path, orders).await,
        Ok(Options { store: Database::Postgres(url), orders }) => on_postgres(&url, orders).await,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match placed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", webhooks_core::ErrorChain(&*error));
            ExitCode::from(1)
        }
    }
}
