//! The partner read model: who exists, their sponsor, rank, locale and time zone, from the
//! activity stream, so that mentors and mentees can be validated and looked up.
//!
//! Every write is an idempotent upsert that keeps the earliest enrolment and the highest rank,
//! so a redelivered or reordered record changes nothing it should not; offsets are stored
//! after the write.

use mentorstream_kafka::{HandleError, InboundRecord, RecordHandler};
use mentorstream_proto::activity::v1::{ActivityEvent, activity_event::Payload};
use sqlx::PgPool;

/// Applies activity records to the read model (with `mentorstream_kafka::run_consumer`).
#[derive(Debug)]
pub struct PartnerModel {
    pub pool: PgPool,
}

impl RecordHandler for PartnerModel {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let event: ActivityEvent = record
            .decode()
            .map_err(|error| HandleError::Poison(error.to_string()))?;
        apply(&self.pool, &event).await
    }
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

async fn apply(pool: &PgPool, event: &ActivityEvent) -> Result<(), HandleError> {
    let occurred_at = event
        .occurred_at
        .as_ref()
        .and_then(|time| {
            chrono::DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
        })
        .ok_or_else(|| HandleError::Poison("event has no valid occurred_at".into()))?;
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
                rank(event)
            )
            .execute(pool)
            .await
            .map_err(|error| HandleError::Transient(error.to_string()))?;
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
            .map_err(|error| HandleError::Transient(error.to_string()))?;
        }
        _ => {}
    }
    Ok(())
}
