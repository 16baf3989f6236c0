//! Isolation for integration tests that run against the real local stack (deploy/local).
//!
//! Every test gets its own PostgreSQL database, topic names, consumer group and Redis key
//! prefix, so tests run in parallel and never see each other's data. The stack's addresses
//! come from the same defaults as the services, overridable with the usual
//! `MENTORSTREAM__...` variables.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use mentorstream_config::{Config, ExposeSecret};
use sqlx::Connection;

/// A short unique name: `<prefix>-<12 hex>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// The stack's configuration with everything a test writes made unique: topics, Redis key
/// prefix and the three databases (created empty).
pub async fn isolated_config() -> Config {
    let base = Config::load(None).expect("default configuration");
    let topic = |name: &str| unique(&format!("t.{name}"));
    let control = fresh_database(&base, "ctl").await;
    let mentorship = fresh_database(&base, "mnt").await;
    let notifier = fresh_database(&base, "ntf").await;
    let figment = Config::figment(None)
        .expect("defaults")
        .merge(figment::providers::Serialized::default(
            "kafka.topics",
            serde_json::json!({
                "activity": topic("activity"),
                "mentorship": topic("mentorship"),
                "kpi_updates": topic("kpi-updates"),
                "kpi_signals": topic("kpi-signals"),
            }),
        ))
        .merge(figment::providers::Serialized::default(
            "kafka.partitions",
            3,
        ))
        .merge(figment::providers::Serialized::default(
            "redis.key_prefix",
            unique("test"),
        ))
        .merge(figment::providers::Serialized::default(
            "postgres.url",
            control,
        ))
        .merge(figment::providers::Serialized::default(
            "mentorship.database_url",
            mentorship,
        ))
        .merge(figment::providers::Serialized::default(
            "notifier.database_url",
            notifier,
        ));
    Config::from_figment(&figment).expect("isolated configuration")
}

/// Creates an empty database next to the control database and returns its URL.
pub async fn fresh_database(base: &Config, purpose: &str) -> String {
    let url = base.postgres.url.expose_secret();
    let (server, _) = url.rsplit_once('/').expect("database url has a path");
    let name = unique(&format!("test_{purpose}")).replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("the local PostgreSQL is up (make stack-up)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    format!("{server}/{name}")
}
