//! Development plans and goals: one plan per mentee, goals as KPI targets over a period, and
//! their status from the aggregator's goal signals (`mentorstream.kpi.signals.v1`), each
//! change acknowledged on the mentorship topic once.

use chrono::{DateTime, Utc};
use mentorstream_grpc::{authorize, field_violation, refusal};
use mentorstream_kafka::{HandleError, InboundRecord, RecordHandler};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::{GetGoalProgressRequest, KpiSignal, Metric, kpi_signal};
use mentorstream_proto::mentorship::v1::{
    CreatePlanRequest, CreatePlanResponse, DevelopmentPlan, GetPlanRequest, GetPlanResponse, Goal,
    GoalAchieved, GoalMissed, GoalSet, GoalStatus, PlanCreated, SetGoalRequest, SetGoalResponse,
    mentorship_event,
};
use mentorstream_tenancy::Scope;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};

use crate::api::{
    Api, db_status, membership_event as event, new_id, request_id, text, timestamp, unavailable,
};
use crate::db::{self, Begun};
use crate::sessions::instant;

/// Longest goal description.
const MAX_DESCRIPTION_CHARS: usize = 2_000;

fn status(name: &str) -> GoalStatus {
    match name {
        "achieved" => GoalStatus::Achieved,
        "missed" => GoalStatus::Missed,
        _ => GoalStatus::InProgress,
    }
}

/// A goal's target: above zero; sales volume with at most 2 decimals, counts whole.
fn target(metric: Metric, text: &str) -> Result<String, Status> {
    let invalid = |why: &str| field_violation("target", format!("{why}, got `{text}`"));
    if metric == Metric::SalesVolume {
        let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(integer) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 2 {
            return Err(invalid("must be a volume with at most 2 decimals"));
        }
        if text.bytes().all(|b| b == b'0' || b == b'.') {
            return Err(invalid("must be above 0"));
        }
    } else if text.parse::<u64>().map_or(true, |count| count == 0)
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid("must be a whole number above 0"));
    }
    Ok(text.to_owned())
}

/// Metrics a goal can be on: those the aggregator counts per partner.
fn goal_metric(metric: i32) -> Result<Metric, Status> {
    match Metric::try_from(metric) {
        Ok(
            metric @ (Metric::Recruits
            | Metric::SalesVolume
            | Metric::Orders
            | Metric::ModulesCompleted
            | Metric::LearningMinutes
            | Metric::EventsAttended
            | Metric::SessionsCompleted
            | Metric::RankAdvancements
            | Metric::ActiveDays),
        ) => Ok(metric),
        _ => Err(field_violation(
            "metric",
            "must be a partner's counted metric (recruits, sales volume, orders, modules, \
             learning minutes, events, sessions completed, rank advancements, active days)",
        )),
    }
}

impl Api {
    async fn plan_of(
        &self,
        tenant_id: &str,
        plan_id: &str,
        mentee_id: &str,
    ) -> Result<Option<DevelopmentPlan>, Status> {
        let Some(plan) = sqlx::query!(
            "SELECT plan_id, mentee_id, mentor_id, created_at FROM plans \
             WHERE tenant_id = $1 AND (plan_id = $2 OR mentee_id = $3)",
            tenant_id,
            plan_id,
            mentee_id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let goals = sqlx::query!(
            "SELECT goal_id, metric, target, starts_at, due_at, description, status, progress \
             FROM goals WHERE tenant_id = $1 AND plan_id = $2 ORDER BY starts_at, goal_id",
            tenant_id,
            plan.plan_id
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(Some(DevelopmentPlan {
            plan_id: plan.plan_id,
            mentee_id: plan.mentee_id,
            mentor_id: plan.mentor_id,
            created_at: Some(timestamp(plan.created_at)),
            goals: goals
                .into_iter()
                .map(|goal| Goal {
                    goal_id: goal.goal_id,
                    metric: goal.metric,
                    target: Some(Decimal { value: goal.target }),
                    starts_at: Some(timestamp(goal.starts_at)),
                    due_at: Some(timestamp(goal.due_at)),
                    status: status(&goal.status).into(),
                    progress: goal.progress.map(|value| Decimal { value }),
                    description: goal.description,
                })
                .collect(),
        }))
    }

    pub(crate) async fn create_development_plan(
        &self,
        request: Request<CreatePlanRequest>,
    ) -> Result<Response<CreatePlanResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let mentee_id = text("mentee_id", &request.mentee_id)?;
        let tenant_id = tenant.tenant_id.as_str();
        self.readiness
            .enrolled(&self.pool, tenant_id, "mentee_id", mentee_id)
            .await?;
        let mut transaction =
            match db::begin::<CreatePlanResponse>(&self.pool, tenant_id, request_id, "CreatePlan")
                .await
                .map_err(db_status)?
            {
                Begun::Answered(answer) => return Ok(Response::new(answer)),
                Begun::Fresh(transaction) => transaction,
            };
        let mentor_id = sqlx::query_scalar!(
            "SELECT g.mentor_id FROM assignments a JOIN groups g \
               ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
             WHERE a.tenant_id = $1 AND a.mentee_id = $2 AND a.ended_at IS NULL",
            tenant_id,
            mentee_id
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?
        .unwrap_or_default();
        let plan_id = new_id();
        let created = sqlx::query_scalar!(
            "INSERT INTO plans (tenant_id, plan_id, mentee_id, mentor_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, mentee_id) DO NOTHING RETURNING created_at",
            tenant_id,
            plan_id,
            mentee_id,
            mentor_id
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            refusal(
                Code::AlreadyExists,
                "PLAN_EXISTS",
                [],
                format!("mentee `{mentee_id}` already has a plan"),
            )
        })?;
        db::announce(
            &mut transaction,
            mentee_id,
            "PlanCreated",
            &event(
                tenant_id,
                created,
                mentorship_event::Payload::PlanCreated(PlanCreated {
                    plan_id: plan_id.clone(),
                    mentee_id: mentee_id.to_owned(),
                    mentor_id: mentor_id.clone(),
                }),
            ),
        )
        .await
        .map_err(db_status)?;
        let answer = CreatePlanResponse {
            plan: Some(DevelopmentPlan {
                plan_id,
                mentee_id: mentee_id.to_owned(),
                mentor_id,
                goals: Vec::new(),
                created_at: Some(timestamp(created)),
            }),
        };
        db::finish(transaction, tenant_id, request_id, "CreatePlan", &answer)
            .await
            .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }

    pub(crate) async fn get_development_plan(
        &self,
        request: Request<GetPlanRequest>,
    ) -> Result<Response<GetPlanResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let authorization = request.metadata().get("authorization").cloned();
        let request = request.into_inner();
        if request.plan_id.is_empty() == request.mentee_id.is_empty() {
            return Err(field_violation(
                "plan_id",
                "exactly one of plan_id and mentee_id is required",
            ));
        }
        let mut plan = self
            .plan_of(&tenant.tenant_id, &request.plan_id, &request.mentee_id)
            .await?
            .ok_or_else(|| Status::not_found("no such plan"))?;
        self.live_progress(&mut plan, authorization).await;
        Ok(Response::new(GetPlanResponse { plan: Some(plan) }))
    }

    /// Replaces the goals' progress with KpiService's live numbers, asked with the caller's own
    /// key; when it does not answer, the progress reported with the last goal signal stays.
    async fn live_progress(
        &self,
        plan: &mut DevelopmentPlan,
        authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) {
        if plan.goals.is_empty() {
            return;
        }
        let mut request = Request::new(GetGoalProgressRequest {
            mentee_id: plan.mentee_id.clone(),
            goal_ids: plan.goals.iter().map(|goal| goal.goal_id.clone()).collect(),
        });
        if let Some(authorization) = authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization);
        }
        match self.kpi.clone().get_goal_progress(request).await {
            Ok(answer) => {
                for progress in answer.into_inner().goals {
                    if let Some(goal) = plan
                        .goals
                        .iter_mut()
                        .find(|goal| goal.goal_id == progress.goal_id)
                    {
                        goal.progress = progress.value;
                    }
                }
            }
            Err(status) => {
                tracing::debug!(%status, "no live goal progress; showing the signals' value");
            }
        }
    }

    pub(crate) async fn set_plan_goal(
        &self,
        request: Request<SetGoalRequest>,
    ) -> Result<Response<SetGoalResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let plan_id = text("plan_id", &request.plan_id)?;
        let metric = goal_metric(request.metric)?;
        let target = target(
            metric,
            request
                .target
                .as_ref()
                .map_or("", |target| target.value.as_str()),
        )?;
        let starts_at = instant("starts_at", request.starts_at.as_ref())?;
        let due_at = instant("due_at", request.due_at.as_ref())?;
        if due_at <= starts_at {
            return Err(field_violation("due_at", "must be after starts_at"));
        }
        if request.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(field_violation(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        let tenant_id = tenant.tenant_id.as_str();
        let mut transaction =
            match db::begin::<SetGoalResponse>(&self.pool, tenant_id, request_id, "SetGoal")
                .await
                .map_err(db_status)?
            {
                Begun::Answered(answer) => return Ok(Response::new(answer)),
                Begun::Fresh(transaction) => transaction,
            };
        let mentee_id = sqlx::query_scalar!(
            "SELECT mentee_id FROM plans WHERE tenant_id = $1 AND plan_id = $2",
            tenant_id,
            plan_id
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            refusal(
                Code::FailedPrecondition,
                "PLAN_NOT_FOUND",
                [],
                format!("plan_id: no plan `{plan_id}`"),
            )
        })?;
        let goal_id = new_id();
        sqlx::query!(
            "INSERT INTO goals (tenant_id, goal_id, plan_id, metric, target, starts_at, due_at, \
                                description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            tenant_id,
            goal_id,
            plan_id,
            i32::from(metric),
            target,
            starts_at,
            due_at,
            request.description
        )
        .execute(&mut *transaction)
        .await
        .map_err(unavailable)?;
        let goal = Goal {
            goal_id: goal_id.clone(),
            metric: metric.into(),
            target: Some(Decimal {
                value: target.clone(),
            }),
            starts_at: Some(timestamp(starts_at)),
            due_at: Some(timestamp(due_at)),
            status: GoalStatus::InProgress.into(),
            progress: None,
            description: request.description.clone(),
        };
        db::announce(
            &mut transaction,
            &mentee_id,
            "GoalSet",
            &event(
                tenant_id,
                Utc::now(),
                mentorship_event::Payload::GoalSet(GoalSet {
                    plan_id: plan_id.to_owned(),
                    goal_id,
                    mentee_id: mentee_id.clone(),
                    metric: metric.into(),
                    target: goal.target.clone(),
                    starts_at: goal.starts_at,
                    due_at: goal.due_at,
                }),
            ),
        )
        .await
        .map_err(db_status)?;
        let answer = SetGoalResponse { goal: Some(goal) };
        db::finish(transaction, tenant_id, request_id, "SetGoal", &answer)
            .await
            .map_err(db_status)?;
        self.relay.notify_one();
        Ok(Response::new(answer))
    }
}

/// Follows the aggregator's signals (with `mentorstream_kafka::run_consumer`): a goal signal
/// moves its goal's status (achieved wins over missed: a late event can still reach a goal
/// announced missed) and its progress, and a change is acknowledged once on the mentorship
/// topic.
#[derive(Debug)]
pub struct GoalSignals {
    pub pool: PgPool,
    pub relay: std::sync::Arc<tokio::sync::Notify>,
}

impl RecordHandler for GoalSignals {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let signal: KpiSignal = record
            .decode()
            .map_err(|error| HandleError::Poison(error.to_string()))?;
        if apply_signal(&self.pool, &signal)
            .await
            .map_err(|error| HandleError::Transient(error.to_string()))?
        {
            self.relay.notify_one();
        }
        Ok(())
    }
}

/// Applies one signal; whether a goal changed.
async fn apply_signal(pool: &PgPool, signal: &KpiSignal) -> Result<bool, db::DbError> {
    let (goal_id, new_status, value, achieved_at) = match &signal.payload {
        Some(kpi_signal::Payload::GoalAchieved(achieved)) => (
            achieved.goal_id.clone(),
            "achieved",
            achieved.value.as_ref().map(|value| value.value.clone()),
            signal.occurred_at,
        ),
        Some(kpi_signal::Payload::GoalMissed(missed)) => (
            missed.goal_id.clone(),
            "missed",
            missed.value.as_ref().map(|value| value.value.clone()),
            None,
        ),
        _ => return Ok(false),
    };
    let mut transaction = pool.begin().await?;
    // Achieved may replace in progress or missed; missed only in progress.
    let changed = sqlx::query!(
        "UPDATE goals g SET status = $3, progress = $4 FROM plans p \
         WHERE g.tenant_id = $1 AND g.goal_id = $2 AND p.tenant_id = g.tenant_id \
           AND p.plan_id = g.plan_id \
           AND (g.status = 'in_progress' OR ($3 = 'achieved' AND g.status = 'missed')) \
         RETURNING g.plan_id, p.mentee_id",
        signal.tenant_id,
        goal_id,
        new_status,
        value
    )
    .fetch_optional(&mut *transaction)
    .await?;
    let Some(changed) = changed else {
        return Ok(false);
    };
    let at = achieved_at
        .as_ref()
        .and_then(|time| DateTime::from_timestamp(time.seconds, 0))
        .unwrap_or_else(Utc::now);
    let payload = if new_status == "achieved" {
        mentorship_event::Payload::GoalAchieved(GoalAchieved {
            plan_id: changed.plan_id,
            goal_id,
            mentee_id: changed.mentee_id.clone(),
            achieved_at: Some(timestamp(at)),
        })
    } else {
        mentorship_event::Payload::GoalMissed(GoalMissed {
            plan_id: changed.plan_id,
            goal_id,
            mentee_id: changed.mentee_id.clone(),
        })
    };
    let event_type = if new_status == "achieved" {
        "GoalAchieved"
    } else {
        "GoalMissed"
    };
    db::announce(
        &mut transaction,
        &changed.mentee_id,
        event_type,
        &event(&signal.tenant_id, at, payload),
    )
    .await?;
    transaction.commit().await?;
    Ok(true)
}
