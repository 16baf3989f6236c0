//! A leader's page: the team's numbers this week and month against the last, leaderboards,
//! daily series, the distribution of days to first sale and a retention curve.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use mentorstream_proto::kpi::v1::Metric;
use serde::Serialize;

use super::{Ask, Header, Person, active_days, names, person};
use crate::dashboard::access::{MAX_DEPTH, Page, Refusal, unavailable};
use crate::dashboard::kpi::{Card, Dated, Point, Span, SubjectRef, Value, metric_name};
use crate::dashboard::stats::{self, FirstSale, RETENTION_WEEKS, RetentionPoint};

/// Most partners whose journeys make the distribution and the curve; a larger team shows the
/// earliest enrolled and says so (`truncated`).
const MAX_MEMBERS: i64 = 500;
/// Days the series cover, ending at the page's date.
const SERIES_DAYS: u64 = 30;
const LEADERBOARD_SIZE: u32 = 10;
const CONCURRENCY: usize = 16;
const SERIES: [Metric; 3] = [Metric::SalesVolume, Metric::Recruits, Metric::ActiveDays];
const LEADERBOARDS: [Metric; 2] = [Metric::SalesVolume, Metric::Recruits];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    #[serde(flatten)]
    header: Header,
    root: Person,
    team_size: usize,
    truncated: bool,
    week: Card,
    previous_week: Card,
    month: Card,
    previous_month: Card,
    leaderboards: Vec<Leaderboard>,
    series: Vec<Series>,
    first_sale: FirstSale,
    retention: Retention,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Leaderboard {
    metric: &'static str,
    window: Span,
    entries: Vec<Entry>,
    as_of: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    rank: u32,
    partner_id: String,
    display_name: String,
    value: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Series {
    metric: &'static str,
    points: Vec<Point>,
    as_of: Option<String>,
}

#[derive(Debug, Serialize)]
struct Retention {
    points: Vec<RetentionPoint>,
}

pub async fn view(ask: Ask<'_>, root_id: &str) -> Result<TeamView, Refusal> {
    let members = members(ask, root_id).await?;
    let team_size = members
        .first()
        .map_or(0, |member| usize::try_from(member.total).unwrap_or(0));
    let truncated = team_size > members.len();
    let subject = SubjectRef::team(root_id);
    let before = |span: Span| match span {
        Span::Week => ask.date.checked_sub_days(Days::new(7)),
        _ => ask.date.checked_sub_months(Months::new(1)),
    };
    let card = |span: Span, date: Option<NaiveDate>| {
        ask.kpi
            .card(ask.tenant(), &subject, span, date.unwrap_or(ask.date))
    };
    let (week, previous_week, month, previous_month) = tokio::try_join!(
        card(Span::Week, Some(ask.date)),
        card(Span::Week, before(Span::Week)),
        card(Span::Month, Some(ask.date)),
        card(Span::Month, before(Span::Month)),
    )
    .map_err(unavailable)?;
    let journeys = journeys(ask, members).await?;
    Ok(TeamView {
        header: ask.header(Page::Team),
        root: person(ask, root_id).await?,
        team_size,
        truncated,
        week,
        previous_week,
        month,
        previous_month,
        leaderboards: leaderboards(ask, root_id).await?,
        series: series(ask, &subject).await?,
        first_sale: stats::first_sale(
            &journeys
                .iter()
                .map(|journey| journey.days_to_first_sale)
                .collect::<Vec<_>>(),
        ),
        retention: Retention {
            points: stats::retention(
                &journeys
                    .into_iter()
                    .map(|journey| (journey.enrolled, journey.active))
                    .collect::<Vec<_>>(),
                ask.date,
            ),
        },
    })
}

#[derive(sqlx::FromRow)]
struct Member {
    partner_id: String,
    enrolled_at: DateTime<Utc>,
    /// How many the whole team has.
    total: i64,
}

/// The root and everyone enrolled below them (each once, even through a sponsor cycle),
/// earliest enrolled first, [`MAX_MEMBERS`] at most.
async fn members(ask: Ask<'_>, root_id: &str) -> Result<Vec<Member>, Refusal> {
    sqlx::query_as(
        "WITH RECURSIVE down (partner_id, depth) AS ( \
             SELECT $2::text, 0 \
           UNION ALL \
             SELECT c.partner_id, down.depth + 1 \
             FROM partners c JOIN down ON c.tenant_id = $1 AND c.sponsor_id = down.partner_id \
             WHERE down.depth < $3) \
         SELECT p.partner_id, p.enrolled_at, count(*) OVER () AS total FROM partners p \
         WHERE p.tenant_id = $1 AND p.enrolment_rank <> '~' \
           AND p.partner_id IN (SELECT partner_id FROM down) \
         ORDER BY p.enrolled_at, p.partner_id LIMIT $4",
    )
    .bind(ask.tenant())
    .bind(root_id)
    .bind(MAX_DEPTH)
    .bind(MAX_MEMBERS)
    .fetch_all(ask.pool)
    .await
    .map_err(unavailable)
}

struct MemberJourney {
    enrolled: NaiveDate,
    days_to_first_sale: Option<i64>,
    active: BTreeSet<NaiveDate>,
}

async fn journeys(ask: Ask<'_>, members: Vec<Member>) -> Result<Vec<MemberJourney>, Refusal> {
    futures::stream::iter(members.into_iter().map(|member| journey(ask, member)))
        .buffered(CONCURRENCY)
        .try_collect()
        .await
}

/// A member's first sale (from the aggregator's journey) and active days in the weeks the
/// retention curve covers.
async fn journey(ask: Ask<'_>, member: Member) -> Result<MemberJourney, Refusal> {
    let enrolled = ask.local_date(member.enrolled_at);
    let last = enrolled
        .checked_add_days(Days::new(7 * RETENTION_WEEKS))
        .unwrap_or(enrolled)
        .min(ask.date);
    let subject = SubjectRef::partner(&member.partner_id);
    let (facts, active) = tokio::try_join!(
        async {
            ask.kpi
                .journey(ask.tenant(), &member.partner_id)
                .await
                .map_err(unavailable)
        },
        async {
            if last < enrolled {
                Ok(BTreeSet::new())
            } else {
                active_days(ask, &subject, enrolled, last).await
            }
        }
    )?;
    Ok(MemberJourney {
        enrolled,
        days_to_first_sale: facts
            .filter(|facts| facts.has_first_sale)
            .map(|facts| facts.days_to_first_sale),
        active,
    })
}

async fn leaderboards(ask: Ask<'_>, root_id: &str) -> Result<Vec<Leaderboard>, Refusal> {
    let mut boards = Vec::new();
    for metric in LEADERBOARDS {
        let Dated {
            value: entries,
            as_of,
        } = ask
            .kpi
            .leaderboard(ask.tenant(), root_id, metric, ask.date, LEADERBOARD_SIZE)
            .await
            .map_err(unavailable)?;
        let ids: Vec<String> = entries
            .iter()
            .filter_map(|entry| entry.subject.as_ref().map(|subject| subject.id.clone()))
            .collect();
        let names: HashMap<String, String> = names(ask, &ids).await?;
        boards.push(Leaderboard {
            metric: metric_name(metric.into()).unwrap_or_default(),
            window: Span::Month,
            entries: entries
                .iter()
                .map(|entry| {
                    let id = entry
                        .subject
                        .as_ref()
                        .map(|subject| subject.id.clone())
                        .unwrap_or_default();
                    Entry {
                        rank: entry.rank,
                        display_name: names.get(&id).cloned().unwrap_or_default(),
                        partner_id: id,
                        value: entry.value.as_ref().and_then(Value::of_metric),
                    }
                })
                .collect(),
            as_of,
        });
    }
    Ok(boards)
}

async fn series(ask: Ask<'_>, subject: &SubjectRef) -> Result<Vec<Series>, Refusal> {
    let from = ask
        .date
        .checked_sub_days(Days::new(SERIES_DAYS - 1))
        .unwrap_or(ask.date);
    let mut all = Vec::new();
    for metric in SERIES {
        let Dated { value, as_of } = ask
            .kpi
            .daily(ask.tenant(), subject, metric, from, ask.date)
            .await
            .map_err(unavailable)?;
        all.push(Series {
            metric: metric_name(metric.into()).unwrap_or_default(),
            points: value,
            as_of,
        });
    }
    Ok(all)
}
