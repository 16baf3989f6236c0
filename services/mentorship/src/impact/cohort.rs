//! Who is measured: a programme's cohort (mentees whose first assignment was in one of its
//! groups, enrolled in a period) for ComparePrograms, and every (mentor, mentee) pair of a
//! programme for AuditMentors — with what mentorship itself knows of them: sessions attended
//! and ratings given, within that programme (or to that mentor).

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;

use crate::impact::outcomes::Mentee;

/// Enrolment bounds `[from, to)` in UTC of the local days `from ..= to` in `zone`.
pub fn bounds(zone: Tz, from: NaiveDate, to: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = |day: NaiveDate| {
        zone.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            // A midnight skipped by a clock change: the day starts an hour later.
            .or_else(|| {
                zone.from_local_datetime(
                    &(day.and_time(chrono::NaiveTime::MIN) + TimeDelta::hours(1)),
                )
                .earliest()
            })
            .map_or_else(
                || day.and_time(chrono::NaiveTime::MIN).and_utc(),
                |at| at.with_timezone(&Utc),
            )
    };
    (start(from), start(to + TimeDelta::days(1)))
}

#[derive(Debug, sqlx::FromRow)]
struct MenteeRow {
    mentor_id: String,
    mentee_id: String,
    enrolled_at: DateTime<Utc>,
    sessions: i64,
    ratings: Vec<i32>,
}

impl MenteeRow {
    fn mentee(self) -> (String, Mentee) {
        let ratings = self
            .ratings
            .into_iter()
            .filter_map(|rating| u32::try_from(rating).ok())
            .collect();
        (
            self.mentor_id,
            Mentee {
                partner_id: self.mentee_id,
                enrolled_at: self.enrolled_at,
                sessions_attended: u32::try_from(self.sessions).unwrap_or(u32::MAX),
                ratings,
            },
        )
    }
}

/// The cohort of `program_id` as of `at`: mentees first assigned in it and enrolled in
/// `[from, to)`, by id, with what happened by `at`.
pub async fn cohort(
    pool: &PgPool,
    tenant_id: &str,
    program_id: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    at: DateTime<Utc>,
) -> Result<Vec<Mentee>, sqlx::Error> {
    let rows: Vec<MenteeRow> = sqlx::query_as(
        "WITH firsts AS ( \
             SELECT DISTINCT ON (a.mentee_id) a.mentee_id, g.program_id, g.mentor_id \
             FROM assignments a JOIN groups g ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
             WHERE a.tenant_id = $1 AND a.started_at <= $5 \
             ORDER BY a.mentee_id, a.started_at, a.assignment_id) \
         SELECT f.mentor_id, f.mentee_id, p.enrolled_at, \
                (SELECT count(*) FROM session_mentees sm \
                   JOIN sessions s ON s.tenant_id = sm.tenant_id AND s.session_id = sm.session_id \
                   JOIN groups g ON g.tenant_id = s.tenant_id AND g.group_id = s.group_id \
                 WHERE sm.tenant_id = $1 AND sm.mentee_id = f.mentee_id AND sm.attended \
                   AND s.state = 'completed' AND s.starts_at <= $5 \
                   AND g.program_id = f.program_id) AS sessions, \
                coalesce((SELECT array_agg(fb.rating ORDER BY fb.submitted_at) FROM feedback fb \
                   JOIN sessions s ON s.tenant_id = fb.tenant_id AND s.session_id = fb.session_id \
                   JOIN groups g ON g.tenant_id = s.tenant_id AND g.group_id = s.group_id \
                 WHERE fb.tenant_id = $1 AND fb.mentee_id = f.mentee_id \
                   AND fb.submitted_at <= $5 AND g.program_id = f.program_id), '{}') AS ratings \
         FROM firsts f JOIN partners p ON p.tenant_id = $1 AND p.partner_id = f.mentee_id \
                                      AND p.enrolment_rank <> '~' \
         WHERE f.program_id = $2 AND p.enrolled_at >= $3 AND p.enrolled_at < $4 \
         ORDER BY f.mentee_id COLLATE \"C\"",
    )
    .bind(tenant_id)
    .bind(program_id)
    .bind(from)
    .bind(to.min(at))
    .bind(at)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| row.mentee().1).collect())
}

/// Every (mentor, mentee) pair of `program_id` by `at` whose mentee enrolled in `[from, to)`:
/// the sessions the mentee attended with that mentor in the programme and the ratings they
/// gave them there.
pub async fn pairs(
    pool: &PgPool,
    tenant_id: &str,
    program_id: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    at: DateTime<Utc>,
) -> Result<Vec<(String, Mentee)>, sqlx::Error> {
    let rows: Vec<MenteeRow> = sqlx::query_as(
        "WITH pairs AS ( \
             SELECT DISTINCT g.mentor_id, a.mentee_id \
             FROM assignments a JOIN groups g ON g.tenant_id = a.tenant_id AND g.group_id = a.group_id \
             WHERE a.tenant_id = $1 AND g.program_id = $2 AND a.started_at <= $5) \
         SELECT x.mentor_id, x.mentee_id, p.enrolled_at, \
                (SELECT count(*) FROM session_mentees sm \
                   JOIN sessions s ON s.tenant_id = sm.tenant_id AND s.session_id = sm.session_id \
                   JOIN groups g ON g.tenant_id = s.tenant_id AND g.group_id = s.group_id \
                 WHERE sm.tenant_id = $1 AND sm.mentee_id = x.mentee_id AND sm.attended \
                   AND s.state = 'completed' AND s.mentor_id = x.mentor_id \
                   AND s.starts_at <= $5 AND g.program_id = $2) AS sessions, \
                coalesce((SELECT array_agg(fb.rating ORDER BY fb.submitted_at) FROM feedback fb \
                   JOIN sessions s ON s.tenant_id = fb.tenant_id AND s.session_id = fb.session_id \
                   JOIN groups g ON g.tenant_id = s.tenant_id AND g.group_id = s.group_id \
                 WHERE fb.tenant_id = $1 AND fb.mentee_id = x.mentee_id \
                   AND fb.mentor_id = x.mentor_id AND fb.submitted_at <= $5 \
                   AND g.program_id = $2), '{}') AS ratings \
         FROM pairs x JOIN partners p ON p.tenant_id = $1 AND p.partner_id = x.mentee_id \
                                     AND p.enrolment_rank <> '~' \
         WHERE p.enrolled_at >= $3 AND p.enrolled_at < $4 \
         ORDER BY x.mentor_id COLLATE \"C\", x.mentee_id COLLATE \"C\"",
    )
    .bind(tenant_id)
    .bind(program_id)
    .bind(from)
    .bind(to.min(at))
    .bind(at)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(MenteeRow::mentee).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_local_days_in_utc() {
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date");
        let (from, to) = bounds(
            chrono_tz::Europe::Moscow,
            day("2026-11-01"),
            day("2026-11-30"),
        );
        assert_eq!(from.to_rfc3339(), "2026-10-31T21:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-11-30T21:00:00+00:00");
    }
}
