//! The partner read model: who exists, their sponsor, rank, locale and time zone, from the
//! activity stream, so that mentors and mentees can be validated and looked up.
//!
//! Every write is an idempotent upsert that keeps the earliest enrolment and the highest rank,
//! so a redelivered or reordered record changes nothing it should not; offsets are stored
//! after the write.

use std::time::Duration;

use mentorstream_kafka::{Consumer, HandleError, InboundRecord, RecordHandler};
use mentorstream_proto::activity::v1::{ActivityEvent, PersonalFields, activity_event::Payload};
use mentorstream_tenancy::Tenants;
use prost::Message as _;
use sqlx::PgPool;

/// Applies activity records to the read model (with `mentorstream_kafka::run_consumer`).
#[derive(Debug)]
pub struct PartnerModel {
    pub pool: PgPool,
    /// Holds the partners' data keys, which open the personal fields of enrolments.
    pub tenants: Tenants,
}

impl RecordHandler for PartnerModel {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let mut event: ActivityEvent = record
            .decode()
            .map_err(|error| HandleError::Poison(error.to_string()))?;
        open_personal(&self.tenants, &mut event).await?;
        apply(&self.pool, &event).await
    }
}

/// Puts back the personal fields ingest sealed in an enrolment, opened with the partner's data
/// key; they stay empty once the key is gone (the partner was erased).
async fn open_personal(tenants: &Tenants, event: &mut ActivityEvent) -> Result<(), HandleError> {
    let ActivityEvent {
        tenant_id,
        partner_id,
        payload: Some(Payload::PartnerEnrolled(enrolled)),
        ..
    } = event
    else {
        return Ok(());
    };
    if enrolled.sealed_personal.is_empty() {
        return Ok(());
    }
    let key = tenants
        .find_partner_data_key(tenant_id, partner_id)
        .await
        .map_err(|error| HandleError::Transient(error.to_string()))?;
    let Some(key) = key else {
        return Ok(());
    };
    let opened = key
        .open(&enrolled.sealed_personal, tenant_id, partner_id)
        .map_err(|error| error.to_string())
        .and_then(|opened| {
            PersonalFields::decode(opened.as_slice()).map_err(|error| error.to_string())
        });
    // Fields that cannot be opened (a key restored from another backup) are as good as
    // shredded: the enrolment itself — sponsor, date — still counts.
    let personal = match opened {
        Ok(personal) => personal,
        Err(error) => {
            tracing::warn!(%error, %tenant_id, %partner_id, "cannot open an enrolment's personal fields; kept empty");
            return Ok(());
        }
    };
    enrolled.display_name = personal.display_name;
    enrolled.locale = personal.locale;
    enrolled.time_zone = personal.time_zone;
    Ok(())
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
            // An erased partner's name stays erased, whatever is redelivered.
            crate::erase::keep_erased(pool, &event.tenant_id, &event.partner_id)
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
            first_rank(pool, event, occurred_at, achieved.rank_level).await?;
        }
        Some(Payload::OrderPlaced(_)) => first(pool, event, occurred_at, "first_sale_at").await?,
        Some(Payload::ModuleCompleted(_)) => {
            first(pool, event, occurred_at, "first_module_at").await?;
        }
        _ => {}
    }
    Ok(())
}

/// Keeps the earliest `occurred_at` in `column` (a newcomer's milestone, docs/impact.md); a
/// partner not enrolled yet gets a placeholder row, as for a rank.
async fn first(
    pool: &PgPool,
    event: &ActivityEvent,
    occurred_at: chrono::DateTime<chrono::Utc>,
    column: &'static str,
) -> Result<(), HandleError> {
    sqlx::query(&format!(
        "INSERT INTO partners (tenant_id, partner_id, enrolled_at, enrolment_rank, {column}) \
         VALUES ($1, $2, $3, '~', $3) \
         ON CONFLICT (tenant_id, partner_id) DO UPDATE SET \
             {column} = LEAST(partners.{column}, EXCLUDED.{column})"
    ))
    .bind(&event.tenant_id)
    .bind(&event.partner_id)
    .bind(occurred_at)
    .execute(pool)
    .await
    .map_err(|error| HandleError::Transient(error.to_string()))?;
    Ok(())
}

/// Keeps when each rank level was first reached.
async fn first_rank(
    pool: &PgPool,
    event: &ActivityEvent,
    occurred_at: chrono::DateTime<chrono::Utc>,
    level: u32,
) -> Result<(), HandleError> {
    sqlx::query(
        "INSERT INTO partner_ranks (tenant_id, partner_id, rank_level, reached_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, partner_id, rank_level) DO UPDATE SET \
             reached_at = LEAST(partner_ranks.reached_at, EXCLUDED.reached_at)",
    )
    .bind(&event.tenant_id)
    .bind(&event.partner_id)
    .bind(i32::try_from(level).unwrap_or(i32::MAX))
    .bind(occurred_at)
    .execute(pool)
    .await
    .map_err(|error| HandleError::Transient(error.to_string()))?;
    Ok(())
}

/// How long a call naming a partner the read model does not know waits for it to catch up.
const READ_MODEL_WAIT: Duration = Duration::from_secs(2);
/// How often it looks again meanwhile.
const READ_MODEL_POLL: Duration = Duration::from_millis(100);

/// How far the read model has applied the activity topic, so that a call naming an unknown
/// partner can say whether the refusal is final.
#[derive(Debug, Clone)]
pub struct Readiness {
    pub consumer: Consumer,
    pub topic: String,
}

impl Readiness {
    /// `Ok` once `partner_id` is enrolled in the read model. A partner it still does not know
    /// after applying every record the topic held is refused for good (FAILED_PRECONDITION,
    /// reason `PARTNER_NOT_ENROLLED`); one it does not know while it is behind — an enrolment
    /// accepted a moment ago — is waited for up to [`READ_MODEL_WAIT`], then refused as
    /// retryable (UNAVAILABLE, reason `PARTNER_NOT_YET_KNOWN`, with RetryInfo).
    pub async fn enrolled(
        &self,
        pool: &PgPool,
        tenant_id: &str,
        field: &str,
        partner_id: &str,
    ) -> Result<(), tonic::Status> {
        if is_enrolled(pool, tenant_id, partner_id).await? {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + READ_MODEL_WAIT;
        loop {
            // Asked before the read model is: every record the broker held then is applied,
            // so a miss below is final.
            let caught_up = self.consumer.applied_to_end(&self.topic).await;
            if is_enrolled(pool, tenant_id, partner_id).await? {
                return Ok(());
            }
            let metadata = [("field", field), ("partner_id", partner_id)];
            if caught_up {
                return Err(mentorstream_grpc::refusal(
                    tonic::Code::FailedPrecondition,
                    "PARTNER_NOT_ENROLLED",
                    metadata,
                    format!(
                        "{field}: `{partner_id}` is not an enrolled partner (enrolments arrive \
                         from the activity stream, and every accepted one is applied)"
                    ),
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(mentorstream_grpc::retry_later(
                    format!(
                        "{field}: `{partner_id}` is not known yet: the partner read model is \
                         still applying accepted activity; retry"
                    ),
                    "PARTNER_NOT_YET_KNOWN",
                    mentorstream_grpc::RETRY_AFTER,
                    metadata,
                ));
            }
            tokio::time::sleep(READ_MODEL_POLL).await;
        }
    }
}

pub(crate) async fn is_enrolled(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
) -> Result<bool, tonic::Status> {
    let known = sqlx::query_scalar!(
        "SELECT EXISTS (SELECT 1 FROM partners WHERE tenant_id = $1 AND partner_id = $2 \
                                                 AND enrolment_rank <> '~')",
        tenant_id,
        partner_id
    )
    .fetch_one(pool)
    .await
    .map_err(crate::api::unavailable)?;
    Ok(known.unwrap_or(false))
}
