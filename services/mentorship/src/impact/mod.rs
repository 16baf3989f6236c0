//! ImpactService (docs/impact.md): what mentoring changes. Validation and access here; the
//! numbers in pure modules — [`stats`], [`compare`], [`summary`], [`audit`], [`suggest`] and
//! the milestones of [`newcomers`] — fed by [`cohort`] (mentorship's own tables) and
//! [`outcomes`] (the KPI service).

pub mod audit;
pub mod cohort;
pub mod compare;
pub mod newcomers;
pub mod outcomes;
pub mod rollout;
pub mod stats;
pub mod suggest;
pub mod summary;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use mentorstream_grpc::{authorize, field_violation, refusal};
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::mentorship::v1::impact_service_server::ImpactService;
use mentorstream_proto::mentorship::v1::{
    Arm, AuditMentorsRequest, AuditMentorsResponse, CompareProgramsRequest,
    CompareProgramsResponse, GetRolloutRequest, GetRolloutResponse, ListNewcomersRequest,
    ListNewcomersResponse, MilestoneTargets, Newcomer, NewcomerStatus, SetMilestoneTargetsRequest,
    SetMilestoneTargetsResponse, StartRolloutStageRequest, StartRolloutStageResponse,
    SuggestMentorsRequest, SuggestMentorsResponse,
};
use mentorstream_tenancy::{Principal, Scope, Tenant, Tenants};
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};

use crate::api::{db_status, page_size, request_id, text, unavailable};
use crate::dashboard::kpi::KpiReader;
use crate::db;

/// Newcomers ListNewcomers reads at a time while it fills a page.
const NEWCOMERS_CHUNK: usize = 200;
/// Most bootstrap resamples a request may ask for.
const MAX_RESAMPLES: u32 = 20_000;

#[derive(Debug, Clone)]
pub struct Impact {
    pub pool: PgPool,
    pub tenants: Tenants,
    pub kpi: KpiReader,
    pub readiness: crate::partners::Readiness,
}

/// Dates a period may name: what the database stores, with room for a day either side.
const YEARS: std::ops::RangeInclusive<i32> = 1900..=9998;

fn date(field: &str, value: Option<&LocalDate>) -> Result<Option<NaiveDate>, Status> {
    value
        .map(|value| {
            value
                .to_naive()
                .filter(|date| YEARS.contains(&chrono::Datelike::year(date)))
                .ok_or_else(|| {
                    field_violation(
                        field,
                        format!(
                            "must be a calendar date in the years {} to {}",
                            YEARS.start(),
                            YEARS.end()
                        ),
                    )
                })
        })
        .transpose()
}

/// The enrolment period `from ..= to`: both given, or (when `optional`) neither.
fn period(
    from: Option<&LocalDate>,
    to: Option<&LocalDate>,
    optional: bool,
) -> Result<(NaiveDate, NaiveDate), Status> {
    match (date("enrolled_from", from)?, date("enrolled_to", to)?) {
        (Some(from), Some(to)) if from <= to => Ok((from, to)),
        (Some(_), Some(_)) => Err(field_violation(
            "enrolled_to",
            "must not be before enrolled_from",
        )),
        (None, None) if optional => Ok((
            NaiveDate::from_ymd_opt(*YEARS.start(), 1, 1).unwrap_or_default(),
            NaiveDate::from_ymd_opt(*YEARS.end(), 12, 31).unwrap_or_default(),
        )),
        (None, _) => Err(field_violation("enrolled_from", "is required")),
        (_, None) => Err(field_violation("enrolled_to", "is required")),
    }
}

/// The moment a report is measured at: now unless given; never in the future.
fn moment(value: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    let now = Utc::now();
    let Some(value) = value else {
        return Ok(now);
    };
    let at = DateTime::from_timestamp(
        value.seconds,
        u32::try_from(value.nanos).unwrap_or(u32::MAX),
    )
    .filter(|at| YEARS.contains(&chrono::Datelike::year(at)))
    .ok_or_else(|| field_violation("at", "is not a valid time"))?;
    if at > now + TimeDelta::minutes(5) {
        return Err(field_violation("at", "must not be in the future"));
    }
    Ok(at)
}

/// An optional id filter: empty, or what [`text`] accepts.
fn filter<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Ok("")
    } else {
        text(field, value)
    }
}

/// Runs the statistics off the async workers: thousands of resamples per outcome.
async fn compute<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Status::internal(format!("the computation failed: {error}")))
}

fn bootstrap(seed: u64, resamples: u32) -> Result<compare::Bootstrap, Status> {
    let resamples = match resamples {
        0 => compare::DEFAULT_RESAMPLES,
        n if !(100..=MAX_RESAMPLES).contains(&n) => {
            return Err(field_violation(
                "resamples",
                format!(
                    "must be 0 (default {}) or 100 to {MAX_RESAMPLES}",
                    compare::DEFAULT_RESAMPLES
                ),
            ));
        }
        n => n,
    };
    Ok(compare::Bootstrap { seed, resamples })
}

impl Impact {
    async fn tenant(&self, principal: &Principal) -> Result<Tenant, Status> {
        mentorstream_grpc::caller_tenant(&self.tenants, principal).await
    }

    /// The programme's name, or NOT_FOUND naming `field`.
    async fn program_name(
        &self,
        tenant_id: &str,
        field: &str,
        program_id: &str,
    ) -> Result<String, Status> {
        let name: Option<String> = sqlx::query_scalar(
            "SELECT name FROM programs WHERE tenant_id = $1 AND program_id = $2",
        )
        .bind(tenant_id)
        .bind(program_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        name.ok_or_else(|| {
            refusal(
                Code::NotFound,
                "PROGRAM_NOT_FOUND",
                [("field", field), ("program_id", program_id)],
                format!("{field}: no programme `{program_id}`"),
            )
        })
    }
}

#[tonic::async_trait]
impl ImpactService for Impact {
    async fn compare_programs(
        &self,
        request: Request<CompareProgramsRequest>,
    ) -> Result<Response<CompareProgramsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let program_a = text("program_a", &request.program_a)?;
        let program_b = text("program_b", &request.program_b)?;
        if program_a == program_b {
            return Err(field_violation("program_b", "must differ from program_a"));
        }
        let (from, to) = period(
            request.enrolled_from.as_ref(),
            request.enrolled_to.as_ref(),
            false,
        )?;
        let run = bootstrap(request.seed, request.resamples)?;
        let now = moment(request.at.as_ref())?;
        let tenant_id = &tenant.tenant_id;
        let name_a = self.program_name(tenant_id, "program_a", program_a).await?;
        let name_b = self.program_name(tenant_id, "program_b", program_b).await?;
        let bounds = cohort::bounds(tenant.time_zone, from, to);
        let mut arms = Vec::with_capacity(2);
        let mut answered = Vec::with_capacity(2);
        for program_id in [program_a, program_b] {
            let mentees = cohort::cohort(&self.pool, tenant_id, program_id, bounds, now)
                .await
                .map_err(unavailable)?;
            let (measured, as_of) =
                outcomes::measure(&self.kpi, tenant_id, tenant.time_zone, mentees, now).await?;
            answered.extend(as_of);
            arms.push(measured);
        }
        let oldest = answered
            .into_iter()
            .min_by_key(|time| (time.seconds, time.nanos));
        let comparisons = {
            let (a, b) = (arms[0].clone(), arms[1].clone());
            compute(move || compare::compare(&a, &b, run)).await?
        };
        let arm = |program_id: &str, name: &str, mentees: usize| Arm {
            program_id: program_id.to_owned(),
            program_name: name.to_owned(),
            mentees: u32::try_from(mentees).unwrap_or(u32::MAX),
        };
        Ok(Response::new(CompareProgramsResponse {
            a: Some(arm(program_a, &name_a, arms[0].len())),
            b: Some(arm(program_b, &name_b, arms[1].len())),
            summary_en: summary::summary(summary::Language::En, &name_a, &name_b, &comparisons),
            summary_ru: summary::summary(summary::Language::Ru, &name_a, &name_b, &comparisons),
            outcomes: comparisons,
            min_cohort: compare::MIN_COHORT,
            seed: run.seed,
            resamples: run.resamples,
            as_of: oldest.or_else(|| Some(crate::api::timestamp(now))),
        }))
    }

    async fn audit_mentors(
        &self,
        request: Request<AuditMentorsRequest>,
    ) -> Result<Response<AuditMentorsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let program_id = text("program_id", &request.program_id)?;
        let (from, to) = period(
            request.enrolled_from.as_ref(),
            request.enrolled_to.as_ref(),
            true,
        )?;
        let run = bootstrap(request.seed, request.resamples)?;
        let now = moment(request.at.as_ref())?;
        let tenant_id = &tenant.tenant_id;
        self.program_name(tenant_id, "program_id", program_id)
            .await?;
        let pairs = cohort::pairs(
            &self.pool,
            tenant_id,
            program_id,
            cohort::bounds(tenant.time_zone, from, to),
            now,
        )
        .await
        .map_err(unavailable)?;
        // Each mentee is measured once, whatever number of mentors they had.
        let mut unique: BTreeMap<String, outcomes::Mentee> = BTreeMap::new();
        for (_, mentee) in &pairs {
            unique
                .entry(mentee.partner_id.clone())
                .or_insert_with(|| mentee.clone());
        }
        let (measured, as_of) = outcomes::measure(
            &self.kpi,
            tenant_id,
            tenant.time_zone,
            unique.into_values().collect(),
            now,
        )
        .await?;
        let by_id: BTreeMap<&str, &outcomes::MenteeOutcome> = measured
            .iter()
            .map(|outcome| (outcome.partner_id.as_str(), outcome))
            .collect();
        let attributed: Vec<(String, outcomes::MenteeOutcome)> = pairs
            .into_iter()
            .filter_map(|(mentor, mentee)| {
                let mut outcome = (*by_id.get(mentee.partner_id.as_str())?).clone();
                outcome.sessions_attended = mentee.sessions_attended;
                outcome.ratings = mentee.ratings;
                Some((mentor, outcome))
            })
            .collect();
        let (mut mentors, program_score) = compute(move || audit::audit(&attributed, run)).await?;
        let ids: Vec<String> = mentors.iter().map(|row| row.mentor_id.clone()).collect();
        let names: Vec<(String, String)> = sqlx::query_as(
            "SELECT partner_id, display_name FROM partners WHERE tenant_id = $1 AND partner_id = ANY($2)",
        )
        .bind(tenant_id)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let names: BTreeMap<String, String> = names.into_iter().collect();
        for row in &mut mentors {
            row.display_name = names.get(&row.mentor_id).cloned().unwrap_or_default();
        }
        Ok(Response::new(AuditMentorsResponse {
            mentors,
            program_score,
            prior_strength: audit::PRIOR_STRENGTH,
            seed: run.seed,
            resamples: run.resamples,
            as_of: as_of.or_else(|| Some(crate::api::timestamp(now))),
        }))
    }

    async fn list_newcomers(
        &self,
        request: Request<ListNewcomersRequest>,
    ) -> Result<Response<ListNewcomersResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let status = match request.status {
            0 => None,
            value => Some(
                NewcomerStatus::try_from(value)
                    .map_err(|_| field_violation("status", format!("unknown status {value}")))?,
            ),
        };
        let filter = newcomers::Filter {
            tenant_id: Some(tenant.tenant_id.clone()),
            program_id: filter("program_id", &request.program_id)?.to_owned(),
            mentor_id: filter("mentor_id", &request.mentor_id)?.to_owned(),
        };
        let now = Utc::now();
        let chunk = (size + 1).max(NEWCOMERS_CHUNK);
        let fetch = |after: String, limit: usize| {
            let filter = &filter;
            async move {
                let limit = i64::try_from(limit).ok();
                let tracked = newcomers::list_after(&self.pool, filter, &after, limit, now).await;
                Ok::<_, Status>(
                    tracked
                        .map_err(unavailable)?
                        .into_iter()
                        .map(|t| t.newcomer)
                        .collect(),
                )
            }
        };
        let keep = |newcomer: &Newcomer| status.is_none_or(|status| newcomer.status() == status);
        let mut page =
            newcomers::fill_page(size + 1, chunk, request.page_token.clone(), keep, fetch).await?;
        let next_page_token = if page.len() > size {
            page.truncate(size);
            page.last()
                .map(|last| last.partner_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListNewcomersResponse {
            newcomers: page,
            next_page_token,
        }))
    }

    async fn suggest_mentors(
        &self,
        request: Request<SuggestMentorsRequest>,
    ) -> Result<Response<SuggestMentorsResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let partner_id = text("partner_id", &request.partner_id)?;
        let limit = match usize::try_from(request.limit).unwrap_or(usize::MAX) {
            0 => suggest::DEFAULT_LIMIT,
            limit if limit <= suggest::MAX_LIMIT => limit,
            limit => {
                return Err(field_violation(
                    "limit",
                    format!("must be at most {}, got {limit}", suggest::MAX_LIMIT),
                ));
            }
        };
        let tenant_id = &tenant.tenant_id;
        let program_id = filter("program_id", &request.program_id)?;
        if !program_id.is_empty() {
            self.program_name(tenant_id, "program_id", program_id)
                .await?;
        }
        self.readiness
            .enrolled(&self.pool, tenant_id, "partner_id", partner_id)
            .await?;
        let (seeker, upline) = suggest::seeker(&self.pool, tenant_id, partner_id)
            .await
            .map_err(unavailable)?;
        let mut candidates =
            suggest::candidates(&self.pool, tenant_id, partner_id, &upline, program_id)
                .await
                .map_err(unavailable)?;
        // Only groups the partner may join: each programme's current roll-out stage decides.
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        let programmes: std::collections::BTreeSet<String> =
            candidates.iter().map(|c| c.program_id.clone()).collect();
        let mut closed = std::collections::BTreeSet::new();
        for programme in programmes {
            if !rollout::admits(
                &mut connection,
                tenant_id,
                tenant.time_zone,
                &programme,
                partner_id,
            )
            .await?
            {
                closed.insert(programme);
            }
        }
        candidates.retain(|candidate| !closed.contains(&candidate.program_id));
        Ok(Response::new(SuggestMentorsResponse {
            suggestions: suggest::rank(&seeker, candidates, limit),
        }))
    }

    async fn set_milestone_targets(
        &self,
        request: Request<SetMilestoneTargetsRequest>,
    ) -> Result<Response<SetMilestoneTargetsResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let program_id = text("program_id", &request.program_id)?;
        let change = request
            .targets
            .ok_or_else(|| field_violation("targets", "is required"))?;
        validate_targets(&change)?;
        let tenant_id = &tenant.tenant_id;
        self.program_name(tenant_id, "program_id", program_id)
            .await?;
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "SetMilestoneTargets",
            SetMilestoneTargetsResponse
        );
        let current = rollout::targets(&mut transaction, tenant_id, program_id)
            .await
            .map_err(unavailable)?
            .unwrap_or_default();
        let targets = rollout::merged(&current, &change);
        rollout::store_targets(
            &mut transaction,
            tenant_id,
            program_id,
            &targets,
            &principal.key_id,
        )
        .await
        .map_err(unavailable)?;
        let answer = SetMilestoneTargetsResponse {
            targets: Some(targets),
        };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "SetMilestoneTargets",
            &answer,
        )
        .await
        .map_err(db_status)?;
        Ok(Response::new(answer))
    }

    async fn start_rollout_stage(
        &self,
        request: Request<StartRolloutStageRequest>,
    ) -> Result<Response<StartRolloutStageResponse>, Status> {
        let principal = authorize(&request, Scope::Write)?;
        let tenant = self.tenant(&principal).await?;
        let request = request.into_inner();
        let request_id = request_id(&request.request_id)?;
        let program_id = text("program_id", &request.program_id)?;
        let name = text("name", &request.name)?;
        let rule = rule(&request.eligibility.unwrap_or_default())?;
        let tenant_id = &tenant.tenant_id;
        self.program_name(tenant_id, "program_id", program_id)
            .await?;
        // A root must be an enrolled partner (one just enrolled is waited for, as everywhere).
        for root in &rule.team_root_ids {
            self.readiness
                .enrolled(&self.pool, tenant_id, "eligibility.team_root_ids", root)
                .await?;
        }
        let mut transaction = begin!(
            self,
            tenant,
            request_id,
            "StartRolloutStage",
            StartRolloutStageResponse
        );
        let stage = rollout::start_stage(
            &mut transaction,
            tenant_id,
            program_id,
            name,
            &rule,
            &principal.key_id,
        )
        .await
        .map_err(unavailable)?;
        let answer = StartRolloutStageResponse { stage: Some(stage) };
        db::finish(
            transaction,
            tenant_id,
            request_id,
            "StartRolloutStage",
            &answer,
        )
        .await
        .map_err(db_status)?;
        Ok(Response::new(answer))
    }

    async fn get_rollout(
        &self,
        request: Request<GetRolloutRequest>,
    ) -> Result<Response<GetRolloutResponse>, Status> {
        let principal = authorize(&request, Scope::Read)?;
        let tenant = self.tenant(&principal).await?;
        let program_id = text("program_id", &request.get_ref().program_id)?.to_owned();
        let tenant_id = &tenant.tenant_id;
        self.program_name(tenant_id, "program_id", &program_id)
            .await?;
        let (stages, changes) = rollout::history(&self.pool, tenant_id, &program_id)
            .await
            .map_err(unavailable)?;
        let mut connection = self.pool.acquire().await.map_err(unavailable)?;
        let targets = rollout::targets(&mut connection, tenant_id, &program_id)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(GetRolloutResponse {
            stages,
            targets,
            changes,
        }))
    }
}

fn validate_targets(targets: &MilestoneTargets) -> Result<(), Status> {
    let days = [
        ("targets.first_session_days", targets.first_session_days),
        ("targets.first_module_days", targets.first_module_days),
        ("targets.first_sale_days", targets.first_sale_days),
        ("targets.first_recruit_days", targets.first_recruit_days),
        ("targets.first_rank_days", targets.first_rank_days),
    ];
    for (field, value) in days {
        if value > 90 {
            return Err(field_violation(
                field,
                format!("must be 1 to 90 days (0 keeps it), got {value}"),
            ));
        }
    }
    if targets.first_rank_level > 1_000 {
        return Err(field_violation(
            "targets.first_rank_level",
            format!(
                "must be 1 to 1000 (0 keeps it), got {}",
                targets.first_rank_level
            ),
        ));
    }
    Ok(())
}

fn rule(
    eligibility: &mentorstream_proto::mentorship::v1::Eligibility,
) -> Result<rollout::Rule, Status> {
    if eligibility.team_root_ids.len() > rollout::MAX_TEAM_ROOTS {
        return Err(field_violation(
            "eligibility.team_root_ids",
            format!("must list at most {} partners", rollout::MAX_TEAM_ROOTS),
        ));
    }
    let team_root_ids = eligibility
        .team_root_ids
        .iter()
        .map(|id| text("eligibility.team_root_ids", id).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    let from = date(
        "eligibility.enrolled_from",
        eligibility.enrolled_from.as_ref(),
    )?;
    let to = date("eligibility.enrolled_to", eligibility.enrolled_to.as_ref())?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(field_violation(
            "eligibility.enrolled_to",
            "must not be before eligibility.enrolled_from",
        ));
    }
    Ok(rollout::Rule {
        team_root_ids,
        enrolled_from: from,
        enrolled_to: to,
    })
}
