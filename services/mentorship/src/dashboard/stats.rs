//! The few numbers the pages derive themselves from the KPI service's answers: an activity
//! streak, the distribution of days to first sale and a retention curve. Pure, so that the
//! definitions (docs/dashboards.md) are tested here exactly.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDate};
use serde::Serialize;

/// Consecutive active days ending at `date`, or at the day before while `date` has no
/// activity yet (a streak is not broken until the day is over).
pub fn streak(active: &BTreeSet<NaiveDate>, date: NaiveDate) -> u32 {
    let mut day = if active.contains(&date) {
        date
    } else {
        match date.pred_opt() {
            Some(day) => day,
            None => return 0,
        }
    };
    let mut streak = 0;
    while active.contains(&day) {
        streak += 1;
        match day.pred_opt() {
            Some(previous) => day = previous,
            None => break,
        }
    }
    streak
}

/// Days since the last active day up to `date` (0 when active on `date`), None if never.
pub fn quiet_days(active: &BTreeSet<NaiveDate>, date: NaiveDate) -> Option<i64> {
    active
        .range(..=date)
        .next_back()
        .map(|last| (date - *last).num_days())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub label: &'static str,
    pub from: i64,
    pub to: Option<i64>,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstSale {
    pub buckets: Vec<Bucket>,
    pub without_sale: usize,
    /// The middle value, or the mean of the two middle values, of the days of those who sold.
    pub median: Option<f64>,
    pub partners: usize,
}

const BUCKETS: [(&str, i64, Option<i64>); 5] = [
    ("0–7", 0, Some(7)),
    ("8–14", 8, Some(14)),
    ("15–30", 15, Some(30)),
    ("31–60", 31, Some(60)),
    ("61+", 61, None),
];

/// `days` holds each partner's days to first sale, None for those who have not sold; a sale
/// before the enrolment counts as day 0.
pub fn first_sale(days: &[Option<i64>]) -> FirstSale {
    let mut sold: Vec<i64> = days.iter().flatten().map(|days| (*days).max(0)).collect();
    sold.sort_unstable();
    let buckets = BUCKETS
        .iter()
        .map(|&(label, from, to)| Bucket {
            label,
            from,
            to,
            count: sold
                .iter()
                .filter(|days| **days >= from && to.is_none_or(|to| **days <= to))
                .count(),
        })
        .collect();
    let median = match sold.len() {
        0 => None,
        n if n % 2 == 1 => Some(sold[n / 2] as f64),
        n => Some((sold[n / 2 - 1] + sold[n / 2]) as f64 / 2.0),
    };
    FirstSale {
        buckets,
        without_sale: days.len() - sold.len(),
        median,
        partners: days.len(),
    }
}

/// Weeks after enrolment the retention curve covers.
pub const RETENTION_WEEKS: u64 = 12;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionPoint {
    pub week: u64,
    /// Partners whose week `week` after enrolment has ended by the page's date.
    pub eligible: usize,
    /// Of those, the ones with at least one active day in that week.
    pub active: usize,
    pub ratio: Option<f64>,
}

/// For each week k after enrolment (days 7k+1 to 7k+7 after the local enrolment day, which
/// itself does not count: joining is not coming back),
/// the share of partners active in it, among those whose week k ended before `date`.
/// `members` holds each partner's local enrolment day and active days.
pub fn retention(
    members: &[(NaiveDate, BTreeSet<NaiveDate>)],
    date: NaiveDate,
) -> Vec<RetentionPoint> {
    (0..RETENTION_WEEKS)
        .map(|week| {
            let mut eligible = 0;
            let mut active = 0;
            for (enrolled, days) in members {
                let (Some(first), Some(last)) = (
                    enrolled.checked_add_days(Days::new(7 * week + 1)),
                    enrolled.checked_add_days(Days::new(7 * week + 7)),
                ) else {
                    continue;
                };
                // The date itself is not over yet.
                if last >= date {
                    continue;
                }
                eligible += 1;
                if days.range(first..=last).next().is_some() {
                    active += 1;
                }
            }
            RetentionPoint {
                week,
                eligible,
                active,
                ratio: (eligible > 0).then(|| active as f64 / eligible as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("date")
    }

    fn days(texts: &[&str]) -> BTreeSet<NaiveDate> {
        texts.iter().map(|text| day(text)).collect()
    }

    #[test]
    fn a_streak_counts_back_from_today_or_yesterday() {
        let active = days(&["2026-11-28", "2026-11-30", "2026-12-01"]);
        assert_eq!(streak(&active, day("2026-12-01")), 2);
        // Today not active yet: the streak up to yesterday still stands.
        assert_eq!(streak(&active, day("2026-12-02")), 2);
        assert_eq!(streak(&active, day("2026-12-03")), 0);
        assert_eq!(streak(&BTreeSet::new(), day("2026-12-03")), 0);
    }

    #[test]
    fn quiet_days_since_the_last_activity() {
        let active = days(&["2026-11-20", "2026-11-25"]);
        assert_eq!(quiet_days(&active, day("2026-11-25")), Some(0));
        assert_eq!(quiet_days(&active, day("2026-12-02")), Some(7));
        assert_eq!(quiet_days(&active, day("2026-11-19")), None);
    }

    #[test]
    fn first_sales_fall_in_inclusive_buckets_with_a_median() {
        // A sale recorded before the enrolment counts as day 0.
        let answer = first_sale(&[Some(7), Some(8), None, Some(-2), Some(61), Some(30)]);
        let counts: Vec<usize> = answer.buckets.iter().map(|bucket| bucket.count).collect();
        assert_eq!(counts, vec![2, 1, 1, 0, 1]);
        assert_eq!((answer.without_sale, answer.partners), (1, 6));
        // 0, 7, 8, 30, 61: the middle one.
        assert_eq!(answer.median, Some(8.0));
        assert_eq!(first_sale(&[Some(3), Some(6)]).median, Some(4.5));
        assert_eq!(first_sale(&[None]).median, None);
    }

    #[test]
    fn retention_counts_only_weeks_that_have_ended() {
        let members = vec![
            // The enrolment day does not count; active in week 1 (11-09 to 11-15).
            (day("2026-11-01"), days(&["2026-11-01", "2026-11-15"])),
            // Active in week 0 (11-02 to 11-08) and week 2.
            (day("2026-11-01"), days(&["2026-11-08", "2026-11-16"])),
            // Week 0 ends 2026-11-30, the page's date, not over yet.
            (day("2026-11-23"), days(&["2026-11-24"])),
            // Week 0 ended yesterday.
            (day("2026-11-22"), days(&["2026-11-29"])),
        ];
        let curve = retention(&members, day("2026-11-30"));
        let week = |k: usize| (curve[k].eligible, curve[k].active);
        assert_eq!(week(0), (3, 2));
        assert_eq!(week(1), (2, 1));
        assert_eq!(week(2), (2, 1));
        // Week 3 of the first two ends 2026-11-29; week 4 on 2026-12-06, not yet.
        assert_eq!(week(3), (2, 0));
        assert_eq!(week(4), (0, 0));
        assert_eq!(curve[4].ratio, None);
        assert_eq!(curve.len(), 12);
    }
}
