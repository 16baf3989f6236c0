//! SuggestMentors: groups with room whose mentor suits a partner, best first, each with its
//! reasons (docs/impact.md). Candidates are ordered by, in turn:
//! 1. genealogy proximity — the partner's upline first (nearest sponsor first), then the rest
//!    of the sponsor's team, then the teams of higher ancestors (nearer first), then mentors
//!    in another tree; never the partner's own downline, never the partner;
//! 2. the same language (the locale's primary subtag), then the same time zone;
//! 3. effectiveness — the mentor's mean rating shrunk toward the tenant's mean
//!    (`(n·mean + K·μ) / (n + K)`, K = 5 ratings), unrated mentors last;
//! 4. load — fewer current mentees first;
//! 5. mentor id, then group id.

use std::cmp::Ordering;

use mentorstream_proto::mentorship::v1::{MentorSuggestion, Proximity};
use sqlx::PgPool;

use crate::impact::stats;

/// Ratings the tenant's mean is worth in a mentor's effectiveness.
pub const RATING_PRIOR: f64 = 5.0;
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

/// Where a mentor stands relative to the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The partner's ancestor `steps` up.
    Upline { steps: u32 },
    /// Below the partner's ancestor `up` levels up (1 = the sponsor), `down` levels under it.
    Team { up: u32, down: u32 },
    /// In another tree.
    Unrelated,
}

impl Relation {
    /// The sort key: tier, then distance.
    fn key(self) -> (u8, u32) {
        match self {
            Self::Upline { steps } => (0, steps),
            Self::Team { up: 1, down } => (1, 1 + down),
            Self::Team { up, down } => (2, up + down),
            Self::Unrelated => (3, 0),
        }
    }

    fn proximity(self) -> Proximity {
        match self.key().0 {
            0 => Proximity::Upline,
            1 => Proximity::SponsorTeam,
            _ => Proximity::Elsewhere,
        }
    }
}

/// A group with room and its mentor, as the ranking needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub mentor_id: String,
    pub display_name: String,
    pub group_id: String,
    pub program_id: String,
    pub relation: Relation,
    pub free_places: u32,
    pub current_mentees: u32,
    pub locale: String,
    pub time_zone: String,
    pub effectiveness: Option<f64>,
}

/// The partner being matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeker {
    pub locale: String,
    pub time_zone: String,
}

fn language(locale: &str) -> String {
    locale
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn same_language(seeker: &Seeker, candidate: &Candidate) -> bool {
    !seeker.locale.is_empty() && language(&seeker.locale) == language(&candidate.locale)
}

fn same_time_zone(seeker: &Seeker, candidate: &Candidate) -> bool {
    !seeker.time_zone.is_empty() && seeker.time_zone == candidate.time_zone
}

fn order(seeker: &Seeker, x: &Candidate, y: &Candidate) -> Ordering {
    let effectiveness = |c: &Candidate| c.effectiveness.unwrap_or(f64::NEG_INFINITY);
    x.relation
        .key()
        .cmp(&y.relation.key())
        .then_with(|| same_language(seeker, y).cmp(&same_language(seeker, x)))
        .then_with(|| same_time_zone(seeker, y).cmp(&same_time_zone(seeker, x)))
        .then_with(|| {
            effectiveness(y)
                .partial_cmp(&effectiveness(x))
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| x.current_mentees.cmp(&y.current_mentees))
        .then_with(|| x.mentor_id.cmp(&y.mentor_id))
        .then_with(|| x.group_id.cmp(&y.group_id))
}

fn reasons(seeker: &Seeker, candidate: &Candidate) -> Vec<String> {
    let mut reasons = vec![match candidate.relation {
        Relation::Upline { steps: 1 } => "the partner's sponsor".to_owned(),
        Relation::Upline { steps } => format!("in the partner's upline, {steps} levels up"),
        Relation::Team { up: 1, down } => {
            format!("in the sponsor's team, {down} levels below the sponsor")
        }
        Relation::Team { up, down } => {
            format!("in the team of the partner's ancestor {up} levels up, {down} levels below it")
        }
        Relation::Unrelated => "in another sponsor tree".to_owned(),
    }];
    if same_language(seeker, candidate) {
        reasons.push(format!(
            "speaks the partner's language ({})",
            language(&candidate.locale)
        ));
    }
    if same_time_zone(seeker, candidate) {
        reasons.push(format!("same time zone ({})", candidate.time_zone));
    }
    if let Some(score) = candidate.effectiveness {
        reasons.push(format!(
            "mentees rate them {score:.2} of 5 (shrunk toward the tenant mean)"
        ));
    }
    reasons.push(format!(
        "{} of {} places free",
        candidate.free_places,
        candidate.free_places + candidate.current_mentees
    ));
    reasons
}

/// The candidates best first, at most `limit`, each with its reasons.
pub fn rank(
    seeker: &Seeker,
    mut candidates: Vec<Candidate>,
    limit: usize,
) -> Vec<MentorSuggestion> {
    candidates.retain(|candidate| candidate.free_places > 0);
    candidates.sort_by(|x, y| order(seeker, x, y));
    candidates
        .into_iter()
        .take(limit)
        .map(|candidate| MentorSuggestion {
            reasons: reasons(seeker, &candidate),
            proximity: candidate.relation.proximity().into(),
            distance: candidate.relation.key().1,
            same_language: same_language(seeker, &candidate),
            same_time_zone: same_time_zone(seeker, &candidate),
            mentor_id: candidate.mentor_id,
            display_name: candidate.display_name,
            group_id: candidate.group_id,
            program_id: candidate.program_id,
            free_places: candidate.free_places,
            current_mentees: candidate.current_mentees,
            effectiveness: candidate.effectiveness,
        })
        .collect()
}

/// The partner's locale and time zone, and their upline (ancestor, steps up), nearest first.
pub async fn seeker(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
) -> Result<(Seeker, Vec<(String, u32)>), sqlx::Error> {
    let (locale, time_zone): (String, String) = sqlx::query_as(
        "SELECT locale, time_zone FROM partners WHERE tenant_id = $1 AND partner_id = $2",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .fetch_one(pool)
    .await?;
    let upline: Vec<(String, i32)> = sqlx::query_as(
        "WITH RECURSIVE up (partner_id, sponsor_id, depth) AS ( \
             SELECT partner_id, sponsor_id, 0 FROM partners WHERE tenant_id = $1 AND partner_id = $2 \
           UNION ALL \
             SELECT s.partner_id, s.sponsor_id, up.depth + 1 \
             FROM partners s JOIN up ON s.tenant_id = $1 AND s.partner_id = up.sponsor_id \
             WHERE up.sponsor_id <> '' AND up.depth < 1000) \
         SELECT partner_id, depth FROM up WHERE depth > 0 ORDER BY depth",
    )
    .bind(tenant_id)
    .bind(partner_id)
    .fetch_all(pool)
    .await?;
    let upline = upline
        .into_iter()
        .map(|(id, depth)| (id, u32::try_from(depth).unwrap_or(0)))
        .collect();
    Ok((Seeker { locale, time_zone }, upline))
}

/// Groups with room (of `program_id`, unless empty) whose mentor is neither the partner nor in
/// their downline, each with the mentor's relation to the partner. The walk up from each
/// mentor stops at the first of the partner and their upline it meets.
pub async fn candidates(
    pool: &PgPool,
    tenant_id: &str,
    partner_id: &str,
    upline: &[(String, u32)],
    program_id: &str,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let mut stops: Vec<String> = upline.iter().map(|(id, _)| id.clone()).collect();
    stops.push(partner_id.to_owned());
    let rows: Vec<CandidateRow> = sqlx::query_as(
        "WITH RECURSIVE open AS ( \
             SELECT g.group_id, g.program_id, g.mentor_id, g.capacity, \
                    (SELECT count(*) FROM assignments a WHERE a.tenant_id = g.tenant_id \
                       AND a.group_id = g.group_id AND a.ended_at IS NULL) AS current \
             FROM groups g WHERE g.tenant_id = $1 AND ($3 = '' OR g.program_id = $3)), \
           walk (mentor_id, node, steps) AS ( \
             SELECT DISTINCT mentor_id, mentor_id, 0 FROM open \
           UNION ALL \
             SELECT w.mentor_id, p.sponsor_id, w.steps + 1 \
             FROM walk w JOIN partners p ON p.tenant_id = $1 AND p.partner_id = w.node \
             WHERE p.sponsor_id <> '' AND NOT (w.node = ANY($2)) AND w.steps < 1000), \
           met AS (SELECT mentor_id, node, steps FROM walk WHERE node = ANY($2)), \
           rated AS (SELECT mentor_id, count(*) AS ratings, avg(rating)::float8 AS mean \
                     FROM feedback WHERE tenant_id = $1 GROUP BY mentor_id) \
         SELECT o.group_id, o.program_id, o.mentor_id, o.capacity, o.current, \
                m.node AS met, m.steps, p.display_name, p.locale, p.time_zone, \
                coalesce(r.ratings, 0) AS ratings, r.mean, \
                (SELECT avg(rating)::float8 FROM feedback WHERE tenant_id = $1) AS tenant_mean \
         FROM open o \
         JOIN partners p ON p.tenant_id = $1 AND p.partner_id = o.mentor_id \
         LEFT JOIN met m ON m.mentor_id = o.mentor_id \
         LEFT JOIN rated r ON r.mentor_id = o.mentor_id \
         WHERE o.current < o.capacity",
    )
    .bind(tenant_id)
    .bind(&stops)
    .bind(program_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| row.candidate(partner_id, upline))
        .collect())
}

#[derive(Debug, sqlx::FromRow)]
struct CandidateRow {
    group_id: String,
    program_id: String,
    mentor_id: String,
    capacity: i32,
    current: i64,
    met: Option<String>,
    steps: Option<i32>,
    display_name: String,
    locale: String,
    time_zone: String,
    ratings: i64,
    mean: Option<f64>,
    tenant_mean: Option<f64>,
}

impl CandidateRow {
    /// None for the partner and their downline.
    fn candidate(self, partner_id: &str, upline: &[(String, u32)]) -> Option<Candidate> {
        let steps = self.steps.and_then(|steps| u32::try_from(steps).ok());
        let relation = match (self.met.as_deref(), steps) {
            (Some(met), _) if met == partner_id => return None,
            (Some(met), Some(down)) => {
                let up = upline.iter().find(|(id, _)| id == met).map(|(_, up)| *up)?;
                if down == 0 {
                    Relation::Upline { steps: up }
                } else {
                    Relation::Team { up, down }
                }
            }
            _ => Relation::Unrelated,
        };
        let current = u32::try_from(self.current).unwrap_or(u32::MAX);
        let capacity = u32::try_from(self.capacity).unwrap_or(0);
        let effectiveness = self
            .mean
            .zip(self.tenant_mean)
            .map(|(mean, prior)| stats::shrink(mean, self.ratings as f64, prior, RATING_PRIOR));
        Some(Candidate {
            mentor_id: self.mentor_id,
            display_name: self.display_name,
            group_id: self.group_id,
            program_id: self.program_id,
            relation,
            free_places: capacity.saturating_sub(current),
            current_mentees: current,
            locale: self.locale,
            time_zone: self.time_zone,
            effectiveness,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(
        id: &str,
        relation: Relation,
        locale: &str,
        rated: Option<f64>,
        load: u32,
    ) -> Candidate {
        Candidate {
            mentor_id: id.into(),
            display_name: id.into(),
            group_id: format!("g-{id}"),
            program_id: "pilot".into(),
            relation,
            free_places: 7 - load,
            current_mentees: load,
            locale: locale.into(),
            time_zone: "Europe/Moscow".into(),
            effectiveness: rated,
        }
    }

    #[test]
    fn upline_comes_first_then_the_sponsor_team_then_the_rest() {
        let seeker = Seeker {
            locale: "ru-RU".into(),
            time_zone: "Europe/Moscow".into(),
        };
        let candidates = vec![
            candidate("far", Relation::Unrelated, "ru", Some(5.0), 0),
            candidate(
                "cousin",
                Relation::Team { up: 2, down: 2 },
                "ru",
                Some(5.0),
                0,
            ),
            candidate(
                "sibling-en",
                Relation::Team { up: 1, down: 1 },
                "en-US",
                Some(5.0),
                0,
            ),
            candidate(
                "sibling-ru",
                Relation::Team { up: 1, down: 1 },
                "ru",
                Some(3.0),
                0,
            ),
            candidate(
                "nephew",
                Relation::Team { up: 1, down: 2 },
                "ru",
                Some(5.0),
                0,
            ),
            candidate("grand", Relation::Upline { steps: 2 }, "ru", None, 6),
            candidate("sponsor", Relation::Upline { steps: 1 }, "en", None, 0),
            candidate("busy", Relation::Upline { steps: 1 }, "ru", Some(5.0), 7),
            candidate(
                "loaded",
                Relation::Team { up: 1, down: 1 },
                "ru",
                Some(3.0),
                5,
            ),
        ];
        let ranked = rank(&seeker, candidates, 10);
        let ids: Vec<&str> = ranked.iter().map(|s| s.mentor_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "sponsor",
                "grand",
                "sibling-ru",
                "loaded",
                "sibling-en",
                "nephew",
                "cousin",
                "far"
            ]
        );
        assert_eq!(ranked[0].reasons[0], "the partner's sponsor");
        assert_eq!(ranked[2].distance, 2);
        assert_eq!(ranked[2].proximity, Proximity::SponsorTeam as i32);
        assert!(ranked[2].same_language && ranked[2].same_time_zone);
        assert_eq!(ranked[7].proximity, Proximity::Elsewhere as i32);
        assert_eq!(rank(&seeker, vec![], 3), vec![]);
    }
}
