//! Data lifecycle: notifications that reached their end (delivered, failed, suppressed,
//! cancelled) are deleted with their attempts once `notifier.notification_retention` has passed
//! since their last moment (due, last attempt, delivery), and answers kept for `request_id`
//! retries after `notifier.request_retention`. Pending notifications are never pruned. The
//! followers plan nothing for an event older than the notification retention, so a
//! redelivered old event cannot send again what was pruned (crate::causes).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// What one round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub notifications: u64,
    pub attempts: u64,
    pub requests: u64,
}

/// How long what is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub notifications: TimeDelta,
    pub requests: TimeDelta,
}

/// Deletes, as of `now`, what outlived its retention; one transaction.
pub async fn prune(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention: Retention,
) -> Result<Pruned, sqlx::Error> {
    let before = now - retention.notifications;
    let mut transaction = pool.begin().await?;
    // The last moment of a finished notification: when it was due, last tried or delivered.
    let finished = "status <> 'pending' \
         AND greatest(due_at, next_attempt_at, coalesce(delivered_at, due_at)) < $1";
    // One statement, so a notification cannot change between losing its attempts and going.
    let (notifications, attempts): (i64, i64) = sqlx::query_as(&format!(
        "WITH gone AS (SELECT notification_id FROM notifications WHERE {finished} FOR UPDATE), \
              attempts_gone AS (DELETE FROM attempts a USING gone \
                                WHERE a.notification_id = gone.notification_id RETURNING 1), \
              notifications_gone AS (DELETE FROM notifications n USING gone \
                                     WHERE n.notification_id = gone.notification_id RETURNING 1) \
         SELECT (SELECT count(*) FROM notifications_gone), (SELECT count(*) FROM attempts_gone)"
    ))
    .bind(before)
    .fetch_one(&mut *transaction)
    .await?;
    let (notifications, attempts) = (
        u64::try_from(notifications).unwrap_or(0),
        u64::try_from(attempts).unwrap_or(0),
    );
    let requests = sqlx::query("DELETE FROM requests WHERE created_at < $1")
        .bind(now - retention.requests)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
    transaction.commit().await?;
    Ok(Pruned {
        notifications,
        attempts,
        requests,
    })
}

/// Prunes every `interval` until shutdown; failures are logged and retried next round.
pub async fn run(
    pool: PgPool,
    clock: Arc<dyn Clock>,
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
        match prune(&pool, clock.now(), retention).await {
            Ok(pruned) if pruned == Pruned::default() => {}
            Ok(pruned) => tracing::info!(
                notifications = pruned.notifications,
                attempts = pruned.attempts,
                requests = pruned.requests,
                "pruned"
            ),
            Err(error) => tracing::warn!(%error, "cannot prune"),
        }
    }
}
