//! The partner read model: who exists, their sponsor, rank, locale and time zone, from the
//! activity stream, so that mentors and mentees can be validated and looked up.
//!
//! Every write is an idempotent upsert that keeps the earliest enrolment and the highest rank,
//! so a redelivered or reordered record changes nothing it should not; offsets are stored
//! after the write.

use std::time::Duration;

use futures::StreamExt as _;
use mentorstream_kafka::{BorrowedMessage, Consumer, DeadLetters, InboundRecord, KafkaError};
use mentorstream_proto::activity::v1::{ActivityEvent, activity_event::Payload};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Pause before retrying a record while the database is away.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Applies activity records to the read model until `shutdown`.
pub async fn run(
    consumer: &Consumer,
    pool: &PgPool,
    dead_letters: &DeadLetters,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let mut stream = consumer.inner().stream();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = stream.next() => match message {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
                None => break,
            },
        };
        loop {
            match apply(pool, &message).await {
                Ok(()) => break,
                Err(Applied::Poison(reason)) => {
                    dead_letters.send(&message, &reason).await?;
                    break;
                }
                Err(Applied::Transient(error)) => {
                    tracing::warn!(%error, "cannot update the partner read model; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return consumer.commit_in_background(),
                () = tokio::time::sleep(RETRY_PAUSE) => {}
            }
        }
        consumer.store(&message)?;
    }
    consumer.commit_in_background()
}

enum Applied {
    Poison(String),
    Transient(sqlx::Error),
}

/// `(occurred_at micros, source, source_event_id)` as one sortable string, like the
/// aggregator's ranks: the earliest enrolment counts.
fn rank(event: &ActivityEvent) -> String {
    let micros = event.occurred_at.as_ref().map_or(0, |time| {
        time.seconds * 1_000_000 + i64::from(time.nanos) / 1_000
    });
    format!(
        "{micros:020}\u{1e}{}\u{1e}{}",
        event.source, event.source_event_id
    )
}

async fn apply(pool: &PgPool, message: &BorrowedMessage<'_>) -> Result<(), Applied> {
    let event: ActivityEvent = InboundRecord::new(message)
        .decode()
        .map_err(|error| Applied::Poison(error.to_string()))?;
    let occurred_at = event
        .occurred_at
        .as_ref()
        .and_then(|time| {
            chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
        })
        .ok_or_else(|| Applied::Poison("event has no valid occurred_at".into()))?;
    match &event.payload {
        Some(Payload::PartnerEnrolled(enrolled)) => {
            // A rank seen before the enrolment left a placeholder whose rank sorts last.
            sqlx::query!(
                "INSERT INTO partners (tenant_id, partner_id, sponsor_id, display_name, locale, \
                                       time_zone, enrolled_at, enrolment_rank) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (tenant_id, partner_id) DO UPDATE SET \
                     sponsor_id = EXCLUDED.sponsor_id, display_name = EXCLUDED.display_name, \
                     locale = EXCLUDED.locale, time_zone = EXCLUDED.time_zone, \
                     enrolled_at = EXCLUDED.enrolled_at, enrolment_rank = EXCLUDED.enrolment_rank \
                 WHERE partners.enrolment_rank > EXCLUDED.enrolment_rank",
                event.tenant_id,
                event.partner_id,
                enrolled.sponsor_id,
                enrolled.display_name,
                enrolled.locale,
                enrolled.time_zone,
                occurred_at,
                rank(&event)
            )
            .execute(pool)
            .await
            .map_err(Applied::Transient)?;
        }
        Some(Payload::RankAchieved(achieved)) => {
            sqlx::query!(
                "INSERT INTO partners (tenant_id, partner_id, enrolled_at, enrolment_rank, \
                                       rank_level, rank_name) \
                 VALUES ($1, $2, $3, '~', $4, $5) \
                 ON CONFLICT (tenant_id, partner_id) DO UPDATE SET \
                     rank_level = EXCLUDED.rank_level, rank_name = EXCLUDED.rank_name \
                 WHERE partners.rank_level < EXCLUDED.rank_level",
                event.tenant_id,
                event.partner_id,
                occurred_at,
                i32::try_from(achieved.rank_level).unwrap_or(i32::MAX),
                achieved.rank_name
            )
            .execute(pool)
            .await
            .map_err(Applied::Transient)?;
        }
        _ => {}
    }
    Ok(())
}
