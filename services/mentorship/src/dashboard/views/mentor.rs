//! A mentor's page: their groups with the group's numbers, each mentee's week and plan, who
//! has gone quiet, this week's sessions, recent feedback, and who needs them today.

use std::collections::HashMap;

use chrono::{DateTime, Days, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::{Ask, GoalView, Header, Person, active_days, goals, person};
use crate::dashboard::access::{Page, Refusal, in_team_of, unavailable};
use crate::dashboard::kpi::{Card, Span, SubjectRef};
use crate::dashboard::stats::quiet_days;

/// How far back a mentee's last activity is looked for.
const QUIET_LOOKBACK_DAYS: u64 = 60;
/// Most feedback entries shown.
const RECENT_FEEDBACK: i64 = 10;
/// Mentees read from the KPI service at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MentorView {
    #[serde(flatten)]
    header: Header,
    mentor: Person,
    groups: Vec<GroupView>,
    sessions: Vec<SessionRow>,
    feedback: Vec<FeedbackRow>,
    needs_you: Vec<Need>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupView {
    group_id: String,
    name: String,
    program_name: String,
    program_kind: String,
    capacity: i32,
    /// The group's numbers; `None` when they include partners the viewer may not see.
    week: Option<Card>,
    lifetime: Option<Card>,
    mentees: Vec<MenteeView>,
    /// Current mentees left out: a leader sees only the mentees in their own team.
    hidden_mentees: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MenteeView {
    id: String,
    display_name: String,
    week: Card,
    last_active: Option<chrono::NaiveDate>,
    quiet_days: Option<i64>,
    quiet: bool,
    goals: Vec<GoalView>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct SessionRow {
    session_id: String,
    group_id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    topic: String,
    state: String,
    invited: i64,
    attended: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct FeedbackRow {
    session_id: String,
    mentee_id: String,
    mentee_name: String,
    rating: i32,
    comment: String,
    submitted_at: DateTime<Utc>,
}

/// Why a mentee is on the "who needs me today" list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Reason {
    Quiet,
    MissedSession,
    GoalBehind,
    NoPlan,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Need {
    mentee_id: String,
    mentee_name: String,
    reason: Reason,
    /// QUIET: days since the last activity (None: none seen); MISSED_SESSION: sessions missed
    /// this week.
    days: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    group_id: String,
    name: String,
    capacity: i32,
    program_name: String,
    program_kind: String,
}

pub async fn view(ask: Ask<'_>, mentor_id: &str) -> Result<MentorView, Refusal> {
    let audience = Audience::of(ask, mentor_id).await?;
    let mut groups = Vec::new();
    for row in group_rows(ask, mentor_id).await? {
        groups.push(group(ask, &audience, row).await?);
    }
    let missed = missed_this_week(ask, mentor_id).await?;
    Ok(MentorView {
        header: ask.header(Page::Mentor),
        mentor: person(ask, mentor_id).await?,
        needs_you: needs(&groups, &missed, ask),
        groups,
        sessions: sessions_this_week(ask, &audience, mentor_id).await?,
        feedback: feedback(ask, &audience, mentor_id).await?,
    })
}

/// The mentor's groups and their current mentees, as the live stream follows them: only
/// what the viewer may see (a group's numbers only when the viewer may see all its mentees).
pub async fn live_subjects(ask: Ask<'_>, mentor_id: &str) -> Result<Vec<SubjectRef>, Refusal> {
    let audience = Audience::of(ask, mentor_id).await?;
    let mut subjects = Vec::new();
    for row in group_rows(ask, mentor_id).await? {
        let (shown, hidden) = audience.split(mentees(ask, &row.group_id).await?);
        if hidden == 0 {
            subjects.push(SubjectRef::group(&row.group_id));
        }
        subjects.extend(shown.iter().map(|mentee| SubjectRef::partner(&mentee.id)));
    }
    Ok(subjects)
}

/// Whom the viewer may see on a mentor's page: the mentor sees all their mentees; a leader
/// looking at a mentor of their team sees only partners of that team (and themselves).
enum Audience {
    Everyone,
    Only(Vec<String>),
}

impl Audience {
    /// One query for every partner the page could name: current mentees, those in the
    /// mentor's sessions and those who rated them.
    async fn of(ask: Ask<'_>, mentor_id: &str) -> Result<Self, Refusal> {
        let viewer = &ask.claims.partner_id;
        if viewer == mentor_id {
            return Ok(Self::Everyone);
        }
        let named: Vec<String> = sqlx::query_scalar(
            "SELECT a.mentee_id FROM assignments a JOIN groups g \
               ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
             WHERE a.tenant_id = $1 AND g.mentor_id = $2 AND a.ended_at IS NULL \
             UNION SELECT m.mentee_id FROM sessions s JOIN session_mentees m \
               ON m.tenant_id = s.tenant_id AND m.session_id = s.session_id \
             WHERE s.tenant_id = $1 AND s.mentor_id = $2 \
             UNION SELECT f.mentee_id FROM feedback f WHERE f.tenant_id = $1 AND f.mentor_id = $2",
        )
        .bind(ask.tenant())
        .bind(mentor_id)
        .fetch_all(ask.pool)
        .await
        .map_err(unavailable)?;
        let mut visible: Vec<String> = in_team_of(ask.pool, ask.claims, &named)
            .await?
            .into_iter()
            .collect();
        visible.push(viewer.clone());
        Ok(Self::Only(visible))
    }

    fn sees(&self, partner: &str) -> bool {
        match self {
            Self::Everyone => true,
            Self::Only(visible) => visible.iter().any(|id| id == partner),
        }
    }

    /// The partners a query may name (`NULL`: anyone).
    fn filter(&self) -> Option<&[String]> {
        match self {
            Self::Everyone => None,
            Self::Only(visible) => Some(visible),
        }
    }

    /// `mentees` the viewer may see, and how many they may not.
    fn split(&self, mentees: Vec<Person>) -> (Vec<Person>, usize) {
        let total = mentees.len();
        let shown: Vec<Person> = mentees.into_iter().filter(|m| self.sees(&m.id)).collect();
        let hidden = total - shown.len();
        (shown, hidden)
    }
}

async fn group_rows(ask: Ask<'_>, mentor_id: &str) -> Result<Vec<GroupRow>, Refusal> {
    sqlx::query_as(
        "SELECT g.group_id, g.name, g.capacity, p.name AS program_name, p.kind AS program_kind \
         FROM groups g JOIN programs p ON p.tenant_id = g.tenant_id AND p.program_id = g.program_id \
         WHERE g.tenant_id = $1 AND g.mentor_id = $2 ORDER BY g.created_at, g.group_id",
    )
    .bind(ask.tenant())
    .bind(mentor_id)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

async fn mentees(ask: Ask<'_>, group_id: &str) -> Result<Vec<Person>, Refusal> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT a.mentee_id, p.display_name FROM assignments a \
         LEFT JOIN partners p ON p.tenant_id = a.tenant_id AND p.partner_id = a.mentee_id \
         WHERE a.tenant_id = $1 AND a.group_id = $2 AND a.ended_at IS NULL \
         ORDER BY a.mentee_id",
    )
    .bind(ask.tenant())
    .bind(group_id)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)?;
    Ok(rows
        .into_iter()
        .map(|(id, display_name)| Person {
            id,
            display_name: display_name.unwrap_or_default(),
        })
        .collect())
}

async fn group(ask: Ask<'_>, audience: &Audience, row: GroupRow) -> Result<GroupView, Refusal> {
    let subject = SubjectRef::group(&row.group_id);
    let (shown, hidden_mentees) = audience.split(mentees(ask, &row.group_id).await?);
    let (week, lifetime) = if hidden_mentees == 0 {
        let (week, lifetime) = tokio::try_join!(
            ask.kpi.card(ask.tenant(), &subject, Span::Week, ask.date),
            ask.kpi
                .card(ask.tenant(), &subject, Span::Lifetime, ask.date)
        )
        .map_err(unavailable)?;
        (Some(week), Some(lifetime))
    } else {
        (None, None)
    };
    let mentees = futures::stream::iter(shown)
        .map(|mentee| self::mentee(ask, mentee))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(GroupView {
        group_id: row.group_id,
        name: row.name,
        program_name: row.program_name,
        program_kind: row.program_kind,
        capacity: row.capacity,
        week,
        lifetime,
        mentees,
        hidden_mentees,
    })
}

async fn mentee(ask: Ask<'_>, mentee: Person) -> Result<MenteeView, Refusal> {
    let subject = SubjectRef::partner(&mentee.id);
    let from = ask
        .date
        .checked_sub_days(Days::new(QUIET_LOOKBACK_DAYS))
        .unwrap_or(ask.date);
    let week = ask
        .kpi
        .card(ask.tenant(), &subject, Span::Week, ask.date)
        .await
        .map_err(unavailable)?;
    let active = active_days(ask, &subject, from, ask.date).await?;
    let quiet_days = quiet_days(&active, ask.date);
    Ok(MenteeView {
        last_active: active.last().copied(),
        quiet: quiet_days.is_none_or(|days| days >= i64::from(ask.inactivity_days)),
        quiet_days,
        goals: goals(ask, &mentee.id).await?,
        week,
        id: mentee.id,
        display_name: mentee.display_name,
    })
}

/// The instants the page's week begins and ends.
fn this_week(ask: Ask<'_>) -> (DateTime<Utc>, DateTime<Utc>) {
    let monday = Span::Week.first_day(ask.date).unwrap_or(ask.date);
    let next = monday.checked_add_days(Days::new(7)).unwrap_or(monday);
    (ask.start_of(monday), ask.start_of(next))
}

/// This week's sessions; invited and attended count only partners the viewer may see.
async fn sessions_this_week(
    ask: Ask<'_>,
    audience: &Audience,
    mentor_id: &str,
) -> Result<Vec<SessionRow>, Refusal> {
    let (from, to) = this_week(ask);
    sqlx::query_as(
        "SELECT s.session_id, s.group_id, s.starts_at, s.ends_at, s.topic, s.state, \
                count(m.mentee_id) FILTER (WHERE $5::text[] IS NULL OR m.mentee_id = ANY($5)) \
                  AS invited, \
                count(*) FILTER (WHERE m.attended AND ($5::text[] IS NULL \
                                                      OR m.mentee_id = ANY($5))) AS attended \
         FROM sessions s LEFT JOIN session_mentees m \
           ON m.tenant_id = s.tenant_id AND m.session_id = s.session_id \
         WHERE s.tenant_id = $1 AND s.mentor_id = $2 AND s.starts_at >= $3 AND s.starts_at < $4 \
         GROUP BY s.session_id, s.group_id, s.starts_at, s.ends_at, s.topic, s.state \
         ORDER BY s.starts_at, s.session_id",
    )
    .bind(ask.tenant())
    .bind(mentor_id)
    .bind(from)
    .bind(to)
    .bind(audience.filter())
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

/// Sessions each mentee missed this week: a missed session, or a completed one they did not
/// attend.
async fn missed_this_week(ask: Ask<'_>, mentor_id: &str) -> Result<HashMap<String, i64>, Refusal> {
    let (from, to) = this_week(ask);
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.mentee_id, count(*) FROM sessions s JOIN session_mentees m \
           ON m.tenant_id = s.tenant_id AND m.session_id = s.session_id \
         WHERE s.tenant_id = $1 AND s.mentor_id = $2 AND s.starts_at >= $3 AND s.starts_at < $4 \
           AND (s.state = 'missed' OR (s.state = 'completed' AND NOT m.attended)) \
         GROUP BY m.mentee_id",
    )
    .bind(ask.tenant())
    .bind(mentor_id)
    .bind(from)
    .bind(to)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)?;
    Ok(rows.into_iter().collect())
}

/// The mentor's latest feedback from partners the viewer may see.
async fn feedback(
    ask: Ask<'_>,
    audience: &Audience,
    mentor_id: &str,
) -> Result<Vec<FeedbackRow>, Refusal> {
    sqlx::query_as(
        "SELECT f.session_id, f.mentee_id, coalesce(p.display_name, '') AS mentee_name, \
                f.rating, f.comment, f.submitted_at \
         FROM feedback f LEFT JOIN partners p \
           ON p.tenant_id = f.tenant_id AND p.partner_id = f.mentee_id \
         WHERE f.tenant_id = $1 AND f.mentor_id = $2 \
           AND ($4::text[] IS NULL OR f.mentee_id = ANY($4)) \
         ORDER BY f.submitted_at DESC, f.session_id, f.mentee_id LIMIT $3",
    )
    .bind(ask.tenant())
    .bind(mentor_id)
    .bind(RECENT_FEEDBACK)
    .bind(audience.filter())
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

/// Who needs the mentor today, most urgent reason first: gone quiet, missed a session this
/// week, behind on a goal (past half its period at under half its target), no plan yet.
fn needs(groups: &[GroupView], missed: &HashMap<String, i64>, ask: Ask<'_>) -> Vec<Need> {
    let now = ask.start_of(ask.date);
    let mut needs = Vec::new();
    for mentee in groups.iter().flat_map(|group| &group.mentees) {
        let need = |reason, days| Need {
            mentee_id: mentee.id.clone(),
            mentee_name: mentee.display_name.clone(),
            reason,
            days,
        };
        if mentee.quiet {
            needs.push(need(Reason::Quiet, mentee.quiet_days));
        }
        if let Some(count) = missed.get(&mentee.id) {
            needs.push(need(Reason::MissedSession, Some(*count)));
        }
        if mentee.goals.iter().any(|goal| behind(goal, now)) {
            needs.push(need(Reason::GoalBehind, None));
        }
        if mentee.goals.is_empty() {
            needs.push(need(Reason::NoPlan, None));
        }
    }
    // The longest quiet (never seen active first) and the most missed first within a reason.
    needs.sort_by(|a, b| {
        let most = |need: &Need| std::cmp::Reverse(need.days.unwrap_or(i64::MAX));
        (a.reason, most(a), &a.mentee_id).cmp(&(b.reason, most(b), &b.mentee_id))
    });
    needs
}

fn behind(goal: &GoalView, now: DateTime<Utc>) -> bool {
    let period = (goal.due_at - goal.starts_at).num_seconds();
    let elapsed = (now - goal.starts_at).num_seconds();
    goal.status == "IN_PROGRESS" && period > 0 && elapsed * 2 >= period && goal.ratio < 0.5
}
