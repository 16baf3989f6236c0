//! Micro-sessions, their feedback and the modules catalogue: scheduling with a mentor's
//! sessions never overlapping, rescheduling, cancelling, completing with attendance, feedback
//! once per mentee and session from those who attended, and the job that marks sessions left
//! open past their end plus the grace period as MISSED without anyone acting.

use chrono::{DateTime, Utc};
use mentorstream_grpc::{field_violation, refusal};
use mentorstream_proto::mentorship::v1::{
    Feedback, FeedbackSubmitted, MenteeResponse, Module, Session, SessionCancelled,
    SessionCompleted, SessionMissed, SessionRescheduled, SessionScheduled, SessionState,
    mentorship_event,
};
use mentorstream_tenancy::Tenant;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::{Code, Status};

use crate::api::{membership_event as event, new_id, timestamp, unavailable};
use crate::db::{self, DbError};

/// A session's length in minutes at least and at most.
const MIN_MINUTES: i64 = 5;
const MAX_MINUTES: i64 = 60;
/// Longest feedback comment.
const MAX_COMMENT_CHARS: usize = 2_000;
/// Sessions marked missed per transaction at most.
const MISSED_BATCH: i64 = 100;

pub(crate) fn state_name(state: &str) -> SessionState {
    match state {
        "scheduled" => SessionState::Scheduled,
        "completed" => SessionState::Completed,
        "cancelled" => SessionState::Cancelled,
        "missed" => SessionState::Missed,
        _ => SessionState::Unspecified,
    }
}

/// A session's length when the request gives one: whole minutes, 5 to 60.
pub(crate) fn minutes(
    field: &str,
    length: Option<&prost_types::Duration>,
) -> Result<Option<i64>, Status> {
    let Some(length) = length else {
        return Ok(None);
    };
    if length.nanos != 0 || length.seconds % 60 != 0 {
        return Err(field_violation(field, "must be whole minutes"));
    }
    let minutes = length.seconds / 60;
    if !(MIN_MINUTES..=MAX_MINUTES).contains(&minutes) {
        return Err(field_violation(
            field,
            format!("must be {MIN_MINUTES} to {MAX_MINUTES} minutes, got {minutes}"),
        ));
    }
    Ok(Some(minutes))
}

pub(crate) fn instant(
    field: &str,
    time: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, Status> {
    let time = time.ok_or_else(|| field_violation(field, "is required"))?;
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(u32::MAX))
        .ok_or_else(|| field_violation(field, "is not a valid time"))
}

pub(crate) fn comment(text: &str) -> Result<&str, Status> {
    if text.chars().count() > MAX_COMMENT_CHARS {
        return Err(field_violation(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    Ok(text)
}

pub(crate) fn rating(rating: u32) -> Result<i32, Status> {
    if (1..=5).contains(&rating) {
        Ok(i32::try_from(rating).unwrap_or(0))
    } else {
        Err(field_violation(
            "rating",
            format!("must be 1 to 5, got {rating}"),
        ))
    }
}

/// Refuses `[starts_at, ends_at)` if the mentor has another scheduled or completed session
/// overlapping it. Serialised per mentor, so two overlapping schedules cannot both pass.
pub(crate) async fn no_overlap(
    transaction: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    mentor_id: &str,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    except: &str,
) -> Result<(), Status> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext($1 || '/mentor/' || $2))",
        tenant_id,
        mentor_id
    )
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    let clash = sqlx::query!(
        "SELECT session_id, starts_at FROM sessions \
         WHERE tenant_id = $1 AND mentor_id = $2 AND session_id <> $3 \
           AND state IN ('scheduled', 'completed') AND starts_at < $5 AND ends_at > $4 \
         ORDER BY starts_at LIMIT 1",
        tenant_id,
        mentor_id,
        except,
        starts_at,
        ends_at
    )
    .fetch_optional(&mut **transaction)
    .await
    .map_err(unavailable)?;
    match clash {
        None => Ok(()),
        Some(clash) => Err(refusal(
            Code::FailedPrecondition,
            "MENTOR_BUSY",
            [],
            format!(
                "mentor `{mentor_id}` already has session `{}` at {}",
                clash.session_id, clash.starts_at
            ),
        )),
    }
}

/// A session as stored, with its mentees and attendance.
pub(crate) async fn load(
    executor: &mut sqlx::PgConnection,
    tenant_id: &str,
    session_id: &str,
    lock: bool,
) -> Result<Option<Session>, Status> {
    if lock {
        sqlx::query!(
            "SELECT 1 AS locked FROM sessions WHERE tenant_id = $1 AND session_id = $2 FOR UPDATE",
            tenant_id,
            session_id
        )
        .fetch_optional(&mut *executor)
        .await
        .map_err(unavailable)?;
    }
    let row = sqlx::query!(
        "SELECT session_id, group_id, mentor_id, starts_at, ends_at, topic, module_id, state, \
                notes, cancel_reason, completed_at \
         FROM sessions WHERE tenant_id = $1 AND session_id = $2",
        tenant_id,
        session_id
    )
    .fetch_optional(&mut *executor)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mentees = sqlx::query!(
        "SELECT mentee_id, attended, response, responded_at FROM session_mentees \
         WHERE tenant_id = $1 AND session_id = $2 ORDER BY mentee_id",
        tenant_id,
        session_id
    )
    .fetch_all(&mut *executor)
    .await
    .map_err(unavailable)?;
    Ok(Some(Session {
        session_id: row.session_id,
        group_id: row.group_id,
        mentor_id: row.mentor_id,
        mentee_ids: mentees
            .iter()
            .map(|mentee| mentee.mentee_id.clone())
            .collect(),
        starts_at: Some(timestamp(row.starts_at)),
        duration: Some(prost_types::Duration {
            seconds: (row.ends_at - row.starts_at).num_seconds(),
            nanos: 0,
        }),
        topic: row.topic,
        module_id: row.module_id,
        state: state_name(&row.state).into(),
        attendee_ids: mentees
            .iter()
            .filter(|mentee| mentee.attended)
            .map(|mentee| mentee.mentee_id.clone())
            .collect(),
        notes: row.notes,
        cancel_reason: row.cancel_reason,
        completed_at: row.completed_at.map(timestamp),
        responses: mentees
            .iter()
            .filter_map(|mentee| {
                Some(MenteeResponse {
                    mentee_id: mentee.mentee_id.clone(),
                    response: crate::responses::from_stored(mentee.response.as_deref()?).into(),
                    responded_at: mentee.responded_at.map(timestamp),
                })
            })
            .collect(),
    }))
}

/// What a session event needs of a session.
pub(crate) fn times(session: &Session) -> (DateTime<Utc>, prost_types::Duration) {
    let starts_at = session
        .starts_at
        .as_ref()
        .and_then(|time| DateTime::from_timestamp(time.seconds, 0))
        .unwrap_or_default();
    (starts_at, session.duration.unwrap_or_default())
}

pub(crate) fn scheduled_event(
    tenant: &Tenant,
    at: DateTime<Utc>,
    session: &Session,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        &tenant.tenant_id,
        at,
        mentorship_event::Payload::SessionScheduled(SessionScheduled {
            session_id: session.session_id.clone(),
            group_id: session.group_id.clone(),
            mentor_id: session.mentor_id.clone(),
            mentee_ids: session.mentee_ids.clone(),
            starts_at: session.starts_at,
            duration: session.duration,
            topic: session.topic.clone(),
            module_id: session.module_id.clone(),
        }),
    )
}

pub(crate) fn rescheduled_event(
    tenant: &Tenant,
    at: DateTime<Utc>,
    session: &Session,
    previous_starts_at: Option<prost_types::Timestamp>,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        &tenant.tenant_id,
        at,
        mentorship_event::Payload::SessionRescheduled(SessionRescheduled {
            session_id: session.session_id.clone(),
            mentor_id: session.mentor_id.clone(),
            mentee_ids: session.mentee_ids.clone(),
            previous_starts_at,
            starts_at: session.starts_at,
            duration: session.duration,
        }),
    )
}

pub(crate) fn cancelled_event(
    tenant: &Tenant,
    at: DateTime<Utc>,
    session: &Session,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        &tenant.tenant_id,
        at,
        mentorship_event::Payload::SessionCancelled(SessionCancelled {
            session_id: session.session_id.clone(),
            mentor_id: session.mentor_id.clone(),
            mentee_ids: session.mentee_ids.clone(),
            reason: session.cancel_reason.clone(),
        }),
    )
}

pub(crate) fn completed_event(
    tenant: &Tenant,
    at: DateTime<Utc>,
    session: &Session,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        &tenant.tenant_id,
        at,
        mentorship_event::Payload::SessionCompleted(SessionCompleted {
            session_id: session.session_id.clone(),
            group_id: session.group_id.clone(),
            mentor_id: session.mentor_id.clone(),
            mentee_ids: session.mentee_ids.clone(),
            attendee_ids: session.attendee_ids.clone(),
            starts_at: session.starts_at,
            duration: session.duration,
        }),
    )
}

pub(crate) fn missed_event(
    tenant_id: &str,
    at: DateTime<Utc>,
    session: &Session,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        tenant_id,
        at,
        mentorship_event::Payload::SessionMissed(SessionMissed {
            session_id: session.session_id.clone(),
            group_id: session.group_id.clone(),
            mentor_id: session.mentor_id.clone(),
            mentee_ids: session.mentee_ids.clone(),
            starts_at: session.starts_at,
        }),
    )
}

pub(crate) fn feedback_event(
    tenant: &Tenant,
    at: DateTime<Utc>,
    feedback: &Feedback,
) -> mentorstream_proto::mentorship::v1::MentorshipEvent {
    event(
        &tenant.tenant_id,
        at,
        mentorship_event::Payload::FeedbackSubmitted(FeedbackSubmitted {
            session_id: feedback.session_id.clone(),
            mentor_id: feedback.mentor_id.clone(),
            mentee_id: feedback.mentee_id.clone(),
            rating: feedback.rating,
        }),
    )
}

pub(crate) fn module(
    row_id: String,
    title: String,
    minutes: i32,
    skill_tags: Vec<String>,
) -> Module {
    Module {
        module_id: row_id,
        title,
        minutes: u32::try_from(minutes).unwrap_or(0),
        skill_tags,
    }
}

/// Marks scheduled sessions not completed within `grace` after their end (or after they were
/// recorded, when that was later: imported history) as MISSED and announces each;
/// returns how many. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so replicas share the
/// work and a session is marked once.
pub async fn mark_missed(pool: &PgPool, grace: std::time::Duration) -> Result<usize, DbError> {
    let grace_seconds = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let mut transaction = pool.begin().await?;
    let due = sqlx::query!(
        "SELECT tenant_id, session_id, group_id, mentor_id, starts_at, ends_at FROM sessions \
         WHERE state = 'scheduled' \
           AND GREATEST(ends_at, recorded_at) + make_interval(secs => $1) < now() \
         ORDER BY ends_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        grace_seconds as f64,
        MISSED_BATCH
    )
    .fetch_all(&mut *transaction)
    .await?;
    for session in &due {
        sqlx::query!(
            "UPDATE sessions SET state = 'missed' WHERE tenant_id = $1 AND session_id = $2",
            session.tenant_id,
            session.session_id
        )
        .execute(&mut *transaction)
        .await?;
        let mentee_ids = sqlx::query_scalar!(
            "SELECT mentee_id FROM session_mentees WHERE tenant_id = $1 AND session_id = $2 \
             ORDER BY mentee_id",
            session.tenant_id,
            session.session_id
        )
        .fetch_all(&mut *transaction)
        .await?;
        let missed_at = session.ends_at + chrono::Duration::seconds(grace_seconds);
        let missed = event(
            &session.tenant_id,
            missed_at,
            mentorship_event::Payload::SessionMissed(SessionMissed {
                session_id: session.session_id.clone(),
                group_id: session.group_id.clone(),
                mentor_id: session.mentor_id.clone(),
                mentee_ids,
                starts_at: Some(timestamp(session.starts_at)),
            }),
        );
        db::announce(
            &mut transaction,
            &session.session_id,
            "SessionMissed",
            &missed,
        )
        .await?;
    }
    transaction.commit().await?;
    Ok(due.len())
}

use mentorstream_grpc::authorize;
use mentorstream_proto::mentorship::v1::{
    CancelSessionRequest, CancelSessionResponse, CompleteSessionRequest, CompleteSessionResponse,
    CreateModuleRequest, CreateModuleResponse, GetSessionRequest, GetSessionResponse,
    ListFeedbackRequest, ListFeedbackResponse, ListModulesRequest, ListModulesResponse,
    ListSessionsRequest, ListSessionsResponse, RecordSessionMissedRequest,
    RecordSessionMissedResponse, RescheduleSessionRequest, RescheduleSessionResponse,
    ScheduleSessionRequest, ScheduleSessionResponse, SubmitFeedbackRequest, SubmitFeedbackResponse,
};
use mentorstream_tenancy::Scope;
use tonic::{Request, Response};

use crate::api::{Api, db_status, occurred_at, page_size, request_id, text};

/// What a session change names as it ends.
struct SessionChange<'a> {
    tenant_id: &'a str,
    request_id: Option<&'a str>,
    session_id: &'a str,
    method: &'static str,
    event_type: &'static str,
}

impl Api {
    /// Ends every session change alike: the session as written, its event announced through
    /// the outbox, the answer remembered under the request id, the commit, the relay woken.
    async fn commit_session_change<A: prost::Message>(
        &self,
        mut transaction: Transaction<'_, Postgres>,
        change: SessionChange<'_>,
        event: impl FnOnce(&Session) -> mentorstream_proto::mentorship::v1::MentorshipEvent,
        answer: impl FnOnce(Session) -> A,
    ) -> Result<Response<A>, Status> {
        let session = load(&mut transaction, change.tenant_id, change.session_id, false)
            .await?
            .ok_or_else(|| unavailable("the session just written is gone"))?;
        db::announce(
            &mut transaction,
            change.session_id,
            change.event_type,
            &event(&session),
        )
        .await
        .map_err(db_status)?;
        let answer = answer(session);
        db::finish(
            transaction,
            change.tenant_id,
            change.request_id,
            change.method,
            &answer,
        )
        .await
        .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }
}

impl Api {
    pub(crate) async fn schedule_session(
        &self,
        request: Request<ScheduleSessionRequest>,
    ) -> Result<Response<ScheduleSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let group_id = text("group_id", &request.group_id)?;
        let starts_at = instant("starts_at", request.starts_at.as_ref())?;
        let length = minutes("duration", request.duration.as_ref())?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "ScheduleSession",
            ScheduleSessionResponse
        );
        let group = sqlx::query!(
            "SELECT g.mentor_id, p.default_session_minutes FROM groups g JOIN programs p \
               ON p.tenant_id = g.tenant_id AND p.program_id = g.program_id \
             WHERE g.tenant_id = $1 AND g.group_id = $2",
            tenant_id,
            group_id
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            refusal(
                Code::FailedPrecondition,
                "GROUP_NOT_FOUND",
                [],
                format!("group_id: no group `{group_id}`"),
            )
        })?;
        let length = length.unwrap_or_else(|| i64::from(group.default_session_minutes));
        let ends_at = starts_at + chrono::Duration::minutes(length);
        // Membership when the session starts, so that a platform importing its past may send
        // it in any order; for a session to come, that is the current mentees.
        let current = sqlx::query_scalar!(
            "SELECT DISTINCT mentee_id FROM assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND started_at <= $3 \
               AND (ended_at IS NULL OR ended_at > $3) ORDER BY mentee_id",
            tenant_id,
            group_id,
            starts_at
        )
        .fetch_all(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let mut mentee_ids: Vec<String> = if request.mentee_ids.is_empty() {
            current.clone()
        } else {
            request.mentee_ids.clone()
        };
        mentee_ids.sort();
        mentee_ids.dedup();
        if mentee_ids.is_empty() {
            return Err(refusal(
                Code::FailedPrecondition,
                "NO_MENTEES",
                [],
                format!("group `{group_id}` has no mentees to meet"),
            ));
        }
        if let Some(stranger) = mentee_ids.iter().find(|mentee| !current.contains(mentee)) {
            return Err(field_violation(
                "mentee_ids",
                format!(
                    "`{stranger}` is not a mentee of group `{group_id}` at starts_at ({})",
                    starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        if !request.module_id.is_empty() {
            let known = sqlx::query_scalar!(
                "SELECT EXISTS (SELECT 1 FROM modules WHERE tenant_id = $1 AND module_id = $2)",
                tenant_id,
                request.module_id
            )
            .fetch_one(&mut *transaction)
            .await
            .map_err(unavailable)?
            .unwrap_or(false);
            if !known {
                return Err(refusal(
                    Code::FailedPrecondition,
                    "MODULE_NOT_FOUND",
                    [],
                    format!("module_id: no module `{}`", request.module_id),
                ));
            }
        }
        no_overlap(
            &mut transaction,
            tenant_id,
            &group.mentor_id,
            starts_at,
            ends_at,
            "",
        )
        .await?;
        let session_id = new_id();
        sqlx::query!(
            "INSERT INTO sessions (tenant_id, session_id, group_id, mentor_id, starts_at, \
                                   ends_at, topic, module_id, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled')",
            tenant_id,
            session_id,
            group_id,
            group.mentor_id,
            starts_at,
            ends_at,
            request.topic,
            request.module_id
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        for mentee in &mentee_ids {
            sqlx::query!(
                "INSERT INTO session_mentees (tenant_id, session_id, mentee_id) VALUES ($1, $2, $3)",
                tenant_id,
                session_id,
                mentee
            )
            .execute(&mut *transaction)
            .await
            .map_err(unavailable)?;
        }
        self.commit_session_change(
            transaction,
            SessionChange {
                tenant_id,
                request_id,
                session_id: &session_id,
                method: "ScheduleSession",
                event_type: "SessionScheduled",
            },
            |session| scheduled_event(&tenant, at, session),
            |session| ScheduleSessionResponse {
                session: Some(session),
            },
        )
        .await
    }

    /// A scheduled session of this tenant, locked for the transaction.
    pub(crate) async fn scheduled(
        transaction: &mut Transaction<'_, Postgres>,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Session, Status> {
        let session = load(transaction, tenant_id, session_id, true)
            .await?
            .ok_or_else(|| Status::not_found(format!("no session `{session_id}`")))?;
        if session.state != i32::from(SessionState::Scheduled) {
            return Err(refusal(
                Code::FailedPrecondition,
                "SESSION_NOT_SCHEDULED",
                [],
                format!(
                    "session `{session_id}` is {}, not scheduled",
                    SessionState::try_from(session.state)
                        .map_or("unknown", |state| state.as_str_name())
                        .trim_start_matches("SESSION_STATE_")
                        .to_lowercase()
                ),
            ));
        }
        Ok(session)
    }

    pub(crate) async fn reschedule_session(
        &self,
        request: Request<RescheduleSessionRequest>,
    ) -> Result<Response<RescheduleSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        let starts_at = instant("starts_at", request.starts_at.as_ref())?;
        let length = minutes("duration", request.duration.as_ref())?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "RescheduleSession",
            RescheduleSessionResponse
        );
        let before = Self::scheduled(&mut transaction, tenant_id, session_id).await?;
        let (_, old_length) = times(&before);
        let length = length.unwrap_or(old_length.seconds / 60);
        let ends_at = starts_at + chrono::Duration::minutes(length);
        no_overlap(
            &mut transaction,
            tenant_id,
            &before.mentor_id,
            starts_at,
            ends_at,
            session_id,
        )
        .await?;
        sqlx::query!(
            "UPDATE sessions SET starts_at = $3, ends_at = $4 \
             WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
            starts_at,
            ends_at
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        self.commit_session_change(
            transaction,
            SessionChange {
                tenant_id,
                request_id,
                session_id,
                method: "RescheduleSession",
                event_type: "SessionRescheduled",
            },
            |session| rescheduled_event(&tenant, at, session, before.starts_at),
            |session| RescheduleSessionResponse {
                session: Some(session),
            },
        )
        .await
    }

    pub(crate) async fn cancel_session(
        &self,
        request: Request<CancelSessionRequest>,
    ) -> Result<Response<CancelSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        let reason = text("reason", &request.reason)?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "CancelSession",
            CancelSessionResponse
        );
        Self::scheduled(&mut transaction, tenant_id, session_id).await?;
        sqlx::query!(
            "UPDATE sessions SET state = 'cancelled', cancel_reason = $3 \
             WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
            reason
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        self.commit_session_change(
            transaction,
            SessionChange {
                tenant_id,
                request_id,
                session_id,
                method: "CancelSession",
                event_type: "SessionCancelled",
            },
            |session| cancelled_event(&tenant, at, session),
            |session| CancelSessionResponse {
                session: Some(session),
            },
        )
        .await
    }

    pub(crate) async fn complete_session(
        &self,
        request: Request<CompleteSessionRequest>,
    ) -> Result<Response<CompleteSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        comment(&request.notes).map_err(|_| {
            field_violation(
                "notes",
                format!("must be at most {MAX_COMMENT_CHARS} characters"),
            )
        })?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "CompleteSession",
            CompleteSessionResponse
        );
        let before = Self::scheduled(&mut transaction, tenant_id, session_id).await?;
        let (starts_at, _) = times(&before);
        if at < starts_at {
            return Err(field_violation(
                "occurred_at",
                format!("must not be before the session starts ({starts_at})"),
            ));
        }
        if let Some(stranger) = request
            .attendee_ids
            .iter()
            .find(|attendee| !before.mentee_ids.contains(attendee))
        {
            return Err(field_violation(
                "attendee_ids",
                format!("`{stranger}` is not an expected mentee of session `{session_id}`"),
            ));
        }
        sqlx::query!(
            "UPDATE sessions SET state = 'completed', notes = $3, completed_at = $4 \
             WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
            request.notes,
            at
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        sqlx::query!(
            "UPDATE session_mentees SET attended = mentee_id = ANY($3) \
             WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
            &request.attendee_ids
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        self.commit_session_change(
            transaction,
            SessionChange {
                tenant_id,
                request_id,
                session_id,
                method: "CompleteSession",
                event_type: "SessionCompleted",
            },
            |session| completed_event(&tenant, at, session),
            |session| CompleteSessionResponse {
                session: Some(session),
            },
        )
        .await
    }

    pub(crate) async fn record_session_missed(
        &self,
        request: Request<RecordSessionMissedRequest>,
    ) -> Result<Response<RecordSessionMissedResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        let now = Utc::now();
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), now)?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "RecordSessionMissed",
            RecordSessionMissedResponse
        );
        let before = Self::scheduled(&mut transaction, tenant_id, session_id).await?;
        let (starts_at, length) = times(&before);
        let ends_at = starts_at + chrono::Duration::seconds(length.seconds);
        if ends_at > now {
            return Err(refusal(
                Code::FailedPrecondition,
                "SESSION_NOT_OVER",
                [],
                format!("session `{session_id}` has not ended yet (it ends at {ends_at})"),
            ));
        }
        if at < ends_at {
            return Err(field_violation(
                "occurred_at",
                format!("must not be before the session ends ({ends_at})"),
            ));
        }
        sqlx::query!(
            "UPDATE sessions SET state = 'missed' WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        self.commit_session_change(
            transaction,
            SessionChange {
                tenant_id,
                request_id,
                session_id,
                method: "RecordSessionMissed",
                event_type: "SessionMissed",
            },
            |session| missed_event(tenant_id, at, session),
            |session| RecordSessionMissedResponse {
                session: Some(session),
            },
        )
        .await
    }

    pub(crate) async fn get_session_by_id(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let session_id = request.into_inner().session_id;
        let session_id = text("session_id", &session_id)?;
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        let session = load(&mut connection, &tenant.tenant_id, session_id, false)
            .await?
            .ok_or_else(|| Status::not_found(format!("no session `{session_id}`")))?;
        Ok(Response::new(GetSessionResponse {
            session: Some(session),
        }))
    }

    pub(crate) async fn list_sessions_page(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let state = match SessionState::try_from(request.state) {
            Ok(SessionState::Unspecified) | Err(_) => String::new(),
            Ok(state) => state
                .as_str_name()
                .trim_start_matches("SESSION_STATE_")
                .to_lowercase(),
        };
        let bound = |time: Option<&prost_types::Timestamp>| {
            time.and_then(|time| DateTime::<Utc>::from_timestamp(time.seconds, 0))
        };
        let after = bound(request.starts_after.as_ref());
        let before = bound(request.starts_before.as_ref());
        // Pages follow (starts_at, session id); the token is the last session's.
        let (token_at, token_id): (Option<DateTime<Utc>>, String) = if request.page_token.is_empty()
        {
            (None, String::new())
        } else {
            request
                .page_token
                .split_once('/')
                .and_then(|(micros, id)| {
                    Some((
                        Some(DateTime::from_timestamp_micros(micros.parse().ok()?)?),
                        id.to_owned(),
                    ))
                })
                .ok_or_else(|| field_violation("page_token", "is not a token this server issued"))?
        };
        let ids = sqlx::query!(
            "SELECT s.session_id, s.starts_at FROM sessions s \
             WHERE s.tenant_id = $1 AND ($2 = '' OR s.group_id = $2) \
               AND ($3 = '' OR s.mentor_id = $3) AND ($4 = '' OR s.state = $4) \
               AND ($5 = '' OR EXISTS (SELECT 1 FROM session_mentees m \
                                       WHERE m.tenant_id = s.tenant_id \
                                         AND m.session_id = s.session_id AND m.mentee_id = $5)) \
               AND ($6::timestamptz IS NULL OR s.starts_at >= $6) \
               AND ($7::timestamptz IS NULL OR s.starts_at < $7) \
               AND ($8::timestamptz IS NULL OR (s.starts_at, s.session_id) > ($8, $9)) \
             ORDER BY s.starts_at, s.session_id LIMIT $10",
            tenant.tenant_id,
            request.group_id,
            request.mentor_id,
            state,
            request.mentee_id,
            after,
            before,
            token_at,
            token_id,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = ids.len() > page_size;
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        let mut sessions = Vec::with_capacity(page_size);
        for row in ids.iter().take(page_size) {
            sessions
                .extend(load(&mut connection, &tenant.tenant_id, &row.session_id, false).await?);
        }
        let next_page_token = match ids.get(page_size.saturating_sub(1)) {
            Some(last) if more => {
                format!("{}/{}", last.starts_at.timestamp_micros(), last.session_id)
            }
            _ => String::new(),
        };
        Ok(Response::new(ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    pub(crate) async fn submit_session_feedback(
        &self,
        request: Request<SubmitFeedbackRequest>,
    ) -> Result<Response<SubmitFeedbackResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let session_id = text("session_id", &request.session_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let rating = rating(request.rating)?;
        let comment = comment(&request.comment)?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "SubmitFeedback",
            SubmitFeedbackResponse
        );
        let session = load(&mut transaction, tenant_id, session_id, true)
            .await?
            .ok_or_else(|| Status::not_found(format!("no session `{session_id}`")))?;
        if session.state != i32::from(SessionState::Completed) {
            return Err(refusal(
                Code::FailedPrecondition,
                "SESSION_NOT_COMPLETED",
                [],
                format!("session `{session_id}` is not completed; feedback follows a session"),
            ));
        }
        if !session
            .attendee_ids
            .iter()
            .any(|attendee| attendee == mentee_id)
        {
            return Err(refusal(
                Code::FailedPrecondition,
                "NOT_AN_ATTENDEE",
                [],
                format!("mentee `{mentee_id}` did not attend session `{session_id}`"),
            ));
        }
        let inserted = sqlx::query!(
            "INSERT INTO feedback (tenant_id, session_id, mentee_id, mentor_id, rating, comment, \
                                   submitted_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT DO NOTHING",
            tenant_id,
            session_id,
            mentee_id,
            session.mentor_id,
            rating,
            comment,
            at
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        if inserted.rows_affected() == 0 {
            return Err(refusal(
                Code::AlreadyExists,
                "FEEDBACK_EXISTS",
                [],
                format!("mentee `{mentee_id}` already gave feedback on session `{session_id}`"),
            ));
        }
        let feedback = Feedback {
            session_id: session_id.to_owned(),
            mentee_id: mentee_id.to_owned(),
            mentor_id: session.mentor_id.clone(),
            rating: request.rating,
            comment: comment.to_owned(),
            submitted_at: Some(timestamp(at)),
        };
        db::announce(
            &mut transaction,
            session_id,
            "FeedbackSubmitted",
            &feedback_event(&tenant, at, &feedback),
        )
        .await
        .map_err(db_status)?;
        let answer = SubmitFeedbackResponse {
            feedback: Some(feedback),
        };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "SubmitFeedback",
            &answer,
        )
        .await
        .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    pub(crate) async fn list_session_feedback(
        &self,
        request: Request<ListFeedbackRequest>,
    ) -> Result<Response<ListFeedbackResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let (token_session, token_mentee) = request
            .page_token
            .split_once('/')
            .map(|(session, mentee)| (session.to_owned(), mentee.to_owned()))
            .unwrap_or_default();
        let rows = sqlx::query!(
            "SELECT session_id, mentee_id, mentor_id, rating, comment, submitted_at FROM feedback \
             WHERE tenant_id = $1 AND ($2 = '' OR session_id = $2) \
               AND ($3 = '' OR mentor_id = $3) AND ($4 = '' OR mentee_id = $4) \
               AND (session_id, mentee_id) > ($5, $6) \
             ORDER BY session_id, mentee_id LIMIT $7",
            tenant.tenant_id,
            request.session_id,
            request.mentor_id,
            request.mentee_id,
            token_session,
            token_mentee,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = rows.len() > page_size;
        let feedback: Vec<Feedback> = rows
            .into_iter()
            .take(page_size)
            .map(|row| Feedback {
                session_id: row.session_id,
                mentee_id: row.mentee_id,
                mentor_id: row.mentor_id,
                rating: u32::try_from(row.rating).unwrap_or(0),
                comment: row.comment,
                submitted_at: Some(timestamp(row.submitted_at)),
            })
            .collect();
        Ok(Response::new(ListFeedbackResponse {
            next_page_token: match feedback.last() {
                Some(last) if more => format!("{}/{}", last.session_id, last.mentee_id),
                _ => String::new(),
            },
            feedback,
        }))
    }

    pub(crate) async fn create_catalogue_module(
        &self,
        request: Request<CreateModuleRequest>,
    ) -> Result<Response<CreateModuleResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let module_id = text("module_id", &request.module_id)?;
        let title = text("title", &request.title)?;
        if !(1..=1440).contains(&request.minutes) {
            return Err(field_violation(
                "minutes",
                format!("must be 1 to 1440, got {}", request.minutes),
            ));
        }
        for tag in &request.skill_tags {
            text("skill_tags", tag)?;
        }
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "CreateModule",
            CreateModuleResponse
        );
        let inserted = sqlx::query!(
            "INSERT INTO modules (tenant_id, module_id, title, minutes, skill_tags) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            tenant_id,
            module_id,
            title,
            i32::try_from(request.minutes).unwrap_or(i32::MAX),
            &request.skill_tags
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        if inserted.rows_affected() == 0 {
            return Err(Status::already_exists(format!(
                "module `{module_id}` exists"
            )));
        }
        let answer = CreateModuleResponse {
            module: Some(module(
                module_id.to_owned(),
                title.to_owned(),
                i32::try_from(request.minutes).unwrap_or(i32::MAX),
                request.skill_tags.clone(),
            )),
        };
        db::finish(transaction, tenant_id, request_id, "CreateModule", &answer)
            .await
            .map_err(db_status)?;
        Ok(Response::new(answer))
    }

    pub(crate) async fn list_catalogue_modules(
        &self,
        request: Request<ListModulesRequest>,
    ) -> Result<Response<ListModulesResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let rows = sqlx::query!(
            "SELECT module_id, title, minutes, skill_tags FROM modules \
             WHERE tenant_id = $1 AND module_id > $2 AND ($3 = '' OR $3 = ANY(skill_tags)) \
             ORDER BY module_id LIMIT $4",
            tenant.tenant_id,
            request.page_token,
            request.skill_tag,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = rows.len() > page_size;
        let modules: Vec<Module> = rows
            .into_iter()
            .take(page_size)
            .map(|row| module(row.module_id, row.title, row.minutes, row.skill_tags))
            .collect();
        Ok(Response::new(ListModulesResponse {
            next_page_token: match modules.last() {
                Some(last) if more => last.module_id.clone(),
                _ => String::new(),
            },
            modules,
        }))
    }
}
