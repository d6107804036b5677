//! What the SQL stores share where their dialects agree: the columns of a
//! row as plain values and their decoding into the model, and the filters of
//! a delivery listing. Each driver reads its rows into these and binds the
//! values; the meaning lives here once.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use uuid::Uuid;

use crate::micros;
use crate::model::{
    Attempt, AttemptResult, Delivery, DeliveryState, Owner, PreviousSecret, Subscription, SubscriptionStatus,
};
use crate::secret::Secret;
use crate::settings::EndpointSettings;
use crate::store::{DeliveryQuery, StateFilter};

/// A stored value that is not one the model allows: the database was
/// changed by hand or is damaged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row: {0}")]
pub struct CorruptRow(pub String);

/// A database whose schema a newer version of its store crate wrote: using
/// it with this version could corrupt it, so it is left alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database schema is version {found}, newer than version {supported} that {store} knows; upgrade {store} to use it"
)]
pub struct SchemaTooNew {
    /// The store crate, e.g. `webhooks-sqlite`.
    pub store: &'static str,
    /// The database's schema version.
    pub found: i64,
    /// The newest version this crate knows.
    pub supported: i64,
}

/// A database whose schema is older than the one its store crate uses, opened
/// without migrating: the host runs the store's `migrate` first (a deploy
/// step) and opens it after.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the database schema is version {found}, older than version {expected} that {store} uses; run its migrate step first"
)]
pub struct SchemaBehind {
    /// The store crate, e.g. `webhooks-sqlite`.
    pub store: &'static str,
    /// The database's schema version.
    pub found: i64,
    /// The version this crate uses.
    pub expected: i64,
}

/// A migration applied to the database that is not the text this store
/// crate ships: a released migration never changes, so the database was
/// migrated by a modified build, and the store will not guess its schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "migration {version} applied to this database differs from the one {store} ships (checksum {applied}, shipped {shipped})"
)]
pub struct MigrationChanged {
    /// The store crate, e.g. `webhooks-sqlite`.
    pub store: &'static str,
    /// The migration's version.
    pub version: i64,
    /// The checksum recorded when it was applied (`none` when missing).
    pub applied: String,
    /// The checksum of the text this crate ships.
    pub shipped: String,
}

/// What a store's `migrate` did: the schema version it found and the one it
/// left, equal when there was nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Migrated {
    /// The version before.
    pub from: i64,
    /// The version after.
    pub to: i64,
}

impl Migrated {
    /// The report of a migration from `from` to `to`.
    pub fn new(from: i64, to: i64) -> Self {
        Self { from, to }
    }
}

/// The macro behind [`migrations`].
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_migrations {
    ($($version:literal),* $(,)?) => {
        &[$(include_str!(concat!("../migrations/V", $version, ".sql"))),*]
    };
}

/// The texts of a store crate's migrations, listed by version: migration
/// `n` is the file `migrations/V<n>.sql` beside the calling crate's `src/`
/// (`include_str!` reads it from the file that calls), at index `n - 1`.
/// In a store's `src/schema.rs`,
/// `const MIGRATIONS: &[&str] = webhooks_core::sql::migrations!(1, 2, 3);`
/// holds `migrations/V1.sql` to `migrations/V3.sql`.
#[doc(inline)]
pub use crate::__sql_migrations as migrations;

/// The checksum a store records beside each migration it applies: SHA-256
/// of its text in hex, line endings as `\n` so a checkout that rewrote them
/// still matches.
///
/// ```
/// let crlf = webhooks_core::sql::checksum("CREATE TABLE t (x INT);\r\n");
/// assert_eq!(crlf, webhooks_core::sql::checksum("CREATE TABLE t (x INT);\n"));
/// assert_eq!(crlf.len(), 64);
/// ```
pub fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.replace("\r\n", "\n").as_bytes()))
}

/// Refuses a database whose applied migrations, up to version `found`,
/// are not the texts `shipped` (migration `n` at index `n - 1`): `applied`
/// holds the checksum recorded for each version, as [`checksum`] made it.
///
/// ```
/// use std::collections::HashMap;
/// use webhooks_core::sql::{checksum, compare_checksums};
///
/// let shipped = ["CREATE TABLE a (x INT);", "CREATE TABLE b (y INT);"];
/// let mut applied: HashMap<i64, String> = (1..).zip(shipped).map(|(v, sql)| (v, checksum(sql))).collect();
/// assert!(compare_checksums("webhooks-sqlite", &shipped, 2, &applied).is_ok());
/// applied.insert(2, "edited".to_owned());
/// assert_eq!(compare_checksums("webhooks-sqlite", &shipped, 2, &applied).unwrap_err().version, 2);
/// ```
pub fn compare_checksums(
    store: &'static str,
    shipped: &[&str],
    found: i64,
    applied: &HashMap<i64, String>,
) -> Result<(), MigrationChanged> {
    for (version, sql) in (1..=found).zip(shipped) {
        let shipped = checksum(sql);
        match applied.get(&version) {
            Some(recorded) if *recorded == shipped => {}
            recorded => {
                let applied = recorded.cloned().unwrap_or_else(|| "none".to_owned());
                return Err(MigrationChanged { store, version, applied, shipped });
            }
        }
    }
    Ok(())
}

/// A stored count (attempts, an attempt's number, failures) as the model's
/// `u32`.
pub fn count(value: i64, column: &str) -> Result<u32, CorruptRow> {
    u32::try_from(value).map_err(|_| CorruptRow(format!("{column} {value} is not a count")))
}

/// A stored delivery state.
pub fn state(name: &str) -> Result<DeliveryState, CorruptRow> {
    name.parse().map_err(|error| CorruptRow(format!("{error}")))
}

/// Settings as the `settings` column keeps them, secret values included
/// (the admin form redacts them; a store must not).
pub fn settings_to_text(settings: &EndpointSettings) -> String {
    // Strings, numbers and maps with string keys always serialize.
    serde_json::to_string(&settings.with_secrets()).unwrap_or_else(|_| "{}".to_owned())
}

/// Settings read back from the `settings` column, checked as when they were
/// set.
pub fn settings_from_text(text: &str) -> Result<EndpointSettings, CorruptRow> {
    serde_json::from_str(text).map_err(|error| CorruptRow(format!("settings: {error}")))
}

/// A subscription's columns as stored.
#[derive(Clone, Debug)]
pub struct SubscriptionRow {
    /// `id`.
    pub id: Uuid,
    /// `url`.
    pub url: String,
    /// `secret`.
    pub secret: String,
    /// `previous_secret`.
    pub previous_secret: Option<String>,
    /// `previous_valid_until`, microseconds.
    pub previous_valid_until: Option<i64>,
    /// `disabled_reason`.
    pub disabled_reason: Option<String>,
    /// `disabled_at`, microseconds.
    pub disabled_at: Option<i64>,
    /// `consecutive_failures`.
    pub consecutive_failures: i64,
    /// `created_at`, microseconds.
    pub created_at: i64,
    /// Its event types.
    pub event_types: Vec<String>,
    /// Its channels.
    pub channels: Vec<String>,
    /// `owner`.
    pub owner: String,
    /// `settings`, as [`settings_to_text`] writes them.
    pub settings: String,
}

impl SubscriptionRow {
    /// The subscription it stores.
    pub fn decode(self) -> Result<Subscription, CorruptRow> {
        let previous_secret = match (self.previous_secret, self.previous_valid_until) {
            (Some(secret), Some(until)) => {
                Some(PreviousSecret { secret: Secret::from(secret), valid_until: micros::to_time(until) })
            }
            _ => None,
        };
        let status = match (self.disabled_reason, self.disabled_at) {
            (Some(reason), Some(at)) => SubscriptionStatus::Disabled { reason, at: micros::to_time(at) },
            _ => SubscriptionStatus::Enabled,
        };
        Ok(Subscription {
            id: self.id.into(),
            owner: Owner::new(self.owner).map_err(|error| CorruptRow(format!("owner: {error}")))?,
            url: self
                .url
                .parse()
                .map_err(|error| CorruptRow(format!("subscription URL {:?}: {error}", self.url)))?,
            event_types: self.event_types.into_iter().collect::<BTreeSet<_>>(),
            channels: self.channels.into_iter().collect(),
            secret: Secret::from(self.secret),
            previous_secret,
            status,
            settings: settings_from_text(&self.settings)?,
            consecutive_failures: count(self.consecutive_failures, "consecutive failures")?,
            created_at: micros::to_time(self.created_at),
        })
    }
}

/// A delivery's columns as stored, with its event's.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    /// The delivery's `id`.
    pub id: Uuid,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's name.
    pub event_type: String,
    /// `subscription_id`.
    pub subscription_id: Uuid,
    /// The event's body.
    pub body: Vec<u8>,
    /// `state`, by name.
    pub state: String,
    /// `cycle`.
    pub cycle: i64,
    /// `attempts`.
    pub attempts: i64,
    /// `next_attempt_at`, microseconds.
    pub next_attempt_at: Option<i64>,
    /// `waiting`: behind an earlier delivery of an ordered subscription, so
    /// not due whatever `next_attempt_at` says.
    pub waiting: bool,
    /// When the event happened, microseconds: the delivery's creation.
    pub created_at: i64,
}

impl DeliveryRow {
    /// The delivery it stores.
    pub fn decode(self) -> Result<Delivery, CorruptRow> {
        Ok(Delivery {
            id: self.id.into(),
            event_id: self.event_id.into(),
            event_type: self.event_type,
            subscription_id: self.subscription_id.into(),
            body: Bytes::from(self.body),
            state: state(&self.state)?,
            cycle: count(self.cycle, "cycle")?,
            attempts: count(self.attempts, "attempts")?,
            next_attempt_at: self.next_attempt_at.filter(|_| !self.waiting).map(micros::to_time),
            created_at: micros::to_time(self.created_at),
        })
    }
}

/// An attempt's columns as stored.
#[derive(Clone, Debug)]
pub struct AttemptRow {
    /// `cycle`.
    pub cycle: i64,
    /// `number`.
    pub number: i64,
    /// `started_at`, microseconds.
    pub started_at: i64,
    /// `duration_us`.
    pub duration_us: i64,
    /// `status`, when a response came.
    pub status: Option<i64>,
    /// `response`: the start of its body.
    pub response: Option<String>,
    /// `error`: why no response came.
    pub error: Option<String>,
}

impl AttemptRow {
    /// The attempt it stores, made for `delivery`.
    pub fn decode(self, delivery: crate::DeliveryId) -> Result<Attempt, CorruptRow> {
        let result = match self.status {
            Some(status) => AttemptResult::Response {
                status: u16::try_from(status).map_err(|_| CorruptRow(format!("status {status}")))?,
                body: self.response.unwrap_or_default(),
            },
            None => AttemptResult::Error(self.error.unwrap_or_default()),
        };
        Ok(Attempt {
            delivery_id: delivery,
            cycle: count(self.cycle, "cycle")?,
            number: count(self.number, "attempt number")?,
            started_at: micros::to_time(self.started_at),
            duration: micros::to_duration(self.duration_us),
            result,
        })
    }
}

/// How a dialect numbers its placeholders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `?1`, `?2`... (SQLite).
    Question,
    /// `$1`, `$2`... (PostgreSQL).
    Dollar,
}

impl Placeholder {
    /// The `n`th placeholder, from 1.
    pub fn nth(self, n: usize) -> String {
        match self {
            Self::Question => format!("?{n}"),
            Self::Dollar => format!("${n}"),
        }
    }
}

/// A value a filter binds, for the driver to convert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    /// A UUID (ids).
    Id(Uuid),
    /// Text (names).
    Text(String),
    /// A time as microseconds.
    Micros(i64),
}

/// A delivery listing's filters as one SQL condition over `deliveries d`
/// joined to `events e` and `subscriptions s`, and the values of its
/// placeholders, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The condition (`TRUE` when nothing is filtered).
    pub condition: String,
    /// Its values, in placeholder order.
    pub values: Vec<SqlValue>,
}

impl Filter {
    /// The filters of `query`, the cursor included.
    pub fn deliveries(query: &DeliveryQuery, placeholder: Placeholder) -> Self {
        let mut terms = vec!["TRUE".to_owned()];
        let mut values = Vec::new();
        let mut term = |sql: &str, value: SqlValue| {
            values.push(value);
            terms.push(sql.replace('?', &placeholder.nth(values.len())));
        };
        if let Some(owner) = &query.owner {
            term("s.owner = ?", SqlValue::Text(owner.as_str().to_owned()));
        }
        if let Some(subscription) = query.subscription {
            term("d.subscription_id = ?", SqlValue::Id(subscription.as_uuid()));
        }
        if let Some(after) = query.after {
            term("d.id > ?", SqlValue::Id(after.as_uuid()));
        }
        if let Some(name) = &query.event_type {
            term("e.name = ?", SqlValue::Text(name.clone()));
        }
        if let Some(from) = query.created_from {
            term("e.occurred_at >= ?", SqlValue::Micros(micros::from_time(from)));
        }
        if let Some(until) = query.created_until {
            term("e.occurred_at < ?", SqlValue::Micros(micros::from_time(until)));
        }
        let state = query.state.map(|state| match state {
            StateFilter::Pending => "d.state = 'pending' AND d.held = FALSE",
            StateFilter::Held => "d.state = 'pending' AND d.held = TRUE",
            StateFilter::Delivered => "d.state = 'delivered'",
            StateFilter::Dropped => "d.state = 'dropped'",
        });
        terms.extend(state.map(str::to_owned));
        Self { condition: terms.join(" AND "), values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CustomHeader, DeliveryId, RateLimit, SubscriptionId};
    use std::collections::BTreeMap;

    #[test]
    fn filters_number_their_placeholders_in_each_dialect() {
        let subscription = SubscriptionId::new();
        let query = DeliveryQuery {
            subscription: Some(subscription),
            event_type: Some("job.completed".into()),
            state: Some(StateFilter::Held),
            ..DeliveryQuery::default()
        };
        let filter = Filter::deliveries(&query, Placeholder::Dollar);
        assert_eq!(
            filter.condition,
            "TRUE AND d.subscription_id = $1 AND e.name = $2 AND d.state = 'pending' AND d.held = TRUE"
        );
        assert_eq!(
            filter.values,
            vec![SqlValue::Id(subscription.as_uuid()), SqlValue::Text("job.completed".into())]
        );
        let after = DeliveryQuery { after: Some(DeliveryId::new()), ..DeliveryQuery::default() };
        assert_eq!(Filter::deliveries(&after, Placeholder::Question).condition, "TRUE AND d.id > ?1");
        assert_eq!(Filter::deliveries(&DeliveryQuery::default(), Placeholder::Question).condition, "TRUE");
    }

    #[test]
    fn settings_keep_secret_header_values_and_every_field() {
        let settings = EndpointSettings {
            headers: vec![
                CustomHeader::secret("Authorization", "Bearer s3cr3t").unwrap(),
                CustomHeader::new("x-route", "eu-1").unwrap(),
            ],
            rate_limit: Some(RateLimit::new(10, 20).unwrap()),
            max_in_flight: Some(3),
            ordered: true,
            description: "billing".into(),
            metadata: BTreeMap::from([("team".into(), "payments".into())]),
            retry: Some(crate::RetryChoice::named("premium")),
            disable: Some(crate::DisablePolicy::after_consecutive_failures(3).disable_on_gone(false)),
            held_limit: Some(500),
        };
        let text = settings_to_text(&settings);
        assert!(text.contains("Bearer s3cr3t"), "stored in the clear: {text}");
        assert_eq!(settings_from_text(&text).unwrap(), settings);
        assert_eq!(settings_from_text("{}").unwrap(), EndpointSettings::default());
        assert!(settings_from_text(r#"{"headers":[{"name":"host","value":"x","secret":false}]}"#).is_err());
    }

    #[test]
    fn values_outside_the_model_are_corrupt_rows() {
        assert_eq!(count(4_294_967_295, "attempts").unwrap(), u32::MAX);
        assert!(count(-1, "attempts").is_err());
        assert!(count(1 << 32, "attempts").is_err());
        assert_eq!(state("delivered").unwrap(), DeliveryState::Delivered);
        assert!(state("lost").is_err());
        let row = AttemptRow {
            cycle: 1,
            number: 1,
            started_at: 0,
            duration_us: 5,
            status: Some(70_000),
            response: Some(String::new()),
            error: None,
        };
        assert!(row.decode(DeliveryId::new()).is_err());
    }
}
