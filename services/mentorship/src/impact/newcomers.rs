//! The first-90-days tracker: each mentee in their first 90 days, their milestones (first
//! session, module, sale, recruit, rank) against their programme's targets, and a status —
//! on track (none overdue), at risk (one), behind (two or more). When a newcomer leaves
//! on-track an at-risk episode begins and mentorship announces MenteeAtRisk, once; the episode
//! ends when they are on track again (docs/impact.md).

use chrono::{DateTime, TimeDelta, Utc};
use mentorstream_proto::mentorship::v1::{
    MenteeAtRisk, Milestone, MilestoneProgress, MilestoneTargets, Newcomer, NewcomerStatus,
    mentorship_event,
};
use sqlx::PgPool;

use crate::api::{membership_event, new_id, timestamp};
use crate::db;
use crate::impact::outcomes::whole_days;

/// A newcomer is a mentee enrolled less than this long ago.
pub const WINDOW_DAYS: i64 = 90;

/// Where a milestone's target sits in [`MilestoneTargets`].
type Target = fn(&MilestoneTargets) -> u32;

/// The milestones in order, with the target each takes from [`MilestoneTargets`].
const MILESTONES: [(Milestone, Target); 5] = [
    (Milestone::FirstSession, |t| t.first_session_days),
    (Milestone::FirstModule, |t| t.first_module_days),
    (Milestone::FirstSale, |t| t.first_sale_days),
    (Milestone::FirstRecruit, |t| t.first_recruit_days),
    (Milestone::FirstRank, |t| t.first_rank_days),
];

/// When a newcomer reached each milestone, in [`MILESTONES`] order.
pub type Reached = [Option<DateTime<Utc>>; 5];

/// The milestones of a partner enrolled at `enrolled_at`, and their status at `now`.
pub fn progress(
    enrolled_at: DateTime<Utc>,
    targets: &MilestoneTargets,
    reached: &Reached,
    now: DateTime<Utc>,
) -> (Vec<MilestoneProgress>, NewcomerStatus) {
    let milestones: Vec<MilestoneProgress> = MILESTONES
        .iter()
        .zip(reached)
        .map(|((milestone, target), reached_at)| {
            let due_at = enrolled_at + TimeDelta::days(i64::from(target(targets)));
            MilestoneProgress {
                milestone: (*milestone).into(),
                due_at: Some(timestamp(due_at)),
                reached_at: reached_at.map(timestamp),
                overdue: reached_at.is_none() && now > due_at,
            }
        })
        .collect();
    let status = match milestones.iter().filter(|m| m.overdue).count() {
        0 => NewcomerStatus::OnTrack,
        1 => NewcomerStatus::AtRisk,
        _ => NewcomerStatus::Behind,
    };
    (milestones, status)
}

/// Which newcomers to list.
#[derive(Debug, Clone)]
pub struct Filter {
    /// None only for the episode round, which looks at every tenant.
    pub tenant_id: Option<String>,
    /// Empty for any.
    pub program_id: String,
    pub mentor_id: String,
}

impl Filter {
    /// Every newcomer of every tenant: the episode round's view, never an API's.
    fn every_tenant() -> Self {
        Self {
            tenant_id: None,
            program_id: String::new(),
            mentor_id: String::new(),
        }
    }
}

/// A newcomer with the tenant they belong to.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub tenant_id: String,
    pub newcomer: Newcomer,
}

/// Every mentee with a mentor now, enrolled less than 90 days before `now`, by tenant and id.
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Vec<Tracked>, sqlx::Error> {
    list_after(pool, filter, "", None, now).await
}

/// [`list`] from the first mentee id after `after` (byte order, as page tokens compare), at
/// most `limit` of them (`None`: all): the milestone sub-queries run for those rows only.
/// `after` orders mentees of one tenant: it needs the tenant filter.
pub async fn list_after(
    pool: &PgPool,
    filter: &Filter,
    after: &str,
    limit: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<Tracked>, sqlx::Error> {
    debug_assert!(
        after.is_empty() || filter.tenant_id.is_some(),
        "after without a tenant"
    );
    let rows = sqlx::query_as::<_, Row>(
        "SELECT a.tenant_id, a.mentee_id, p.display_name, g.mentor_id, g.group_id, g.program_id, \
                p.enrolled_at, \
                (SELECT min(s.starts_at) FROM session_mentees sm JOIN sessions s \
                    ON s.tenant_id = sm.tenant_id AND s.session_id = sm.session_id \
                  WHERE sm.tenant_id = a.tenant_id AND sm.mentee_id = a.mentee_id \
                    AND sm.attended AND s.state = 'completed') AS first_session_at, \
                p.first_module_at, p.first_sale_at, \
                (SELECT min(c.enrolled_at) FROM partners c WHERE c.tenant_id = a.tenant_id \
                    AND c.sponsor_id = a.mentee_id AND c.enrolment_rank <> '~') AS first_recruit_at, \
                (SELECT min(r.reached_at) FROM partner_ranks r WHERE r.tenant_id = a.tenant_id \
                    AND r.partner_id = a.mentee_id AND r.rank_level >= pr.first_rank_level) \
                    AS first_rank_at, \
                pr.first_session_days, pr.first_module_days, pr.first_sale_days, \
                pr.first_recruit_days, pr.first_rank_days, pr.first_rank_level, \
                e.started_at AS at_risk_since \
         FROM assignments a \
         JOIN groups g ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
         JOIN programs pr ON pr.tenant_id = g.tenant_id AND pr.program_id = g.program_id \
         JOIN partners p ON p.tenant_id = a.tenant_id AND p.partner_id = a.mentee_id \
                        AND p.enrolment_rank <> '~' \
         LEFT JOIN at_risk_episodes e ON e.tenant_id = a.tenant_id AND e.mentee_id = a.mentee_id \
                                     AND e.ended_at IS NULL \
         WHERE a.ended_at IS NULL AND p.enrolled_at > $1 \
           AND ($2::text IS NULL OR a.tenant_id = $2) AND ($3 = '' OR g.program_id = $3) \
           AND ($4 = '' OR g.mentor_id = $4) AND a.mentee_id COLLATE \"C\" > $5 \
         ORDER BY a.tenant_id COLLATE \"C\", a.mentee_id COLLATE \"C\" LIMIT $6",
    )
    .bind(now - TimeDelta::days(WINDOW_DAYS))
    .bind(&filter.tenant_id)
    .bind(&filter.program_id)
    .bind(&filter.mentor_id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| row.tracked(now)).collect())
}

/// Up to `want` newcomers after `after` that `keep` keeps, in id order: `fetch(after, limit)`
/// reads the next `limit` newcomers by id, chunk by chunk, until enough are kept or none are
/// left (the status is computed, not stored, so a filtered page may read several chunks).
pub async fn fill_page<E, F, Fut>(
    want: usize,
    chunk: usize,
    mut after: String,
    keep: impl Fn(&Newcomer) -> bool,
    mut fetch: F,
) -> Result<Vec<Newcomer>, E>
where
    F: FnMut(String, usize) -> Fut,
    Fut: Future<Output = Result<Vec<Newcomer>, E>>,
{
    let mut page = Vec::with_capacity(want);
    loop {
        let read = fetch(after.clone(), chunk).await?;
        let exhausted = read.len() < chunk;
        if let Some(last) = read.last() {
            after.clone_from(&last.partner_id);
        }
        page.extend(read.into_iter().filter(|newcomer| keep(newcomer)));
        if page.len() >= want || exhausted {
            page.truncate(want);
            return Ok(page);
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    tenant_id: String,
    mentee_id: String,
    display_name: String,
    mentor_id: String,
    group_id: String,
    program_id: String,
    enrolled_at: DateTime<Utc>,
    first_session_at: Option<DateTime<Utc>>,
    first_module_at: Option<DateTime<Utc>>,
    first_sale_at: Option<DateTime<Utc>>,
    first_recruit_at: Option<DateTime<Utc>>,
    first_rank_at: Option<DateTime<Utc>>,
    first_session_days: i32,
    first_module_days: i32,
    first_sale_days: i32,
    first_recruit_days: i32,
    first_rank_days: i32,
    first_rank_level: i32,
    at_risk_since: Option<DateTime<Utc>>,
}

impl Row {
    fn tracked(self, now: DateTime<Utc>) -> Tracked {
        let days = |value: i32| u32::try_from(value).unwrap_or(0);
        let targets = MilestoneTargets {
            first_session_days: days(self.first_session_days),
            first_module_days: days(self.first_module_days),
            first_sale_days: days(self.first_sale_days),
            first_recruit_days: days(self.first_recruit_days),
            first_rank_days: days(self.first_rank_days),
            first_rank_level: days(self.first_rank_level),
        };
        let reached = [
            self.first_session_at,
            self.first_module_at,
            self.first_sale_at,
            self.first_recruit_at,
            self.first_rank_at,
        ];
        let (milestones, status) = progress(self.enrolled_at, &targets, &reached, now);
        Tracked {
            tenant_id: self.tenant_id,
            newcomer: Newcomer {
                partner_id: self.mentee_id,
                display_name: self.display_name,
                mentor_id: self.mentor_id,
                group_id: self.group_id,
                program_id: self.program_id,
                enrolled_at: Some(timestamp(self.enrolled_at)),
                day: whole_days(self.enrolled_at, now),
                milestones,
                status: status.into(),
                at_risk_since: self.at_risk_since.map(timestamp),
            },
        }
    }
}

/// One round over every tenant as of `now`: newcomers off track without an open episode begin
/// one (and MenteeAtRisk is announced in the same transaction); open episodes of mentees on
/// track, or no longer newcomers with a mentor, end — only those begun by `now`, so a round
/// that looked earlier never ends an episode another replica began after it looked. How many
/// episodes began.
pub async fn watch_episodes(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, db::DbError> {
    let tracked = list(pool, &Filter::every_tenant(), now).await?;
    let mut began = 0;
    let mut off_track: Vec<(String, String)> = Vec::new();
    for Tracked {
        tenant_id,
        newcomer,
    } in &tracked
    {
        if newcomer.status() == NewcomerStatus::OnTrack {
            continue;
        }
        off_track.push((tenant_id.clone(), newcomer.partner_id.clone()));
        // One open already (as the list read): nothing to begin, no transaction to try.
        if newcomer.at_risk_since.is_none() && begin_episode(pool, tenant_id, newcomer, now).await?
        {
            began += 1;
        }
    }
    let (tenants, mentees): (Vec<String>, Vec<String>) = off_track.into_iter().unzip();
    sqlx::query(
        "UPDATE at_risk_episodes e SET ended_at = $1 \
         WHERE ended_at IS NULL AND started_at <= $1 AND NOT EXISTS \
           (SELECT 1 FROM unnest($2::text[], $3::text[]) AS o(tenant_id, mentee_id) \
             WHERE o.tenant_id = e.tenant_id AND o.mentee_id = e.mentee_id)",
    )
    .bind(now)
    .bind(&tenants)
    .bind(&mentees)
    .execute(pool)
    .await?;
    Ok(began)
}

/// Opens an episode for `newcomer` unless one is open; whether it did.
async fn begin_episode(
    pool: &PgPool,
    tenant_id: &str,
    newcomer: &Newcomer,
    now: DateTime<Utc>,
) -> Result<bool, db::DbError> {
    let mut transaction = pool.begin().await?;
    let episode_id = new_id();
    let opened = sqlx::query(
        "INSERT INTO at_risk_episodes (tenant_id, episode_id, mentee_id, started_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, mentee_id) WHERE ended_at IS NULL \
         DO NOTHING",
    )
    .bind(tenant_id)
    .bind(&episode_id)
    .bind(&newcomer.partner_id)
    .bind(now)
    .execute(&mut *transaction)
    .await?;
    if opened.rows_affected() == 0 {
        return Ok(false);
    }
    let event = membership_event(
        tenant_id,
        now,
        mentorship_event::Payload::MenteeAtRisk(MenteeAtRisk {
            mentee_id: newcomer.partner_id.clone(),
            mentor_id: newcomer.mentor_id.clone(),
            group_id: newcomer.group_id.clone(),
            program_id: newcomer.program_id.clone(),
            episode_id,
            status: newcomer.status,
            overdue: newcomer
                .milestones
                .iter()
                .filter(|milestone| milestone.overdue)
                .map(|milestone| milestone.milestone)
                .collect(),
            day: newcomer.day,
        }),
    );
    db::announce(
        &mut transaction,
        &newcomer.partner_id,
        "MenteeAtRisk",
        &event,
    )
    .await?;
    transaction.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
            + TimeDelta::days(day)
    }

    const TARGETS: MilestoneTargets = MilestoneTargets {
        first_session_days: 3,
        first_module_days: 7,
        first_sale_days: 14,
        first_recruit_days: 30,
        first_rank_days: 60,
        first_rank_level: 2,
    };

    #[tokio::test]
    async fn a_page_reads_chunks_until_it_has_enough_kept_newcomers() {
        let all: Vec<Newcomer> = (1..=9)
            .map(|n| Newcomer {
                partner_id: format!("n{n}"),
                day: n,
                ..Newcomer::default()
            })
            .collect();
        let reads = std::cell::RefCell::new(Vec::new());
        let fetch = |after: String, limit: usize| {
            reads.borrow_mut().push(after.clone());
            let next: Vec<Newcomer> = all
                .iter()
                .filter(|newcomer| newcomer.partner_id > after)
                .take(limit)
                .cloned()
                .collect();
            std::future::ready(Ok::<_, ()>(next))
        };
        let odd = |newcomer: &Newcomer| newcomer.day % 2 == 1;
        let ids = |page: Vec<Newcomer>| -> Vec<String> {
            page.into_iter()
                .map(|newcomer| newcomer.partner_id)
                .collect()
        };
        // Three odd ones after n1, two at a time: n2 n3 | n4 n5 | n6 n7.
        let page = fill_page(3, 2, "n1".into(), odd, fetch)
            .await
            .expect("a page");
        assert_eq!(ids(page), ["n3", "n5", "n7"]);
        assert_eq!(*reads.borrow(), ["n1", "n3", "n5"]);
        // Not enough left: the last chunk is short, and what there is comes back.
        reads.borrow_mut().clear();
        let page = fill_page(3, 2, "n6".into(), odd, fetch)
            .await
            .expect("a page");
        assert_eq!(ids(page), ["n7", "n9"]);
        assert_eq!(*reads.borrow(), ["n6", "n8"]);
    }

    #[test]
    fn the_status_counts_overdue_milestones() {
        let enrolled = at(0);
        let none: Reached = [None; 5];
        assert_eq!(
            progress(enrolled, &TARGETS, &none, at(3)).1,
            NewcomerStatus::OnTrack
        );
        // Due at exactly day 3: overdue only after it.
        assert_eq!(
            progress(enrolled, &TARGETS, &none, at(3) + TimeDelta::seconds(1)).1,
            NewcomerStatus::AtRisk
        );
        assert_eq!(
            progress(enrolled, &TARGETS, &none, at(8)).1,
            NewcomerStatus::Behind
        );
        // Reached late still counts as reached.
        let late: Reached = [Some(at(5)), Some(at(6)), None, None, None];
        let (milestones, status) = progress(enrolled, &TARGETS, &late, at(10));
        assert_eq!(status, NewcomerStatus::OnTrack);
        assert!(milestones.iter().all(|milestone| !milestone.overdue));
        assert_eq!(milestones[0].reached_at, Some(timestamp(at(5))));
        assert_eq!(milestones[2].due_at, Some(timestamp(at(14))));
    }
}
