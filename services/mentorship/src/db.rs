//! The service's PostgreSQL: the pool, migrations, and what every mutation does in its
//! transaction — remembering its answer under its `request_id`, and writing the events it
//! announces to the outbox.

use std::time::Duration;

use mentorstream_proto::mentorship::v1::MentorshipEvent;
use prost::Message as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections of one service instance.
const MAX_CONNECTIONS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the mentorship database is unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("cannot migrate the mentorship database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("a stored answer cannot be read: {0}")]
    Corrupt(#[from] prost::DecodeError),
    #[error("request_id `{request_id}` was used for {method}")]
    RequestReused { request_id: String, method: String },
}

/// Connects lazily (the service starts while the database is still coming up).
pub fn connect(url: &str) -> Result<PgPool, DbError> {
    Ok(PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)?)
}

pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// A mutation's transaction, or the answer it gave the first time.
pub enum Begun<'c, R> {
    Fresh(Transaction<'c, Postgres>),
    Answered(R),
}

impl<R: std::fmt::Debug> std::fmt::Debug for Begun<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fresh(_) => f.write_str("Fresh"),
            Self::Answered(answer) => f.debug_tuple("Answered").field(answer).finish(),
        }
    }
}

/// Begins `method` for `request_id` (none: not idempotent): a request id already answered
/// gives its first answer; one in flight waits for it (the retries of one request serialise).
pub async fn begin<R: prost::Message + Default>(
    pool: &PgPool,
    tenant_id: &str,
    request_id: Option<&str>,
    method: &str,
) -> Result<Begun<'static, R>, DbError> {
    let mut transaction = pool.begin().await?;
    let Some(request_id) = request_id else {
        return Ok(Begun::Fresh(transaction));
    };
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))",
        tenant_id,
        request_id
    )
    .execute(&mut *transaction)
    .await?;
    let answered = sqlx::query!(
        "SELECT method, response FROM requests WHERE tenant_id = $1 AND request_id = $2",
        tenant_id,
        request_id
    )
    .fetch_optional(&mut *transaction)
    .await?;
    match answered {
        None => Ok(Begun::Fresh(transaction)),
        Some(row) if row.method == method => Ok(Begun::Answered(R::decode(&row.response[..])?)),
        Some(row) => Err(DbError::RequestReused {
            request_id: request_id.to_owned(),
            method: row.method,
        }),
    }
}

/// Remembers the answer of `request_id` and commits.
pub async fn finish(
    mut transaction: Transaction<'_, Postgres>,
    tenant_id: &str,
    request_id: Option<&str>,
    method: &str,
    answer: &impl prost::Message,
) -> Result<(), DbError> {
    if let Some(request_id) = request_id {
        sqlx::query!(
            "INSERT INTO requests (tenant_id, request_id, method, response) VALUES ($1, $2, $3, $4)",
            tenant_id,
            request_id,
            method,
            answer.encode_to_vec()
        )
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Writes `event` to the outbox, keyed by `key` (the entity whose order matters).
pub async fn announce(
    transaction: &mut Transaction<'_, Postgres>,
    key: &str,
    event_type: &str,
    event: &MentorshipEvent,
) -> Result<(), DbError> {
    let occurred_at = event
        .occurred_at
        .as_ref()
        .and_then(|time| {
            chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
        })
        .unwrap_or_else(chrono::Utc::now);
    sqlx::query!(
        "INSERT INTO outbox (tenant_id, record_key, event_id, event_type, payload, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        event.tenant_id,
        format!("{}/{key}", event.tenant_id),
        event.event_id,
        event_type,
        event.encode_to_vec(),
        occurred_at
    )
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
