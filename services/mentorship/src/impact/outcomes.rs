//! Each mentee's outcomes, measured from their enrolment (docs/impact.md): what the KPI
//! service counted for them day by day (sales volume, recruits, active days, modules), their
//! first sale, and what mentorship itself knows (sessions attended, ratings given).
//!
//! A mentee counts for an N-day outcome only once every local day it covers has ended: a young
//! mentee is not yet a failure. Outcomes are measured as of a moment (`at`: now, or a past
//! moment for a reproducible report), and the KPI service keeps daily numbers for
//! [`KPI_DAYS_KEPT`] days only: a day-based outcome whose days are older than that is unknown,
//! not zero.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use futures::StreamExt as _;
use mentorstream_proto::kpi::v1::Metric;
use tonic::Status;

use crate::dashboard::kpi::{KpiReader, SubjectRef};
use crate::impact::stats::Observation;

/// Outcomes look at a mentee's first 90 days, and retention at day 90 needs that day too.
pub const HORIZON_DAYS: u32 = 90;
/// Local days back from today whose daily KPI numbers are certainly kept: the aggregator drops
/// a day bucket 100 days after it was last written (its `calendar::DAY_RETENTION`).
pub const KPI_DAYS_KEPT: u32 = 99;
/// KPI calls in flight for one report.
const CONCURRENCY: usize = 16;

/// One local day of a mentee's life, counted from their enrolment day (day 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Day {
    pub sales_volume: f64,
    pub recruits: f64,
    pub modules: f64,
    pub active: bool,
}

/// One mentee's outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct MenteeOutcome {
    pub partner_id: String,
    /// The index of today's local day (0 on the enrolment day).
    pub today: u32,
    /// Whole days since enrolment: the floor of elapsed time / 24 h.
    pub age_days: u32,
    /// Whole days from enrolment to the first sale.
    pub days_to_first_sale: Option<u32>,
    /// Days 0 ..= min(today, HORIZON_DAYS).
    pub days: Vec<Day>,
    /// The first day index whose numbers the KPI service still keeps (0: all of them).
    pub known_from: u32,
    pub sessions_attended: u32,
    /// Ratings the mentee gave (1–5).
    pub ratings: Vec<u32>,
}

impl MenteeOutcome {
    /// Time to the first sale, censored at the mentee's age.
    pub fn time_to_first_sale(&self) -> Observation {
        match self.days_to_first_sale {
            Some(days) => Observation {
                time: f64::from(days),
                event: true,
            },
            None => Observation {
                time: f64::from(self.age_days),
                event: false,
            },
        }
    }

    /// Whether the mentee sold within `n` days; None until they are `n` days old (counting a
    /// young mentee only when they sold would favour the younger cohort).
    pub fn first_sale_within(&self, n: u32) -> Option<bool> {
        (self.age_days >= n).then(|| self.days_to_first_sale.is_some_and(|days| days < n))
    }

    /// Active on any of days n−29 ..= n; None until day n has ended, or when those days are
    /// older than the KPI service keeps.
    pub fn retained(&self, n: u32) -> Option<bool> {
        if self.today <= n || self.known_from > n.saturating_sub(29) {
            return None;
        }
        let from = n.saturating_sub(29) as usize;
        let to = (n as usize).min(self.days.len().saturating_sub(1));
        Some(self.days.get(from..=to)?.iter().any(|day| day.active))
    }

    /// The sum of `value` over days 0 ..= n−1; None until day n−1 has ended, or when those
    /// days are older than the KPI service keeps.
    pub fn first_days(&self, n: u32, value: impl Fn(&Day) -> f64) -> Option<f64> {
        if self.today < n || self.known_from > 0 {
            return None;
        }
        Some(self.days.iter().take(n as usize).map(value).sum())
    }

    /// Modules completed in the first 90 days, or so far; None when those days are older than
    /// the KPI service keeps.
    pub fn modules(&self) -> Option<f64> {
        (self.known_from == 0).then(|| {
            self.days
                .iter()
                .take(HORIZON_DAYS as usize)
                .map(|day| day.modules)
                .sum()
        })
    }

    /// The mean rating the mentee gave; None if they gave none.
    pub fn mean_rating(&self) -> Option<f64> {
        let ratings: Vec<f64> = self
            .ratings
            .iter()
            .map(|&rating| f64::from(rating))
            .collect();
        crate::impact::stats::mean(&ratings)
    }
}

/// A mentee as mentorship knows them: enrolment, sessions, ratings.
#[derive(Debug, Clone, PartialEq)]
pub struct Mentee {
    pub partner_id: String,
    pub enrolled_at: DateTime<Utc>,
    pub sessions_attended: u32,
    pub ratings: Vec<u32>,
}

/// Reads each mentee's numbers from the KPI service as of `at`, `CONCURRENCY` at a time, in
/// the order given. Also the oldest `as_of` of the answers.
pub async fn measure(
    reader: &KpiReader,
    tenant_id: &str,
    zone: Tz,
    mentees: Vec<Mentee>,
    at: DateTime<Utc>,
) -> Result<(Vec<MenteeOutcome>, Option<prost_types::Timestamp>), Status> {
    let kept_since =
        Utc::now().with_timezone(&zone).date_naive() - chrono::Days::new(u64::from(KPI_DAYS_KEPT));
    let measured: Vec<Result<(MenteeOutcome, Option<prost_types::Timestamp>), Status>> =
        futures::stream::iter(mentees)
            .map(|mentee| measure_one(reader, tenant_id, zone, mentee, at, kept_since))
            .buffered(CONCURRENCY)
            .collect()
            .await;
    let mut outcomes = Vec::with_capacity(measured.len());
    let mut as_of: Option<prost_types::Timestamp> = None;
    for answer in measured {
        let (outcome, seen) = answer?;
        outcomes.push(outcome);
        if let Some(seen) = seen
            && as_of
                .as_ref()
                .is_none_or(|oldest| (seen.seconds, seen.nanos) < (oldest.seconds, oldest.nanos))
        {
            as_of = Some(seen);
        }
    }
    Ok((outcomes, as_of))
}

/// The days the KPI series of a mentee enrolled at `enrolled_at` covers, and today's index.
pub fn span(enrolled_at: DateTime<Utc>, zone: Tz, now: DateTime<Utc>) -> (NaiveDate, u32) {
    let first = enrolled_at.with_timezone(&zone).date_naive();
    let today = now.with_timezone(&zone).date_naive();
    let index = u32::try_from((today - first).num_days().max(0)).unwrap_or(u32::MAX);
    (first, index)
}

/// Whole days from `from` to `to` (the floor of elapsed time / 24 h), 0 if negative.
pub fn whole_days(from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
    u32::try_from((to - from).num_seconds().max(0) / 86_400).unwrap_or(u32::MAX)
}

async fn measure_one(
    reader: &KpiReader,
    tenant_id: &str,
    zone: Tz,
    mentee: Mentee,
    at: DateTime<Utc>,
    kept_since: NaiveDate,
) -> Result<(MenteeOutcome, Option<prost_types::Timestamp>), Status> {
    let (first, today) = span(mentee.enrolled_at, zone, at);
    let last = first + TimeDelta::days(i64::from(today.min(HORIZON_DAYS)));
    let subject = SubjectRef::partner(&mentee.partner_id);
    let subject = &subject;
    let series = |metric| async move {
        let dated = reader.daily(tenant_id, subject, metric, first, last);
        Ok::<_, Status>(dated.await?.value)
    };
    let (journey, sales, recruits, active, modules) = tokio::try_join!(
        reader.journey(tenant_id, &mentee.partner_id),
        series(Metric::SalesVolume),
        series(Metric::Recruits),
        series(Metric::ActiveDays),
        series(Metric::ModulesCompleted),
    )?;
    let mut days = vec![Day::default(); (today.min(HORIZON_DAYS) + 1) as usize];
    let mut fill = |points: Vec<crate::dashboard::kpi::Point>, set: fn(&mut Day, f64)| {
        for point in points {
            let index = (point.date - first).num_days();
            if let Some(day) = usize::try_from(index).ok().and_then(|i| days.get_mut(i)) {
                set(day, point.value.number);
            }
        }
    };
    fill(sales, |day, value| day.sales_volume = value);
    fill(recruits, |day, value| day.recruits = value);
    fill(active, |day, value| day.active = value > 0.0);
    fill(modules, |day, value| day.modules = value);
    // A sale after `at` has not happened yet, as of `at`.
    let sold_by_then = |journey: &&mentorstream_proto::kpi::v1::GetJourneyResponse| {
        journey.has_first_sale
            && journey
                .first_sale_at
                .as_ref()
                .is_some_and(|sold| sold.seconds <= at.timestamp())
    };
    let days_to_first_sale = journey
        .as_ref()
        .filter(sold_by_then)
        .and_then(|journey| u32::try_from(journey.days_to_first_sale).ok());
    let known_from = u32::try_from((kept_since - first).num_days().max(0)).unwrap_or(u32::MAX);
    let outcome = MenteeOutcome {
        partner_id: mentee.partner_id,
        today,
        age_days: whole_days(mentee.enrolled_at, at),
        days_to_first_sale,
        days,
        known_from,
        sessions_attended: mentee.sessions_attended,
        ratings: mentee.ratings,
    };
    Ok((outcome, journey.and_then(|journey| journey.as_of)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mentee(today: u32, active_on: &[usize], first_sale: Option<u32>) -> MenteeOutcome {
        let mut days = vec![Day::default(); (today.min(HORIZON_DAYS) + 1) as usize];
        for &index in active_on {
            days[index].active = true;
            days[index].sales_volume = 10.0;
        }
        MenteeOutcome {
            partner_id: "p".into(),
            today,
            age_days: today,
            days_to_first_sale: first_sale,
            days,
            known_from: 0,
            sessions_attended: 0,
            ratings: vec![],
        }
    }

    #[test]
    fn retention_looks_at_days_n_minus_29_to_n_once_day_n_has_ended() {
        assert_eq!(mentee(30, &[1], None).retained(30), None);
        assert_eq!(mentee(31, &[1], None).retained(30), Some(true));
        assert_eq!(mentee(31, &[30], None).retained(30), Some(true));
        // Day 0 (the enrolment itself) is not retention.
        assert_eq!(mentee(31, &[0], None).retained(30), Some(false));
        assert_eq!(mentee(61, &[30], None).retained(60), Some(false));
        assert_eq!(mentee(61, &[31], None).retained(60), Some(true));
    }

    #[test]
    fn days_the_kpi_service_no_longer_keeps_are_unknown_not_zero() {
        let mut old = mentee(200, &[1, 70], None);
        old.known_from = 101;
        assert_eq!(old.first_days(30, |d| d.sales_volume), None);
        assert_eq!(old.retained(30), None);
        assert_eq!(old.modules(), None);
        old.known_from = 61;
        assert_eq!(old.retained(90), Some(true));
    }

    #[test]
    fn first_days_sum_days_0_to_n_minus_1_once_they_have_ended() {
        assert_eq!(
            mentee(29, &[0, 5], None).first_days(30, |d| d.sales_volume),
            None
        );
        assert_eq!(
            mentee(30, &[0, 5, 29, 30], None).first_days(30, |d| d.sales_volume),
            Some(30.0)
        );
    }

    #[test]
    fn a_first_sale_is_known_when_it_happened_or_when_the_window_has_passed() {
        // Too young to say, sold or not: counting only young sellers would favour them.
        assert_eq!(mentee(3, &[], Some(2)).first_sale_within(30), None);
        assert_eq!(mentee(3, &[], None).first_sale_within(30), None);
        assert_eq!(mentee(31, &[], Some(2)).first_sale_within(30), Some(true));
        assert_eq!(mentee(30, &[], None).first_sale_within(30), Some(false));
        assert_eq!(mentee(40, &[], Some(30)).first_sale_within(30), Some(false));
        assert_eq!(
            mentee(12, &[], None).time_to_first_sale(),
            Observation {
                time: 12.0,
                event: false
            }
        );
    }
}
