//! Isolation for integration tests that run against the real local stack (deploy/local).
//!
//! Every test gets its own PostgreSQL database ([`fresh_database`]) and its own names for
//! topics, consumer groups and Redis key prefixes ([`unique`]), so tests run in parallel and
//! never see each other's data. The stack's addresses come from the same defaults as the
//! services, overridable with the usual `MENTORSTREAM__...` variables.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use mentorstream_config::{Config, ExposeSecret};
use sqlx::Connection;

/// A short unique name: `<prefix>-<12 hex>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
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
