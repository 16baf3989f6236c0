//! Data lifecycle: answers kept for `request_id` retries are deleted after
//! `mentorship.request_retention`, outbox events after `mentorship.outbox_retention` once Kafka
//! acknowledged them (an unsent one is never deleted).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub requests: u64,
    pub outbox: u64,
}

/// How long what is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub requests: TimeDelta,
    pub outbox: TimeDelta,
}

/// Deletes, as of `now`, what outlived its retention.
pub async fn prune(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention: Retention,
) -> Result<Pruned, sqlx::Error> {
    let requests = sqlx::query("DELETE FROM requests WHERE created_at < $1")
        .bind(now - retention.requests)
        .execute(pool)
        .await?
        .rows_affected();
    let outbox = sqlx::query("DELETE FROM outbox WHERE sent_at < $1")
        .bind(now - retention.outbox)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(Pruned { requests, outbox })
}

/// Prunes every `interval` until shutdown; failures are logged and retried next round.
pub async fn run(
    pool: &PgPool,
    retention: Retention,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut rounds = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = rounds.tick() => {}
        }
        match prune(pool, Utc::now(), retention).await {
            Ok(pruned) if pruned == Pruned::default() => {}
            Ok(pruned) => {
                tracing::info!(requests = pruned.requests, outbox = pruned.outbox, "pruned")
            }
            Err(error) => tracing::warn!(%error, "cannot prune"),
        }
    }
}
