//! MentorshipService over gRPC. Built so far: programs, groups, assignments and partner lookups. Every mutation takes an
//! optional `request_id` (a retry gets the first answer and writes nothing), validates before
//! writing, and writes its events to the outbox in its own transaction. The other RPCs answer
//! UNIMPLEMENTED until their part lands.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mentorstream_grpc::{authorize, caller_tenant, field_violation, refusal};
use mentorstream_proto::mentorship::v1::mentorship_service_server::MentorshipService;
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, AssignMenteeResponse, Assignment, CancelSessionRequest,
    CancelSessionResponse, CompleteSessionRequest, CompleteSessionResponse, CreateGroupRequest,
    CreateGroupResponse, CreateModuleRequest, CreateModuleResponse, CreatePlanRequest,
    CreatePlanResponse, CreateProgramRequest, CreateProgramResponse, DownlineEntry,
    GetGroupRequest, GetGroupResponse, GetPartnerRequest, GetPartnerResponse, GetPlanRequest,
    GetPlanResponse, GetProgramRequest, GetProgramResponse, GetSessionRequest, GetSessionResponse,
    Group, GroupCreated, ListAssignmentsRequest, ListAssignmentsResponse, ListDownlineRequest,
    ListDownlineResponse, ListFeedbackRequest, ListFeedbackResponse, ListGroupsRequest,
    ListGroupsResponse, ListModulesRequest, ListModulesResponse, ListProgramsRequest,
    ListProgramsResponse, ListSessionsRequest, ListSessionsResponse, ListUplineRequest,
    ListUplineResponse, MenteeAssigned, MenteeUnassigned, MentorshipEvent, Partner, Program,
    ProgramKind, RecordSessionMissedRequest, RecordSessionMissedResponse, RescheduleSessionRequest,
    RescheduleSessionResponse, RespondToSessionRequest, RespondToSessionResponse,
    ScheduleSessionRequest, ScheduleSessionResponse, SetGoalRequest, SetGoalResponse,
    SubmitFeedbackRequest, SubmitFeedbackResponse, TransferMenteeRequest, TransferMenteeResponse,
    UnassignMenteeRequest, UnassignMenteeResponse, mentorship_event,
};
use mentorstream_tenancy::{Principal, Scope, Tenant, Tenants};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tonic::{Code, Request, Response, Status};

use crate::db::{self, Begun, DbError};

/// Longest id, name or request id.
const MAX_CHARS: usize = 128;
/// How far ahead of the server's clock `occurred_at` may be.
const MAX_FUTURE: chrono::Duration = chrono::Duration::minutes(5);
const DEFAULT_CAPACITY: u32 = 7;
const MAX_CAPACITY: u32 = 100;
const DEFAULT_SESSION_MINUTES: i64 = 30;
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 500;

#[derive(Debug, Clone)]
pub struct Api {
    pub pool: PgPool,
    pub tenants: Tenants,
    /// Told after every commit that wrote to the outbox.
    pub relay: Arc<Notify>,
    /// KpiService, for live goal progress (connected on first use).
    pub kpi: mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient<
        tonic::transport::Channel,
    >,
    /// Whether a partner the read model does not know may yet arrive.
    pub readiness: crate::partners::Readiness,
}

pub(crate) fn unavailable(error: impl std::fmt::Display) -> Status {
    tracing::warn!(%error, "answering UNAVAILABLE");
    mentorstream_grpc::retry_later(
        "the mentorship database cannot be reached right now; retry",
        "DATABASE_UNAVAILABLE",
        mentorstream_grpc::RETRY_AFTER,
        [],
    )
}

pub(crate) fn db_status(error: DbError) -> Status {
    match error {
        DbError::RequestReused { .. } => field_violation("request_id", error.to_string()),
        other => unavailable(other),
    }
}

/// A required id or name: 1 to 128 characters, no control characters.
pub(crate) fn text<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(field_violation(field, "is required"));
    }
    if trimmed.chars().count() > MAX_CHARS || trimmed.chars().any(char::is_control) {
        return Err(field_violation(
            field,
            format!("must be at most {MAX_CHARS} characters without control characters"),
        ));
    }
    Ok(trimmed)
}

pub(crate) fn request_id(value: &str) -> Result<Option<&str>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        text("request_id", value).map(Some)
    }
}

/// When a recorded thing happened: now by default; never in the future, never older than the
/// tenant's allowed lateness (docs/spec.md §7).
pub(crate) fn occurred_at(
    tenant: &Tenant,
    value: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Status> {
    let Some(value) = value else {
        return Ok(now);
    };
    let at = DateTime::from_timestamp(
        value.seconds,
        u32::try_from(value.nanos).unwrap_or(u32::MAX),
    )
    .ok_or_else(|| field_violation("occurred_at", "is not a valid time"))?;
    if at > now + MAX_FUTURE {
        return Err(field_violation("occurred_at", "must not be in the future"));
    }
    let lateness =
        chrono::Duration::from_std(tenant.allowed_lateness).unwrap_or(chrono::Duration::MAX);
    if at < now - lateness {
        return Err(field_violation(
            "occurred_at",
            format!(
                "must not be older than the tenant's allowed lateness of {} days",
                lateness.num_days()
            ),
        ));
    }
    Ok(at)
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn page_size(requested: u32) -> Result<usize, Status> {
    match usize::try_from(requested).unwrap_or(usize::MAX) {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size <= MAX_PAGE_SIZE => Ok(size),
        size => Err(field_violation(
            "page_size",
            format!("must be at most {MAX_PAGE_SIZE}, got {size}"),
        )),
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Api {
    pub(crate) async fn tenant(&self, principal: &Principal) -> Result<Tenant, Status> {
        caller_tenant(&self.tenants, principal).await
    }

    async fn program(&self, tenant_id: &str, program_id: &str) -> Result<Option<Program>, Status> {
        let row = sqlx::query!(
            "SELECT program_id, name, kind, sessions_per_week, default_session_minutes, created_at \
             FROM programs WHERE tenant_id = $1 AND program_id = $2",
            tenant_id,
            program_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row.map(|row| Program {
            program_id: row.program_id,
            name: row.name,
            kind: if row.kind == "pilot" {
                ProgramKind::Pilot
            } else {
                ProgramKind::Standard
            }
            .into(),
            sessions_per_week: u32::try_from(row.sessions_per_week).unwrap_or(0),
            default_session_length: Some(prost_types::Duration {
                seconds: i64::from(row.default_session_minutes) * 60,
                nanos: 0,
            }),
            created_at: Some(timestamp(row.created_at)),
        }))
    }

    async fn group(&self, tenant_id: &str, group_id: &str) -> Result<Option<Group>, Status> {
        let Some(row) = sqlx::query!(
            "SELECT group_id, program_id, mentor_id, name, capacity, created_at FROM groups \
             WHERE tenant_id = $1 AND group_id = $2",
            tenant_id,
            group_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let mentee_ids = sqlx::query_scalar!(
            "SELECT mentee_id FROM assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND ended_at IS NULL ORDER BY mentee_id",
            tenant_id,
            group_id
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(Some(Group {
            group_id: row.group_id,
            program_id: row.program_id,
            mentor_id: row.mentor_id,
            name: row.name,
            capacity: u32::try_from(row.capacity).unwrap_or(0),
            mentee_ids,
            created_at: Some(timestamp(row.created_at)),
        }))
    }
}

/// A group as an assignment needs it, locked for the rest of the transaction so that two
/// assignments cannot both take its last place.
struct LockedGroup {
    mentor_id: String,
    capacity: i64,
    active: i64,
}

async fn lock_group(
    transaction: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    group_id: &str,
) -> Result<LockedGroup, Status> {
    let group = sqlx::query!(
        "SELECT mentor_id, capacity FROM groups WHERE tenant_id = $1 AND group_id = $2 \
         FOR UPDATE",
        tenant_id,
        group_id
    )
    .fetch_optional(&mut **transaction)
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
    let active = sqlx::query_scalar!(
        "SELECT count(*) FROM assignments \
         WHERE tenant_id = $1 AND group_id = $2 AND ended_at IS NULL",
        tenant_id,
        group_id
    )
    .fetch_one(&mut **transaction)
    .await
    .map_err(unavailable)?
    .unwrap_or(0);
    Ok(LockedGroup {
        mentor_id: group.mentor_id,
        capacity: i64::from(group.capacity),
        active,
    })
}

/// The mentee's active assignment, locked: (id, group, started).
async fn active_assignment(
    transaction: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    mentee_id: &str,
) -> Result<Option<(i64, String, DateTime<Utc>)>, Status> {
    Ok(sqlx::query!(
        "SELECT assignment_id, group_id, started_at FROM assignments \
         WHERE tenant_id = $1 AND mentee_id = $2 AND ended_at IS NULL FOR UPDATE",
        tenant_id,
        mentee_id
    )
    .fetch_optional(&mut **transaction)
    .await
    .map_err(unavailable)?
    .map(|row| (row.assignment_id, row.group_id, row.started_at)))
}

/// Starts an assignment of `mentee_id` to a locked group: the group must have room and not be
/// the mentee's own. Returns the assignment and the MenteeAssigned event.
async fn start_assignment(
    transaction: &mut Transaction<'_, Postgres>,
    tenant: &Tenant,
    group_id: &str,
    group: &LockedGroup,
    mentee_id: &str,
    at: DateTime<Utc>,
) -> Result<(Assignment, MentorshipEvent), Status> {
    if group.mentor_id == mentee_id {
        return Err(refusal(
            Code::FailedPrecondition,
            "MENTEE_IS_MENTOR",
            [],
            format!("mentee_id: `{mentee_id}` is the mentor of group `{group_id}`"),
        ));
    }
    if group.active >= group.capacity {
        return Err(refusal(
            Code::FailedPrecondition,
            "GROUP_FULL",
            [],
            format!(
                "group `{group_id}` is full ({} of {} mentees)",
                group.active, group.capacity
            ),
        ));
    }
    let tenant_id = tenant.tenant_id.as_str();
    crate::impact::rollout::check_eligible(
        transaction,
        tenant_id,
        tenant.time_zone,
        group_id,
        mentee_id,
    )
    .await?;
    sqlx::query!(
        "INSERT INTO assignments (tenant_id, group_id, mentee_id, started_at) \
         VALUES ($1, $2, $3, $4)",
        tenant_id,
        group_id,
        mentee_id,
        at
    )
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    let assignment = Assignment {
        group_id: group_id.to_owned(),
        mentor_id: group.mentor_id.clone(),
        mentee_id: mentee_id.to_owned(),
        started_at: Some(timestamp(at)),
        ended_at: None,
    };
    let event = membership_event(
        tenant_id,
        at,
        mentorship_event::Payload::MenteeAssigned(MenteeAssigned {
            group_id: group_id.to_owned(),
            mentor_id: group.mentor_id.clone(),
            mentee_id: mentee_id.to_owned(),
        }),
    );
    Ok((assignment, event))
}

/// Ends the mentee's active assignment `(id, group, started)` at `at`.
async fn end_assignment(
    transaction: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    active: (i64, String, DateTime<Utc>),
    mentor_id: &str,
    mentee_id: &str,
    at: DateTime<Utc>,
) -> Result<(Assignment, MentorshipEvent), Status> {
    let (assignment_id, group_id, started_at) = active;
    if at < started_at {
        return Err(field_violation(
            "occurred_at",
            format!("must not be before the assignment started ({started_at})"),
        ));
    }
    sqlx::query!(
        "UPDATE assignments SET ended_at = $2 WHERE assignment_id = $1",
        assignment_id,
        at
    )
    .execute(&mut **transaction)
    .await
    .map_err(unavailable)?;
    let assignment = Assignment {
        group_id: group_id.clone(),
        mentor_id: mentor_id.to_owned(),
        mentee_id: mentee_id.to_owned(),
        started_at: Some(timestamp(started_at)),
        ended_at: Some(timestamp(at)),
    };
    let event = membership_event(
        tenant_id,
        at,
        mentorship_event::Payload::MenteeUnassigned(MenteeUnassigned {
            group_id,
            mentor_id: mentor_id.to_owned(),
            mentee_id: mentee_id.to_owned(),
        }),
    );
    Ok((assignment, event))
}

pub(crate) fn membership_event(
    tenant_id: &str,
    at: DateTime<Utc>,
    payload: mentorship_event::Payload,
) -> MentorshipEvent {
    MentorshipEvent {
        tenant_id: tenant_id.to_owned(),
        event_id: new_id(),
        occurred_at: Some(timestamp(at)),
        recorded_at: Some(timestamp(Utc::now())),
        payload: Some(payload),
    }
}

/// Genealogy walks stop here whatever the data says: deeper than any real tree, so reaching it
/// means the sponsor data has a cycle.
const MAX_DEPTH: i32 = 1_000;

/// A partner row as the API shows it.
#[allow(clippy::too_many_arguments)]
fn partner(
    partner_id: String,
    sponsor_id: String,
    display_name: String,
    enrolled_at: DateTime<Utc>,
    rank_level: i32,
    rank_name: String,
    locale: String,
    time_zone: String,
    mentor_id: Option<String>,
) -> Partner {
    Partner {
        partner_id,
        sponsor_id,
        display_name,
        enrolled_at: Some(timestamp(enrolled_at)),
        rank_level: u32::try_from(rank_level).unwrap_or(0),
        rank_name,
        locale,
        time_zone,
        mentor_id: mentor_id.unwrap_or_default(),
    }
}

fn max_depth(requested: u32) -> i32 {
    match i32::try_from(requested) {
        Ok(0) | Err(_) => MAX_DEPTH,
        Ok(depth) => depth.min(MAX_DEPTH),
    }
}

#[tonic::async_trait]
impl MentorshipService for Api {
    async fn schedule_session(
        &self,
        request: Request<ScheduleSessionRequest>,
    ) -> Result<Response<ScheduleSessionResponse>, Status> {
        Api::schedule_session(self, request).await
    }

    async fn reschedule_session(
        &self,
        request: Request<RescheduleSessionRequest>,
    ) -> Result<Response<RescheduleSessionResponse>, Status> {
        Api::reschedule_session(self, request).await
    }

    async fn cancel_session(
        &self,
        request: Request<CancelSessionRequest>,
    ) -> Result<Response<CancelSessionResponse>, Status> {
        Api::cancel_session(self, request).await
    }

    async fn complete_session(
        &self,
        request: Request<CompleteSessionRequest>,
    ) -> Result<Response<CompleteSessionResponse>, Status> {
        Api::complete_session(self, request).await
    }

    async fn record_session_missed(
        &self,
        request: Request<RecordSessionMissedRequest>,
    ) -> Result<Response<RecordSessionMissedResponse>, Status> {
        Api::record_session_missed(self, request).await
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<GetSessionResponse>, Status> {
        self.get_session_by_id(request).await
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        self.list_sessions_page(request).await
    }

    async fn respond_to_session(
        &self,
        request: Request<RespondToSessionRequest>,
    ) -> Result<Response<RespondToSessionResponse>, Status> {
        self.respond_to_session_invitation(request).await
    }

    async fn submit_feedback(
        &self,
        request: Request<SubmitFeedbackRequest>,
    ) -> Result<Response<SubmitFeedbackResponse>, Status> {
        self.submit_session_feedback(request).await
    }

    async fn list_feedback(
        &self,
        request: Request<ListFeedbackRequest>,
    ) -> Result<Response<ListFeedbackResponse>, Status> {
        self.list_session_feedback(request).await
    }

    async fn create_plan(
        &self,
        request: Request<CreatePlanRequest>,
    ) -> Result<Response<CreatePlanResponse>, Status> {
        self.create_development_plan(request).await
    }

    async fn get_plan(
        &self,
        request: Request<GetPlanRequest>,
    ) -> Result<Response<GetPlanResponse>, Status> {
        self.get_development_plan(request).await
    }

    async fn set_goal(
        &self,
        request: Request<SetGoalRequest>,
    ) -> Result<Response<SetGoalResponse>, Status> {
        self.set_plan_goal(request).await
    }

    async fn create_module(
        &self,
        request: Request<CreateModuleRequest>,
    ) -> Result<Response<CreateModuleResponse>, Status> {
        self.create_catalogue_module(request).await
    }

    async fn list_modules(
        &self,
        request: Request<ListModulesRequest>,
    ) -> Result<Response<ListModulesResponse>, Status> {
        self.list_catalogue_modules(request).await
    }

    async fn get_partner(
        &self,
        request: Request<GetPartnerRequest>,
    ) -> Result<Response<GetPartnerResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let partner_id = request.into_inner().partner_id;
        let partner_id = text("partner_id", &partner_id)?;
        let row = sqlx::query!(
            "SELECT p.partner_id, p.sponsor_id, p.display_name, p.enrolled_at, p.rank_level, \
                    p.rank_name, p.locale, p.time_zone, \
                    (SELECT g.mentor_id FROM assignments a JOIN groups g \
                       ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
                     WHERE a.tenant_id = p.tenant_id AND a.mentee_id = p.partner_id \
                       AND a.ended_at IS NULL) AS mentor_id \
             FROM partners p \
             WHERE p.tenant_id = $1 AND p.partner_id = $2 AND p.enrolment_rank <> '~'",
            tenant.tenant_id,
            partner_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Status::not_found(format!("no enrolled partner `{partner_id}`")))?;
        Ok(Response::new(GetPartnerResponse {
            partner: Some(partner(
                row.partner_id,
                row.sponsor_id,
                row.display_name,
                row.enrolled_at,
                row.rank_level,
                row.rank_name,
                row.locale,
                row.time_zone,
                row.mentor_id,
            )),
        }))
    }

    async fn list_upline(
        &self,
        request: Request<ListUplineRequest>,
    ) -> Result<Response<ListUplineResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let partner_id = text("partner_id", &request.partner_id)?;
        let rows = sqlx::query!(
            "WITH RECURSIVE up (partner_id, sponsor_id, depth) AS ( \
                 SELECT partner_id, sponsor_id, 0 FROM partners \
                 WHERE tenant_id = $1 AND partner_id = $2 \
               UNION ALL \
                 SELECT s.partner_id, s.sponsor_id, up.depth + 1 \
                 FROM partners s JOIN up ON s.tenant_id = $1 AND s.partner_id = up.sponsor_id \
                 WHERE up.sponsor_id <> '' AND up.depth < $3) \
             SELECT p.partner_id, p.sponsor_id, p.display_name, p.enrolled_at, p.rank_level, \
                    p.rank_name, p.locale, p.time_zone, up.depth, \
                    (SELECT g.mentor_id FROM assignments a JOIN groups g \
                       ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
                     WHERE a.tenant_id = p.tenant_id AND a.mentee_id = p.partner_id \
                       AND a.ended_at IS NULL) AS mentor_id \
             FROM up JOIN partners p ON p.tenant_id = $1 AND p.partner_id = up.partner_id \
             ORDER BY up.depth",
            tenant.tenant_id,
            partner_id,
            max_depth(request.max_depth)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        if rows.is_empty() {
            return Err(Status::not_found(format!(
                "no enrolled partner `{partner_id}`"
            )));
        }
        Ok(Response::new(ListUplineResponse {
            partners: rows
                .into_iter()
                .filter(|row| row.depth.unwrap_or(0) > 0)
                .map(|row| {
                    partner(
                        row.partner_id,
                        row.sponsor_id,
                        row.display_name,
                        row.enrolled_at,
                        row.rank_level,
                        row.rank_name,
                        row.locale,
                        row.time_zone,
                        row.mentor_id,
                    )
                })
                .collect(),
        }))
    }

    async fn list_downline(
        &self,
        request: Request<ListDownlineRequest>,
    ) -> Result<Response<ListDownlineResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let partner_id = text("partner_id", &request.partner_id)?;
        let page_size = page_size(request.page_size)?;
        // Pages follow (depth, partner id); the token is the last entry's.
        let (after_depth, after_id) = if request.page_token.is_empty() {
            (0, String::new())
        } else {
            request
                .page_token
                .split_once('/')
                .and_then(|(depth, id)| Some((depth.parse::<i32>().ok()?, id.to_owned())))
                .ok_or_else(|| field_violation("page_token", "is not a token this server issued"))?
        };
        let rows = sqlx::query!(
            "WITH RECURSIVE down (partner_id, depth) AS ( \
                 SELECT partner_id, 1 FROM partners WHERE tenant_id = $1 AND sponsor_id = $2 \
               UNION ALL \
                 SELECT c.partner_id, down.depth + 1 \
                 FROM partners c JOIN down ON c.tenant_id = $1 AND c.sponsor_id = down.partner_id \
                 WHERE down.depth < $3) \
             SELECT p.partner_id, p.sponsor_id, p.display_name, p.enrolled_at, p.rank_level, \
                    p.rank_name, p.locale, p.time_zone, down.depth, \
                    (SELECT g.mentor_id FROM assignments a JOIN groups g \
                       ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
                     WHERE a.tenant_id = p.tenant_id AND a.mentee_id = p.partner_id \
                       AND a.ended_at IS NULL) AS mentor_id \
             FROM down JOIN partners p ON p.tenant_id = $1 AND p.partner_id = down.partner_id \
             WHERE (down.depth, p.partner_id) > ($4, $5) \
             ORDER BY down.depth, p.partner_id LIMIT $6",
            tenant.tenant_id,
            partner_id,
            max_depth(request.max_depth),
            after_depth,
            after_id,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        // No downline is an answer only for a partner that exists, as with ListUpline.
        if rows.is_empty()
            && request.page_token.is_empty()
            && !crate::partners::is_enrolled(&self.pool, &tenant.tenant_id, partner_id).await?
        {
            return Err(Status::not_found(format!(
                "no enrolled partner `{partner_id}`"
            )));
        }
        let more = rows.len() > page_size;
        let entries: Vec<DownlineEntry> = rows
            .into_iter()
            .take(page_size)
            .map(|row| DownlineEntry {
                depth: u32::try_from(row.depth.unwrap_or(0)).unwrap_or(0),
                partner: Some(partner(
                    row.partner_id,
                    row.sponsor_id,
                    row.display_name,
                    row.enrolled_at,
                    row.rank_level,
                    row.rank_name,
                    row.locale,
                    row.time_zone,
                    row.mentor_id,
                )),
            })
            .collect();
        Ok(Response::new(ListDownlineResponse {
            next_page_token: match entries.last() {
                Some(last) if more => format!(
                    "{}/{}",
                    last.depth,
                    last.partner
                        .as_ref()
                        .map_or("", |partner| partner.partner_id.as_str())
                ),
                _ => String::new(),
            },
            entries,
        }))
    }

    async fn assign_mentee(
        &self,
        request: Request<AssignMenteeRequest>,
    ) -> Result<Response<AssignMenteeResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let group_id = text("group_id", &request.group_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = &tenant.tenant_id;
        self.readiness
            .enrolled(&self.pool, tenant_id, "mentee_id", mentee_id)
            .await?;
        let mut transaction = match db::begin::<AssignMenteeResponse>(
            &self.pool,
            tenant_id,
            request_id,
            "AssignMentee",
        )
        .await
        .map_err(db_status)?
        {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        let group = lock_group(&mut transaction, tenant_id, group_id).await?;
        if let Some((_, current, _)) =
            active_assignment(&mut transaction, tenant_id, mentee_id).await?
        {
            return Err(refusal(
                Code::FailedPrecondition,
                "ALREADY_HAS_MENTOR",
                [],
                format!(
                    "mentee `{mentee_id}` already has a mentor (group `{current}`); transfer instead"
                ),
            ));
        }
        let (assignment, event) =
            start_assignment(&mut transaction, &tenant, group_id, &group, mentee_id, at).await?;
        db::announce(&mut transaction, mentee_id, "MenteeAssigned", &event)
            .await
            .map_err(db_status)?;
        let answer = AssignMenteeResponse {
            assignment: Some(assignment),
        };
        db::finish(transaction, tenant_id, request_id, "AssignMentee", &answer)
            .await
            .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    async fn unassign_mentee(
        &self,
        request: Request<UnassignMenteeRequest>,
    ) -> Result<Response<UnassignMenteeResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let group_id = text("group_id", &request.group_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = &tenant.tenant_id;
        let mut transaction = match db::begin::<UnassignMenteeResponse>(
            &self.pool,
            tenant_id,
            request_id,
            "UnassignMentee",
        )
        .await
        .map_err(db_status)?
        {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        let group = lock_group(&mut transaction, tenant_id, group_id).await?;
        let active = active_assignment(&mut transaction, tenant_id, mentee_id)
            .await?
            .filter(|(_, current, _)| current == group_id)
            .ok_or_else(|| {
                refusal(
                    Code::FailedPrecondition,
                    "NOT_A_MENTEE",
                    [],
                    format!("mentee `{mentee_id}` is not a current mentee of group `{group_id}`"),
                )
            })?;
        let (assignment, event) = end_assignment(
            &mut transaction,
            tenant_id,
            active,
            &group.mentor_id,
            mentee_id,
            at,
        )
        .await?;
        db::announce(&mut transaction, mentee_id, "MenteeUnassigned", &event)
            .await
            .map_err(db_status)?;
        let answer = UnassignMenteeResponse {
            assignment: Some(assignment),
        };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "UnassignMentee",
            &answer,
        )
        .await
        .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    async fn transfer_mentee(
        &self,
        request: Request<TransferMenteeRequest>,
    ) -> Result<Response<TransferMenteeResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let from = text("from_group_id", &request.from_group_id)?;
        let to = text("to_group_id", &request.to_group_id)?;
        if from == to {
            return Err(field_violation(
                "to_group_id",
                "must differ from from_group_id",
            ));
        }
        let at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        let tenant_id = &tenant.tenant_id;
        let mut transaction = match db::begin::<TransferMenteeResponse>(
            &self.pool,
            tenant_id,
            request_id,
            "TransferMentee",
        )
        .await
        .map_err(db_status)?
        {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        // Both groups locked in one order, so two transfers the other way cannot deadlock.
        let (first, second) = if from < to { (from, to) } else { (to, from) };
        let first_group = lock_group(&mut transaction, tenant_id, first).await?;
        let second_group = lock_group(&mut transaction, tenant_id, second).await?;
        let (old_group, new_group) = if from < to {
            (first_group, second_group)
        } else {
            (second_group, first_group)
        };
        let active = active_assignment(&mut transaction, tenant_id, mentee_id)
            .await?
            .filter(|(_, current, _)| current == from)
            .ok_or_else(|| {
                refusal(
                    Code::FailedPrecondition,
                    "NOT_A_MENTEE",
                    [],
                    format!("mentee `{mentee_id}` is not a current mentee of group `{from}`"),
                )
            })?;
        let (ended, unassigned) = end_assignment(
            &mut transaction,
            tenant_id,
            active,
            &old_group.mentor_id,
            mentee_id,
            at,
        )
        .await?;
        let (started, assigned) =
            start_assignment(&mut transaction, &tenant, to, &new_group, mentee_id, at).await?;
        db::announce(&mut transaction, mentee_id, "MenteeUnassigned", &unassigned)
            .await
            .map_err(db_status)?;
        db::announce(&mut transaction, mentee_id, "MenteeAssigned", &assigned)
            .await
            .map_err(db_status)?;
        let answer = TransferMenteeResponse {
            ended: Some(ended),
            started: Some(started),
        };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "TransferMentee",
            &answer,
        )
        .await
        .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    async fn list_assignments(
        &self,
        request: Request<ListAssignmentsRequest>,
    ) -> Result<Response<ListAssignmentsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        if request.group_id.is_empty()
            && request.mentee_id.is_empty()
            && request.mentor_id.is_empty()
        {
            return Err(field_violation(
                "group_id",
                "one of group_id, mentee_id or mentor_id is required",
            ));
        }
        let page_size = page_size(request.page_size)?;
        let after: i64 = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse()
                .map_err(|_| field_violation("page_token", "is not a token this server issued"))?
        };
        let rows = sqlx::query!(
            "SELECT a.assignment_id, a.group_id, g.mentor_id, a.mentee_id, a.started_at, \
                    a.ended_at \
             FROM assignments a JOIN groups g \
               ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
             WHERE a.tenant_id = $1 AND a.assignment_id > $2 \
               AND ($3 = '' OR a.group_id = $3) AND ($4 = '' OR a.mentee_id = $4) \
               AND ($5 = '' OR g.mentor_id = $5) \
             ORDER BY a.assignment_id LIMIT $6",
            tenant.tenant_id,
            after,
            request.group_id,
            request.mentee_id,
            request.mentor_id,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = rows.len() > page_size;
        let last = rows
            .get(page_size.min(rows.len()).saturating_sub(1))
            .map(|row| row.assignment_id);
        Ok(Response::new(ListAssignmentsResponse {
            assignments: rows
                .into_iter()
                .take(page_size)
                .map(|row| Assignment {
                    group_id: row.group_id,
                    mentor_id: row.mentor_id,
                    mentee_id: row.mentee_id,
                    started_at: Some(timestamp(row.started_at)),
                    ended_at: row.ended_at.map(timestamp),
                })
                .collect(),
            next_page_token: match (more, last) {
                (true, Some(last)) => last.to_string(),
                _ => String::new(),
            },
        }))
    }

    async fn create_program(
        &self,
        request: Request<CreateProgramRequest>,
    ) -> Result<Response<CreateProgramResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let name = text("name", &request.name)?;
        let kind = match ProgramKind::try_from(request.kind) {
            Ok(ProgramKind::Pilot) => "pilot",
            Ok(ProgramKind::Standard) => "standard",
            _ => {
                return Err(field_violation(
                    "kind",
                    "must be PROGRAM_KIND_PILOT or PROGRAM_KIND_STANDARD",
                ));
            }
        };
        if !(1..=14).contains(&request.sessions_per_week) {
            return Err(field_violation(
                "sessions_per_week",
                format!("must be 1 to 14, got {}", request.sessions_per_week),
            ));
        }
        let minutes = match &request.default_session_length {
            None => DEFAULT_SESSION_MINUTES,
            Some(length) if length.nanos == 0 && length.seconds % 60 == 0 => length.seconds / 60,
            Some(_) => {
                return Err(field_violation(
                    "default_session_length",
                    "must be whole minutes",
                ));
            }
        };
        if !(5..=60).contains(&minutes) {
            return Err(field_violation(
                "default_session_length",
                format!("must be 5 to 60 minutes, got {minutes}"),
            ));
        }
        let mut transaction = match db::begin::<CreateProgramResponse>(
            &self.pool,
            &tenant.tenant_id,
            request_id,
            "CreateProgram",
        )
        .await
        .map_err(db_status)?
        {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        let program_id = new_id();
        let created = sqlx::query!(
            "INSERT INTO programs (tenant_id, program_id, name, kind, sessions_per_week, \
                                   default_session_minutes) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, name) DO NOTHING \
             RETURNING created_at",
            tenant.tenant_id,
            program_id,
            name,
            kind,
            i32::try_from(request.sessions_per_week).unwrap_or(i32::MAX),
            i32::try_from(minutes).unwrap_or(i32::MAX)
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Status::already_exists(format!("a program named `{name}` exists")))?;
        let answer = CreateProgramResponse {
            program: Some(Program {
                program_id,
                name: name.to_owned(),
                kind: request.kind,
                sessions_per_week: request.sessions_per_week,
                default_session_length: Some(prost_types::Duration {
                    seconds: minutes * 60,
                    nanos: 0,
                }),
                created_at: Some(timestamp(created.created_at)),
            }),
        };
        db::finish(
            transaction,
            &tenant.tenant_id,
            request_id,
            "CreateProgram",
            &answer,
        )
        .await
        .map_err(db_status)?;
        Ok(Response::new(answer))
    }

    async fn get_program(
        &self,
        request: Request<GetProgramRequest>,
    ) -> Result<Response<GetProgramResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let program_id = request.into_inner().program_id;
        let program_id = text("program_id", &program_id)?;
        let program = self
            .program(&tenant.tenant_id, program_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("no program `{program_id}`")))?;
        Ok(Response::new(GetProgramResponse {
            program: Some(program),
        }))
    }

    async fn list_programs(
        &self,
        request: Request<ListProgramsRequest>,
    ) -> Result<Response<ListProgramsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let ids = sqlx::query_scalar!(
            "SELECT program_id FROM programs WHERE tenant_id = $1 AND program_id > $2 \
             ORDER BY program_id LIMIT $3",
            tenant.tenant_id,
            request.page_token,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = ids.len() > page_size;
        let mut programs = Vec::with_capacity(page_size);
        for id in ids.iter().take(page_size) {
            programs.extend(self.program(&tenant.tenant_id, id).await?);
        }
        Ok(Response::new(ListProgramsResponse {
            next_page_token: if more {
                programs
                    .last()
                    .map(|program| program.program_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            },
            programs,
        }))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let program_id = text("program_id", &request.program_id)?;
        let mentor_id = text("mentor_id", &request.mentor_id)?;
        let name = text("name", &request.name)?;
        let capacity = match request.capacity {
            0 => DEFAULT_CAPACITY,
            capacity if capacity <= MAX_CAPACITY => capacity,
            capacity => {
                return Err(field_violation(
                    "capacity",
                    format!("must be at most {MAX_CAPACITY}, got {capacity}"),
                ));
            }
        };
        let occurred_at = occurred_at(&tenant, request.occurred_at.as_ref(), Utc::now())?;
        self.readiness
            .enrolled(&self.pool, &tenant.tenant_id, "mentor_id", mentor_id)
            .await?;
        let mut transaction = match db::begin::<CreateGroupResponse>(
            &self.pool,
            &tenant.tenant_id,
            request_id,
            "CreateGroup",
        )
        .await
        .map_err(db_status)?
        {
            Begun::Answered(answer) => return Ok(Response::new(answer)),
            Begun::Fresh(transaction) => transaction,
        };
        let program_exists = sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM programs WHERE tenant_id = $1 AND program_id = $2)",
            tenant.tenant_id,
            program_id
        )
        .fetch_one(&mut *transaction)
        .await
        .map_err(unavailable)?
        .unwrap_or(false);
        if !program_exists {
            return Err(refusal(
                Code::FailedPrecondition,
                "PROGRAM_NOT_FOUND",
                [],
                format!("program_id: no program `{program_id}`"),
            ));
        }
        let group_id = new_id();
        sqlx::query!(
            "INSERT INTO groups (tenant_id, group_id, program_id, mentor_id, name, capacity, \
                                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tenant.tenant_id,
            group_id,
            program_id,
            mentor_id,
            name,
            i32::try_from(capacity).unwrap_or(i32::MAX),
            occurred_at
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let event = MentorshipEvent {
            tenant_id: tenant.tenant_id.clone(),
            event_id: new_id(),
            occurred_at: Some(timestamp(occurred_at)),
            recorded_at: Some(timestamp(Utc::now())),
            payload: Some(mentorship_event::Payload::GroupCreated(GroupCreated {
                group_id: group_id.clone(),
                program_id: program_id.to_owned(),
                mentor_id: mentor_id.to_owned(),
                capacity,
            })),
        };
        db::announce(&mut transaction, &group_id, "GroupCreated", &event)
            .await
            .map_err(db_status)?;
        let answer = CreateGroupResponse {
            group: Some(Group {
                group_id,
                program_id: program_id.to_owned(),
                mentor_id: mentor_id.to_owned(),
                name: name.to_owned(),
                capacity,
                mentee_ids: Vec::new(),
                created_at: Some(timestamp(occurred_at)),
            }),
        };
        db::finish(
            transaction,
            &tenant.tenant_id,
            request_id,
            "CreateGroup",
            &answer,
        )
        .await
        .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    async fn get_group(
        &self,
        request: Request<GetGroupRequest>,
    ) -> Result<Response<GetGroupResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let group_id = request.into_inner().group_id;
        let group_id = text("group_id", &group_id)?;
        let group = self
            .group(&tenant.tenant_id, group_id)
            .await?
            .ok_or_else(|| Status::not_found(format!("no group `{group_id}`")))?;
        Ok(Response::new(GetGroupResponse { group: Some(group) }))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let page_size = page_size(request.page_size)?;
        let ids = sqlx::query_scalar!(
            "SELECT group_id FROM groups WHERE tenant_id = $1 AND group_id > $2 \
                AND ($3 = '' OR program_id = $3) AND ($4 = '' OR mentor_id = $4) \
             ORDER BY group_id LIMIT $5",
            tenant.tenant_id,
            request.page_token,
            request.program_id,
            request.mentor_id,
            i64::try_from(page_size + 1).unwrap_or(i64::MAX)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = ids.len() > page_size;
        let mut groups = Vec::with_capacity(page_size);
        for id in ids.iter().take(page_size) {
            groups.extend(self.group(&tenant.tenant_id, id).await?);
        }
        Ok(Response::new(ListGroupsResponse {
            next_page_token: if more {
                groups
                    .last()
                    .map(|group| group.group_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            },
            groups,
        }))
    }
}
