//! A partner's own page: their numbers this week, month and lifetime, plan goals, next
//! sessions, journey and activity streak.

use std::collections::BTreeSet;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;

use super::{Ask, GoalView, Header, active_days, goals};
use crate::dashboard::access::{Page, Refusal, unavailable};
use crate::dashboard::kpi::{Card, Span, SubjectRef};
use crate::dashboard::stats::streak;

/// The activity grid's length.
const ACTIVITY_DAYS: u64 = 28;
/// How far back a streak is counted.
const STREAK_DAYS: u64 = 366;
/// Most upcoming sessions shown.
const NEXT_SESSIONS: i64 = 5;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerView {
    #[serde(flatten)]
    header: Header,
    partner: PartnerFacts,
    week: Card,
    month: Card,
    lifetime: Card,
    goals: Vec<GoalView>,
    next_sessions: Vec<NextSession>,
    journey: Option<Journey>,
    activity: Activity,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct PartnerFacts {
    id: String,
    display_name: String,
    enrolled_at: Option<DateTime<Utc>>,
    rank_level: i32,
    rank_name: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
struct NextSession {
    session_id: String,
    group_id: String,
    mentor_id: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    topic: String,
    state: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Journey {
    enrolled_at: Option<String>,
    first_sale_at: Option<String>,
    days_to_first_sale: Option<i64>,
    ranks: Vec<Rank>,
    as_of: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rank {
    level: u32,
    name: String,
    reached_at: Option<String>,
    days_to_rank: i64,
}

#[derive(Debug, Serialize)]
struct Activity {
    days: Vec<Day>,
    streak: u32,
}

#[derive(Debug, Serialize)]
struct Day {
    date: NaiveDate,
    active: bool,
}

pub async fn view(ask: Ask<'_>, partner_id: &str) -> Result<PartnerView, Refusal> {
    let subject = SubjectRef::partner(partner_id);
    let card = |span| ask.kpi.card(ask.tenant(), &subject, span, ask.date);
    let (week, month, lifetime) =
        tokio::try_join!(card(Span::Week), card(Span::Month), card(Span::Lifetime))
            .map_err(unavailable)?;
    Ok(PartnerView {
        header: ask.header(Page::Partner),
        partner: facts(ask, partner_id).await?,
        week,
        month,
        lifetime,
        goals: goals(ask, partner_id).await?,
        next_sessions: next_sessions(ask, partner_id).await?,
        journey: journey(ask, partner_id).await?,
        activity: activity(ask, &subject).await?,
    })
}

async fn facts(ask: Ask<'_>, partner_id: &str) -> Result<PartnerFacts, Refusal> {
    let known: Option<PartnerFacts> = sqlx::query_as(
        "SELECT partner_id AS id, display_name, enrolled_at, rank_level, rank_name \
         FROM partners WHERE tenant_id = $1 AND partner_id = $2",
    )
    .bind(ask.tenant())
    .bind(partner_id)
    .fetch_optional(ask.pool)
    .await
    .map_err(unavailable)?;
    Ok(known.unwrap_or_else(|| PartnerFacts {
        id: partner_id.to_owned(),
        display_name: String::new(),
        enrolled_at: None,
        rank_level: 0,
        rank_name: String::new(),
    }))
}

async fn next_sessions(ask: Ask<'_>, mentee: &str) -> Result<Vec<NextSession>, Refusal> {
    sqlx::query_as(
        "SELECT s.session_id, s.group_id, s.mentor_id, s.starts_at, s.ends_at, s.topic, s.state \
         FROM sessions s JOIN session_mentees m \
           ON m.tenant_id = s.tenant_id AND m.session_id = s.session_id \
         WHERE s.tenant_id = $1 AND m.mentee_id = $2 AND s.state = 'scheduled' \
           AND s.ends_at >= now() \
         ORDER BY s.starts_at, s.session_id LIMIT $3",
    )
    .bind(ask.tenant())
    .bind(mentee)
    .bind(NEXT_SESSIONS)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

async fn journey(ask: Ask<'_>, partner_id: &str) -> Result<Option<Journey>, Refusal> {
    let Some(journey) = ask
        .kpi
        .journey(ask.tenant(), partner_id)
        .await
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    let at = |timestamp: &Option<prost_types::Timestamp>| {
        timestamp.as_ref().map(crate::dashboard::kpi::rfc3339)
    };
    Ok(Some(Journey {
        enrolled_at: at(&journey.enrolled_at),
        first_sale_at: journey
            .has_first_sale
            .then(|| at(&journey.first_sale_at))
            .flatten(),
        days_to_first_sale: journey.has_first_sale.then_some(journey.days_to_first_sale),
        ranks: journey
            .ranks
            .iter()
            .map(|rank| Rank {
                level: rank.rank_level,
                name: rank.rank_name.clone(),
                reached_at: at(&rank.reached_at),
                days_to_rank: rank.days_to_rank,
            })
            .collect(),
        as_of: at(&journey.as_of),
    }))
}

async fn activity(ask: Ask<'_>, subject: &SubjectRef) -> Result<Activity, Refusal> {
    let back = |days| {
        ask.date
            .checked_sub_days(Days::new(days - 1))
            .unwrap_or(ask.date)
    };
    let from = back(ACTIVITY_DAYS);
    let active: BTreeSet<NaiveDate> =
        active_days(ask, subject, back(STREAK_DAYS), ask.date).await?;
    Ok(Activity {
        days: from
            .iter_days()
            .take_while(|day| *day <= ask.date)
            .map(|date| Day {
                date,
                active: active.contains(&date),
            })
            .collect(),
        streak: streak(&active, ask.date),
    })
}
