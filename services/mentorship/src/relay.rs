//! The outbox relay: publishes committed outbox rows to `mentorstream.mentorship.v1`, in
//! sequence order per record key, and marks them sent only after Kafka acknowledged them.
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED`, so several relays (replicas) share the work;
//! a row is eligible only when no earlier unsent row has its key, so even then one key's rows
//! are published in commit order. A crash between the acknowledgement and the mark publishes a
//! row again with the same event id (consumers count an event id once).

use std::sync::Arc;
use std::time::Duration;

use mentorstream_kafka::{CloudEvent, KafkaError, OutboundRecord, Producer, tenant_partition};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per transaction at most.
const BATCH: i64 = 500;
/// How often the relay looks for rows it was not told about (other replicas, a restart).
const POLL: Duration = Duration::from_millis(500);
/// Pause after a failure (database or broker away).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the mentorship database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Publishes until `shutdown`; `wake` is notified after every commit that wrote to the outbox.
pub async fn run(
    pool: PgPool,
    producer: Producer,
    topic: String,
    partitions: i32,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    // The backlog gauges every few seconds, whatever the round did: a relay that keeps
    // failing, or never catches up, must show its growing wait.
    let mut reported: Option<std::time::Instant> = None;
    loop {
        let published = publish_due(&pool, &producer, &topic, partitions).await;
        if reported.is_none_or(|at| at.elapsed() >= BACKLOG_REPORT) {
            report_backlog(&pool).await;
            reported = Some(std::time::Instant::now());
        }
        let pause = match published {
            Ok(0) => POLL,
            // More may be waiting right away.
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "cannot relay the outbox; retrying");
                RETRY_PAUSE
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// How often the backlog gauges are refreshed.
const BACKLOG_REPORT: Duration = Duration::from_secs(5);

/// Sets the backlog gauges from the unsent rows (the partial index `outbox_unsent`); best
/// effort.
async fn report_backlog(pool: &PgPool) {
    let backlog: Result<(i64, f64), sqlx::Error> = sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 \
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await;
    match backlog {
        Ok((events, oldest)) => crate::metrics::backlog(
            events,
            Duration::try_from_secs_f64(oldest.max(0.0)).unwrap_or_default(),
        ),
        Err(error) => tracing::warn!(%error, "cannot count the outbox backlog"),
    }
}

/// Publishes one batch of eligible rows; how many.
async fn publish_due(
    pool: &PgPool,
    producer: &Producer,
    topic: &str,
    partitions: i32,
) -> Result<usize, RelayError> {
    let started = std::time::Instant::now();
    let mut transaction = pool.begin().await?;
    let rows = sqlx::query!(
        "SELECT seq, tenant_id, record_key, event_id, event_type, payload, occurred_at \
         FROM outbox o \
         WHERE sent_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM outbox e \
                           WHERE e.record_key = o.record_key AND e.sent_at IS NULL \
                             AND e.seq < o.seq) \
         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        BATCH
    )
    .fetch_all(&mut *transaction)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Enqueued in sequence order, in the partition of their tenant (docs/kpi-engine.md):
    // records of one key keep their order.
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        let record = OutboundRecord {
            topic: topic.to_owned(),
            partition: Some(tenant_partition(&row.tenant_id, partitions)),
            key: row.record_key.clone().into_bytes(),
            payload: Some(row.payload.clone()),
            event: CloudEvent {
                id: row.event_id.clone(),
                event_type: format!("mentorstream.mentorship.v1.{}", row.event_type),
                source: format!("/tenants/{}/mentorship", row.tenant_id),
                time: row.occurred_at,
            },
        };
        deliveries.push(producer.enqueue(&record).await?);
    }
    for delivery in deliveries {
        delivery.await?;
    }
    let published: Vec<i64> = rows.iter().map(|row| row.seq).collect();
    sqlx::query!(
        "UPDATE outbox SET sent_at = now() WHERE seq = ANY($1)",
        &published
    )
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    crate::metrics::relayed(
        rows.iter().map(|row| row.event_type.as_str()),
        started.elapsed(),
    );
    Ok(published.len())
}
