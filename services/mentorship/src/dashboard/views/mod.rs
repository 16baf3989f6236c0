//! What each page shows, assembled from the mentorship database and the KPI service
//! (docs/dashboards.md has the JSON). Every number that the KPI service computes comes from it
//! unchanged; the database gives people, groups, sessions, plans and feedback.

mod mentor;
mod partner;
mod team;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use mentorstream_actions::dashboard::LinkClaims;
use mentorstream_proto::kpi::v1::{GetGoalProgressRequest, Metric};
use serde::Serialize;
use sqlx::PgPool;

use super::access::{Page, Refusal, unavailable};
use super::kpi::{KpiReader, SubjectRef, metric_name};

pub use mentor::live_subjects as mentor_live_subjects;

/// Everything a page's assembly needs.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub pool: &'a PgPool,
    pub kpi: &'a KpiReader,
    pub claims: &'a LinkClaims,
    pub time_zone: Tz,
    pub inactivity_days: u32,
    pub date: NaiveDate,
    pub locale: &'a str,
}

impl Ask<'_> {
    pub fn tenant(&self) -> &str {
        &self.claims.tenant_id
    }

    /// The instant the local day `date` begins: its first existing local time (a day that
    /// starts in a DST gap begins when the gap ends).
    pub fn start_of(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        (0..=180)
            .step_by(15)
            .find_map(|minutes| {
                self.time_zone
                    .from_local_datetime(&(midnight + chrono::Duration::minutes(minutes)))
                    .earliest()
            })
            .map_or_else(|| midnight.and_utc(), |local| local.with_timezone(&Utc))
    }

    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    fn header(&self, page: Page) -> Header {
        Header {
            page: page.name(),
            locale: self.locale.to_owned(),
            date: self.date,
            viewer: Viewer {
                partner_id: self.claims.partner_id.clone(),
                role: self.claims.role.name(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    pub partner_id: String,
    pub role: &'static str,
}

/// What every page answer starts with.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub page: &'static str,
    pub locale: String,
    pub date: NaiveDate,
    pub viewer: Viewer,
}

/// The page's data as JSON.
pub async fn page(ask: Ask<'_>, page: Page, subject: &str) -> Result<serde_json::Value, Refusal> {
    let json = match page {
        Page::Partner => serde_json::to_value(partner::view(ask, subject).await?),
        Page::Mentor => serde_json::to_value(mentor::view(ask, subject).await?),
        Page::Team => serde_json::to_value(team::view(ask, subject).await?),
    };
    json.map_err(unavailable)
}

/// The subjects a page follows live.
pub async fn live_subjects(
    ask: Ask<'_>,
    page: Page,
    subject: &str,
) -> Result<Vec<SubjectRef>, Refusal> {
    Ok(match page {
        Page::Partner => vec![SubjectRef::partner(subject)],
        Page::Mentor => mentor_live_subjects(ask, subject).await?,
        Page::Team => vec![SubjectRef::team(subject)],
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub id: String,
    pub display_name: String,
}

/// The display names of `ids` (an unknown id has none).
pub async fn names(ask: Ask<'_>, ids: &[String]) -> Result<HashMap<String, String>, Refusal> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT partner_id, display_name FROM partners \
         WHERE tenant_id = $1 AND partner_id = ANY($2)",
    )
    .bind(ask.tenant())
    .bind(ids)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)?;
    Ok(rows.into_iter().collect())
}

pub async fn person(ask: Ask<'_>, id: &str) -> Result<Person, Refusal> {
    let names = names(ask, &[id.to_owned()]).await?;
    Ok(Person {
        id: id.to_owned(),
        display_name: names.get(id).cloned().unwrap_or_default(),
    })
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalView {
    pub goal_id: String,
    pub metric: &'static str,
    pub description: String,
    pub target: String,
    /// The goal's metric over its period, live from the aggregator (else its last signal).
    pub progress: String,
    /// progress / target, at most 1.
    pub ratio: f64,
    pub starts_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub status: String,
}

#[derive(sqlx::FromRow)]
struct GoalRow {
    goal_id: String,
    metric: i32,
    description: String,
    target: String,
    starts_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    status: String,
    progress: Option<String>,
}

/// The mentee's development-plan goals with live progress; while the KPI service cannot
/// answer, with the progress its last signal reported.
pub async fn goals(ask: Ask<'_>, mentee: &str) -> Result<Vec<GoalView>, Refusal> {
    goals_from(ask, mentee, Progress::OrLastSignal).await
}

/// The mentee's goals with the KPI service's progress, or the reason it could not answer:
/// the live stream sends nothing rather than an older value.
pub async fn live_goals(ask: Ask<'_>, mentee: &str) -> Result<Vec<GoalView>, Refusal> {
    goals_from(ask, mentee, Progress::Live).await
}

/// Where a goal's progress may come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    Live,
    OrLastSignal,
}

async fn goals_from(ask: Ask<'_>, mentee: &str, from: Progress) -> Result<Vec<GoalView>, Refusal> {
    let rows: Vec<GoalRow> = sqlx::query_as(
        "SELECT g.goal_id, g.metric, g.description, g.target, g.starts_at, g.due_at, g.status, \
                g.progress \
         FROM goals g JOIN plans p ON p.tenant_id = g.tenant_id AND p.plan_id = g.plan_id \
         WHERE g.tenant_id = $1 AND p.mentee_id = $2 ORDER BY g.due_at, g.goal_id",
    )
    .bind(ask.tenant())
    .bind(mentee)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let live = ask
        .kpi
        .goal_progress(
            ask.tenant(),
            GetGoalProgressRequest {
                mentee_id: mentee.to_owned(),
                goal_ids: rows.iter().map(|row| row.goal_id.clone()).collect(),
            },
        )
        .await;
    let live = match (live, from) {
        (Ok(live), _) => live,
        (Err(status), Progress::Live) => return Err(unavailable(status)),
        (Err(status), Progress::OrLastSignal) => {
            tracing::debug!(%status, "no live goal progress; showing the signals' value");
            HashMap::new()
        }
    };
    Ok(rows
        .into_iter()
        .map(|row| {
            let progress = live
                .get(&row.goal_id)
                .cloned()
                .or(row.progress)
                .unwrap_or_else(|| "0".to_owned());
            let ratio = ratio(&progress, &row.target);
            GoalView {
                metric: metric_name(row.metric).unwrap_or("UNSPECIFIED"),
                goal_id: row.goal_id,
                description: row.description,
                target: row.target,
                progress,
                ratio,
                starts_at: row.starts_at,
                due_at: row.due_at,
                status: row.status.to_uppercase(),
            }
        })
        .collect())
}

/// Those of `partners` with a development-plan goal.
pub async fn with_goals(ask: Ask<'_>, partners: &[String]) -> Result<Vec<String>, Refusal> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.mentee_id FROM plans p JOIN goals g \
           ON g.tenant_id = p.tenant_id AND g.plan_id = p.plan_id \
         WHERE p.tenant_id = $1 AND p.mentee_id = ANY($2)",
    )
    .bind(ask.tenant())
    .bind(partners)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

/// `progress / target` for a bar, between 0 and 1.
fn ratio(progress: &str, target: &str) -> f64 {
    let (Ok(progress), Ok(target)) = (progress.parse::<f64>(), target.parse::<f64>()) else {
        return 0.0;
    };
    if target <= 0.0 {
        return 1.0;
    }
    (progress / target).clamp(0.0, 1.0)
}

/// The local days with activity of `subject` from `from` to `to`.
pub async fn active_days(
    ask: Ask<'_>,
    subject: &SubjectRef,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeSet<NaiveDate>, Refusal> {
    let points = ask
        .kpi
        .daily(ask.tenant(), subject, Metric::ActiveDays, from, to)
        .await
        .map_err(unavailable)?;
    Ok(points
        .value
        .into_iter()
        .filter(|point| point.value.number > 0.0)
        .map(|point| point.date)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goal_bar_is_between_empty_and_full() {
        assert_eq!(ratio("40.00", "100"), 0.4);
        assert_eq!(ratio("250", "100"), 1.0);
        assert_eq!(ratio("-5", "100"), 0.0);
        assert_eq!(ratio("1", "0"), 1.0);
        assert_eq!(ratio("x", "100"), 0.0);
    }
}
