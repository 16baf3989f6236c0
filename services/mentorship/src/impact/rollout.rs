//! A programme's phased roll-out and milestone targets: stages (pilot → expansion → …) whose
//! eligibility rule decides who may join the programme's groups, targets for the
//! first-90-days tracker, and a log of every change — when, by which API key, to what.

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use mentorstream_grpc::refusal;
use mentorstream_proto::mentorship::v1::{
    Eligibility, MilestoneTargets, ProgramChange, RolloutStage,
};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tonic::{Code, Status};

use crate::api::{timestamp, unavailable};

/// The longest list of team roots a stage takes.
pub const MAX_TEAM_ROOTS: usize = 100;

/// A stage as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct StageRow {
    number: i32,
    name: String,
    team_root_ids: Vec<String>,
    enrolled_from: Option<NaiveDate>,
    enrolled_to: Option<NaiveDate>,
    started_at: DateTime<Utc>,
}

impl StageRow {
    fn proto(self) -> RolloutStage {
        RolloutStage {
            number: u32::try_from(self.number).unwrap_or(0),
            name: self.name,
            eligibility: Some(Eligibility {
                team_root_ids: self.team_root_ids,
                enrolled_from: self.enrolled_from.map(Into::into),
                enrolled_to: self.enrolled_to.map(Into::into),
            }),
            started_at: Some(timestamp(self.started_at)),
        }
    }
}

/// The targets as stored for `program_id`; None if there is no such programme.
pub async fn targets(
    connection: &mut PgConnection,
    tenant_id: &str,
    program_id: &str,
) -> Result<Option<MilestoneTargets>, sqlx::Error> {
    let row: Option<(i32, i32, i32, i32, i32, i32)> = sqlx::query_as(
        "SELECT first_session_days, first_module_days, first_sale_days, first_recruit_days, \
                first_rank_days, first_rank_level \
         FROM programs WHERE tenant_id = $1 AND program_id = $2",
    )
    .bind(tenant_id)
    .bind(program_id)
    .fetch_optional(connection)
    .await?;
    let days = |value: i32| u32::try_from(value).unwrap_or(0);
    Ok(row.map(
        |(session, module, sale, recruit, rank, level)| MilestoneTargets {
            first_session_days: days(session),
            first_module_days: days(module),
            first_sale_days: days(sale),
            first_recruit_days: days(recruit),
            first_rank_days: days(rank),
            first_rank_level: days(level),
        },
    ))
}

/// `current` with the non-zero fields of `change`.
pub fn merged(current: &MilestoneTargets, change: &MilestoneTargets) -> MilestoneTargets {
    let pick = |new: u32, old: u32| if new == 0 { old } else { new };
    MilestoneTargets {
        first_session_days: pick(change.first_session_days, current.first_session_days),
        first_module_days: pick(change.first_module_days, current.first_module_days),
        first_sale_days: pick(change.first_sale_days, current.first_sale_days),
        first_recruit_days: pick(change.first_recruit_days, current.first_recruit_days),
        first_rank_days: pick(change.first_rank_days, current.first_rank_days),
        first_rank_level: pick(change.first_rank_level, current.first_rank_level),
    }
}

/// Stores `targets` and logs the change.
pub async fn store_targets(
    connection: &mut PgConnection,
    tenant_id: &str,
    program_id: &str,
    targets: &MilestoneTargets,
    changed_by: &str,
) -> Result<(), sqlx::Error> {
    let value = |days: u32| i32::try_from(days).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE programs SET first_session_days = $3, first_module_days = $4, \
             first_sale_days = $5, first_recruit_days = $6, first_rank_days = $7, \
             first_rank_level = $8 \
         WHERE tenant_id = $1 AND program_id = $2",
    )
    .bind(tenant_id)
    .bind(program_id)
    .bind(value(targets.first_session_days))
    .bind(value(targets.first_module_days))
    .bind(value(targets.first_sale_days))
    .bind(value(targets.first_recruit_days))
    .bind(value(targets.first_rank_days))
    .bind(value(targets.first_rank_level))
    .execute(&mut *connection)
    .await?;
    let detail = json!({
        "first_session_days": targets.first_session_days,
        "first_module_days": targets.first_module_days,
        "first_sale_days": targets.first_sale_days,
        "first_recruit_days": targets.first_recruit_days,
        "first_rank_days": targets.first_rank_days,
        "first_rank_level": targets.first_rank_level,
    });
    log(
        connection, tenant_id, program_id, changed_by, "targets", &detail,
    )
    .await
}

async fn log(
    connection: &mut PgConnection,
    tenant_id: &str,
    program_id: &str,
    changed_by: &str,
    what: &str,
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO program_changes (tenant_id, program_id, changed_at, changed_by, what, detail) \
         VALUES ($1, $2, now(), $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(program_id)
    .bind(changed_by)
    .bind(what)
    .bind(detail)
    .execute(connection)
    .await?;
    Ok(())
}

/// A validated eligibility rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub team_root_ids: Vec<String>,
    pub enrolled_from: Option<NaiveDate>,
    pub enrolled_to: Option<NaiveDate>,
}

/// Appends stage `name` with `rule` after the programme's last one and logs it.
pub async fn start_stage(
    connection: &mut PgConnection,
    tenant_id: &str,
    program_id: &str,
    name: &str,
    rule: &Rule,
    changed_by: &str,
) -> Result<RolloutStage, sqlx::Error> {
    // Stages of one programme are numbered one after the other: concurrent starts queue here.
    sqlx::query("SELECT 1 FROM programs WHERE tenant_id = $1 AND program_id = $2 FOR UPDATE")
        .bind(tenant_id)
        .bind(program_id)
        .execute(&mut *connection)
        .await?;
    let stage: StageRow = sqlx::query_as(
        "INSERT INTO program_stages (tenant_id, program_id, number, name, team_root_ids, \
                                     enrolled_from, enrolled_to, started_at) \
         SELECT $1, $2, coalesce(max(number), 0) + 1, $3, $4, $5, $6, now() \
         FROM program_stages WHERE tenant_id = $1 AND program_id = $2 \
         RETURNING number, name, team_root_ids, enrolled_from, enrolled_to, started_at",
    )
    .bind(tenant_id)
    .bind(program_id)
    .bind(name)
    .bind(&rule.team_root_ids)
    .bind(rule.enrolled_from)
    .bind(rule.enrolled_to)
    .fetch_one(&mut *connection)
    .await?;
    let detail = json!({
        "number": stage.number,
        "name": name,
        "team_root_ids": rule.team_root_ids,
        "enrolled_from": rule.enrolled_from,
        "enrolled_to": rule.enrolled_to,
    });
    log(
        connection, tenant_id, program_id, changed_by, "stage", &detail,
    )
    .await?;
    Ok(stage.proto())
}

/// The programme's stages in order and its change log.
pub async fn history(
    pool: &PgPool,
    tenant_id: &str,
    program_id: &str,
) -> Result<(Vec<RolloutStage>, Vec<ProgramChange>), sqlx::Error> {
    let stages: Vec<StageRow> = sqlx::query_as(
        "SELECT number, name, team_root_ids, enrolled_from, enrolled_to, started_at \
         FROM program_stages WHERE tenant_id = $1 AND program_id = $2 ORDER BY number",
    )
    .bind(tenant_id)
    .bind(program_id)
    .fetch_all(pool)
    .await?;
    let changes: Vec<(DateTime<Utc>, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT changed_at, changed_by, what, detail FROM program_changes \
         WHERE tenant_id = $1 AND program_id = $2 ORDER BY change_id",
    )
    .bind(tenant_id)
    .bind(program_id)
    .fetch_all(pool)
    .await?;
    Ok((
        stages.into_iter().map(StageRow::proto).collect(),
        changes
            .into_iter()
            .map(|(changed_at, changed_by, what, detail)| ProgramChange {
                changed_at: Some(timestamp(changed_at)),
                changed_by,
                what,
                detail: detail.to_string(),
            })
            .collect(),
    ))
}

/// A programme's current stage: its name and rule.
#[derive(Debug, Clone, sqlx::FromRow)]
struct CurrentStage {
    name: String,
    team_root_ids: Vec<String>,
    enrolled_from: Option<NaiveDate>,
    enrolled_to: Option<NaiveDate>,
}

async fn current_stage(
    connection: &mut PgConnection,
    tenant_id: &str,
    program_id: &str,
) -> Result<Option<CurrentStage>, Status> {
    sqlx::query_as(
        "SELECT name, team_root_ids, enrolled_from, enrolled_to FROM program_stages \
         WHERE tenant_id = $1 AND program_id = $2 ORDER BY number DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(program_id)
    .fetch_optional(connection)
    .await
    .map_err(unavailable)
}

/// Why the programme's current stage does not admit `partner_id`; None when it does — no
/// stage, a partner already in the programme (admission is to the programme: a mentee moves
/// between its groups whatever later stages say), or one its rule admits. With the stage's
/// name.
async fn not_admitted(
    connection: &mut PgConnection,
    tenant_id: &str,
    zone: Tz,
    program_id: &str,
    partner_id: &str,
) -> Result<Option<(String, String)>, Status> {
    let Some(stage) = current_stage(connection, tenant_id, program_id).await? else {
        return Ok(None);
    };
    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM assignments a JOIN groups g \
                          ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
                        WHERE a.tenant_id = $1 AND a.mentee_id = $2 AND g.program_id = $3)",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .bind(program_id)
    .fetch_one(&mut *connection)
    .await
    .map_err(unavailable)?;
    if member {
        return Ok(None);
    }
    let why = refusal_reason(connection, tenant_id, zone, partner_id, &stage).await?;
    Ok(why.map(|why| (stage.name, why)))
}

/// Whether the current stage of `program_id` admits `partner_id` (see [`not_admitted`]).
pub async fn admits(
    connection: &mut PgConnection,
    tenant_id: &str,
    zone: Tz,
    program_id: &str,
    partner_id: &str,
) -> Result<bool, Status> {
    Ok(
        not_admitted(connection, tenant_id, zone, program_id, partner_id)
            .await?
            .is_none(),
    )
}

/// Refuses (FAILED_PRECONDITION, `NOT_ELIGIBLE`) a mentee whom the current stage of the
/// programme of `group_id` does not admit (see [`not_admitted`]).
pub async fn check_eligible(
    connection: &mut PgConnection,
    tenant_id: &str,
    zone: Tz,
    group_id: &str,
    mentee_id: &str,
) -> Result<(), Status> {
    let program_id: Option<String> =
        sqlx::query_scalar("SELECT program_id FROM groups WHERE tenant_id = $1 AND group_id = $2")
            .bind(tenant_id)
            .bind(group_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(unavailable)?;
    let Some(program_id) = program_id else {
        return Ok(());
    };
    match not_admitted(connection, tenant_id, zone, &program_id, mentee_id).await? {
        None => Ok(()),
        Some((stage, why)) => Err(refusal(
            Code::FailedPrecondition,
            "NOT_ELIGIBLE",
            [
                ("program_id", program_id.as_str()),
                ("stage", stage.as_str()),
            ],
            format!(
                "mentee `{mentee_id}` is not eligible for programme `{program_id}` at its stage \
                 `{stage}`: {why}"
            ),
        )),
    }
}

async fn refusal_reason(
    connection: &mut PgConnection,
    tenant_id: &str,
    zone: Tz,
    mentee_id: &str,
    stage: &CurrentStage,
) -> Result<Option<String>, Status> {
    let (roots, from, to) = (&stage.team_root_ids, stage.enrolled_from, stage.enrolled_to);
    let enrolled_at: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT enrolled_at FROM partners WHERE tenant_id = $1 AND partner_id = $2",
    )
    .bind(tenant_id)
    .bind(mentee_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(unavailable)?;
    let day = enrolled_at.map(|at| zone.from_utc_datetime(&at.naive_utc()).date_naive());
    if let (Some(from), Some(day)) = (from, day)
        && day < from
    {
        return Ok(Some(format!("enrolled on {day}, before {from}")));
    }
    if let (Some(to), Some(day)) = (to, day)
        && day > to
    {
        return Ok(Some(format!("enrolled on {day}, after {to}")));
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let in_team: bool = sqlx::query_scalar(
        "WITH RECURSIVE up (partner_id, sponsor_id, depth) AS ( \
             SELECT partner_id, sponsor_id, 0 FROM partners WHERE tenant_id = $1 AND partner_id = $2 \
           UNION ALL \
             SELECT s.partner_id, s.sponsor_id, up.depth + 1 \
             FROM partners s JOIN up ON s.tenant_id = $1 AND s.partner_id = up.sponsor_id \
             WHERE up.sponsor_id <> '' AND up.depth < 1000) \
         SELECT EXISTS (SELECT 1 FROM up WHERE partner_id = ANY($3))",
    )
    .bind(tenant_id)
    .bind(mentee_id)
    .bind(roots)
    .fetch_one(&mut *connection)
    .await
    .map_err(unavailable)?;
    Ok((!in_team).then(|| format!("not in the team of {}", roots.join(", "))))
}
