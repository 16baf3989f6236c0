//! Buckets: where an event counts and which buckets a window reads, in the tenant's time zone.
//!
//! An event counts in the local day, ISO week (Monday 00:00 local) and month of its
//! `occurred_at`, and in the lifetime bucket. Rolling windows are read as the last N local days
//! including the anchor day, so they need no buckets of their own.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;

/// One counter bucket of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    Day(NaiveDate),
    /// ISO week-numbering year and week (the week of 2026-12-31 is 2026-W53).
    Week {
        year: i32,
        week: u32,
    },
    Month {
        year: i32,
        month: u32,
    },
    Lifetime,
}

/// How long a bucket is kept after it was last written: long enough to answer every window of
/// the API (rolling 90 days, the weeks and months of the last years) and the tenant's lateness,
/// short enough that memory stays bounded.
pub const DAY_RETENTION: Duration = Duration::from_secs(100 * 86_400);
pub const WEEK_RETENTION: Duration = Duration::from_secs(400 * 86_400);
pub const MONTH_RETENTION: Duration = Duration::from_secs(1_200 * 86_400);

impl Bucket {
    /// The bucket of a key suffix (the inverse of `Display`).
    pub fn parse(text: &str) -> Option<Self> {
        if text == "life" {
            return Some(Self::Lifetime);
        }
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "d" => NaiveDate::parse_from_str(rest, "%Y-%m-%d")
                .ok()
                .map(Self::Day),
            "w" => {
                let (year, week) = rest.split_once("-W")?;
                let (year, week) = (year.parse().ok()?, week.parse().ok()?);
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)?;
                Some(Self::Week { year, week })
            }
            "m" => {
                let (year, month) = rest.split_once('-')?;
                let (year, month) = (year.parse().ok()?, month.parse().ok()?);
                NaiveDate::from_ymd_opt(year, month, 1)?;
                Some(Self::Month { year, month })
            }
            _ => None,
        }
    }

    /// The local days of the bucket (none for lifetime).
    pub fn days(self) -> Option<Vec<NaiveDate>> {
        let (first, last) = (self.first_day()?, self.last_day()?);
        Some(first.iter_days().take_while(|day| *day <= last).collect())
    }

    /// The last local day of the bucket (none for lifetime).
    pub fn last_day(self) -> Option<NaiveDate> {
        let first = self.first_day()?;
        match self {
            Self::Day(day) => Some(day),
            Self::Week { .. } => Some(first + Days::new(6)),
            Self::Month { .. } => {
                Some(first.checked_add_months(chrono::Months::new(1))? - Days::new(1))
            }
            Self::Lifetime => None,
        }
    }

    /// Whether the KPI state has forgotten the bucket on the local day `today` (as
    /// `Counters::prune` does): a day once it is `DAY_RETENTION` days old, a week or a month
    /// once its last day is older than its retention; lifetime never.
    pub fn expired(self, today: NaiveDate) -> bool {
        let (Some(retention), Some(last)) = (self.retention(), self.last_day()) else {
            return false;
        };
        let oldest = today - Days::new(retention.as_secs() / 86_400);
        match self {
            Self::Day(_) => last <= oldest,
            _ => last < oldest,
        }
    }

    /// The first local day of the bucket (none for lifetime).
    pub fn first_day(self) -> Option<NaiveDate> {
        match self {
            Self::Day(day) => Some(day),
            Self::Week { year, week } => {
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
            }
            Self::Month { year, month } => NaiveDate::from_ymd_opt(year, month, 1),
            Self::Lifetime => None,
        }
    }

    pub fn retention(self) -> Option<Duration> {
        match self {
            Self::Day(_) => Some(DAY_RETENTION),
            Self::Week { .. } => Some(WEEK_RETENTION),
            Self::Month { .. } => Some(MONTH_RETENTION),
            Self::Lifetime => None,
        }
    }
}

/// The key suffix of a bucket: `d:2026-11-26`, `w:2026-W48`, `m:2026-11`, `life`.
impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Day(day) => write!(f, "d:{}", day.format("%Y-%m-%d")),
            Self::Week { year, week } => write!(f, "w:{year:04}-W{week:02}"),
            Self::Month { year, month } => write!(f, "m:{year:04}-{month:02}"),
            Self::Lifetime => f.write_str("life"),
        }
    }
}

/// A window of the API, resolved to the buckets it sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Day(NaiveDate),
    Week(NaiveDate),
    Month(NaiveDate),
    /// The last `days` local days ending with (and including) the anchor.
    Rolling {
        days: u32,
        ending: NaiveDate,
    },
    Lifetime,
}

impl Window {
    pub fn buckets(self) -> Vec<Bucket> {
        match self {
            Self::Day(day) => vec![Bucket::Day(day)],
            Self::Week(day) => vec![week_of(day)],
            Self::Month(day) => vec![month_of(day)],
            Self::Rolling { days, ending } => (0..u64::from(days))
                .rev()
                .filter_map(|back| ending.checked_sub_days(Days::new(back)))
                .map(Bucket::Day)
                .collect(),
            Self::Lifetime => vec![Bucket::Lifetime],
        }
    }
}

/// Series granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
    Month,
}

/// The buckets of a series from the one containing `from` to the one containing `to`, each
/// with its first local day.
pub fn series(
    granularity: Granularity,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<(NaiveDate, Bucket)> {
    let mut points = Vec::new();
    let mut start = match granularity {
        Granularity::Day => from,
        Granularity::Week => from.week(chrono::Weekday::Mon).first_day(),
        Granularity::Month => from.with_day(1).unwrap_or(from),
    };
    while start <= to {
        let (bucket, next) = match granularity {
            Granularity::Day => (Bucket::Day(start), start.checked_add_days(Days::new(1))),
            Granularity::Week => (week_of(start), start.checked_add_days(Days::new(7))),
            Granularity::Month => (
                month_of(start),
                start.checked_add_months(chrono::Months::new(1)),
            ),
        };
        points.push((start, bucket));
        match next {
            Some(next) => start = next,
            None => break,
        }
    }
    points
}

/// The tenant's calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    time_zone: Tz,
}

impl Calendar {
    pub fn new(time_zone: Tz) -> Self {
        Self { time_zone }
    }

    /// The local date of an instant.
    pub fn local_day(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.time_zone).date_naive()
    }

    /// The instant a local day begins: its first valid local moment (a day whose midnight a
    /// clock change skips begins when the clock resumes).
    pub fn start_of(&self, day: NaiveDate) -> DateTime<Utc> {
        use chrono::TimeZone as _;
        let mut local = day.and_time(chrono::NaiveTime::MIN);
        loop {
            if let Some(start) = self.time_zone.from_local_datetime(&local).earliest() {
                return start.with_timezone(&Utc);
            }
            local += chrono::Duration::minutes(15);
        }
    }

    /// The buckets an event that occurred at `at` counts in: day, week, month, lifetime.
    pub fn buckets(&self, at: DateTime<Utc>) -> [Bucket; 4] {
        let day = self.local_day(at);
        [
            Bucket::Day(day),
            week_of(day),
            month_of(day),
            Bucket::Lifetime,
        ]
    }

    /// Whole days from `from` to `to`: the floor of the elapsed time over 24 h (docs/spec.md
    /// §6), not a difference of calendar dates.
    pub fn whole_days(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        (to - from).num_seconds().div_euclid(86_400)
    }
}

fn week_of(day: NaiveDate) -> Bucket {
    let week = day.iso_week();
    Bucket::Week {
        year: week.year(),
        week: week.week(),
    }
}

fn month_of(day: NaiveDate) -> Bucket {
    Bucket::Month {
        year: day.year(),
        month: day.month(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc 3339")
            .with_timezone(&Utc)
    }

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    fn keys(buckets: &[Bucket]) -> Vec<String> {
        buckets.iter().map(Bucket::to_string).collect()
    }

    #[test]
    fn an_event_counts_in_the_local_day_not_the_utc_day() {
        let moscow = Calendar::new(chrono_tz::Europe::Moscow);
        // 21:30 UTC is 00:30 the next day in Moscow (UTC+3).
        assert_eq!(
            keys(&moscow.buckets(utc("2026-11-29T21:30:00Z"))),
            ["d:2026-11-30", "w:2026-W49", "m:2026-11", "life"]
        );
        assert_eq!(
            keys(&moscow.buckets(utc("2026-11-29T20:59:59Z"))),
            ["d:2026-11-29", "w:2026-W48", "m:2026-11", "life"]
        );
        // Month boundary: 2026-11-30T21:00Z is December 1st in Moscow.
        assert_eq!(
            keys(&moscow.buckets(utc("2026-11-30T21:00:00Z"))),
            ["d:2026-12-01", "w:2026-W49", "m:2026-12", "life"]
        );
    }

    #[test]
    fn weeks_are_iso_weeks_with_their_own_year() {
        let utc_calendar = Calendar::new(chrono_tz::UTC);
        assert_eq!(
            keys(&utc_calendar.buckets(utc("2026-12-31T12:00:00Z")))[1],
            "w:2026-W53"
        );
        assert_eq!(
            keys(&utc_calendar.buckets(utc("2027-01-03T12:00:00Z")))[1],
            "w:2026-W53"
        );
        assert_eq!(
            keys(&utc_calendar.buckets(utc("2027-01-04T00:00:00Z")))[1],
            "w:2027-W01"
        );
    }

    #[test]
    fn days_follow_daylight_saving_changes() {
        let new_york = Calendar::new(chrono_tz::America::New_York);
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT. 04:30Z is 23:30 EST on the 7th,
        // 05:30Z is 00:30 EST on the 8th, 23:59Z is 19:59 EDT on the 8th.
        assert_eq!(
            new_york.local_day(utc("2026-03-08T04:30:00Z")),
            date("2026-03-07")
        );
        assert_eq!(
            new_york.local_day(utc("2026-03-08T05:30:00Z")),
            date("2026-03-08")
        );
        assert_eq!(
            new_york.local_day(utc("2026-03-09T03:59:00Z")),
            date("2026-03-08")
        );
        assert_eq!(
            new_york.local_day(utc("2026-03-09T04:00:00Z")),
            date("2026-03-09")
        );
    }

    #[test]
    fn windows_resolve_to_the_buckets_they_sum() {
        let anchor = date("2026-11-26");
        assert_eq!(keys(&Window::Day(anchor).buckets()), ["d:2026-11-26"]);
        assert_eq!(keys(&Window::Week(anchor).buckets()), ["w:2026-W48"]);
        assert_eq!(keys(&Window::Month(anchor).buckets()), ["m:2026-11"]);
        assert_eq!(keys(&Window::Lifetime.buckets()), ["life"]);
        let rolling = Window::Rolling {
            days: 7,
            ending: date("2026-12-02"),
        }
        .buckets();
        assert_eq!(
            keys(&rolling),
            [
                "d:2026-11-26",
                "d:2026-11-27",
                "d:2026-11-28",
                "d:2026-11-29",
                "d:2026-11-30",
                "d:2026-12-01",
                "d:2026-12-02"
            ]
        );
        let ninety = Window::Rolling {
            days: 90,
            ending: anchor,
        }
        .buckets();
        assert_eq!(ninety.len(), 90);
        assert_eq!(ninety.first(), Some(&Bucket::Day(date("2026-08-29"))));
    }

    #[test]
    fn series_cover_the_buckets_containing_both_ends() {
        let points = |granularity, from, to| -> Vec<(String, String)> {
            series(granularity, date(from), date(to))
                .into_iter()
                .map(|(start, bucket)| (start.to_string(), bucket.to_string()))
                .collect()
        };
        assert_eq!(
            points(Granularity::Week, "2026-11-26", "2026-12-02"),
            [
                ("2026-11-23".to_owned(), "w:2026-W48".to_owned()),
                ("2026-11-30".to_owned(), "w:2026-W49".to_owned())
            ]
        );
        assert_eq!(
            points(Granularity::Month, "2026-11-30", "2027-01-01"),
            [
                ("2026-11-01".to_owned(), "m:2026-11".to_owned()),
                ("2026-12-01".to_owned(), "m:2026-12".to_owned()),
                ("2027-01-01".to_owned(), "m:2027-01".to_owned())
            ]
        );
        assert_eq!(
            points(Granularity::Day, "2026-11-26", "2026-11-28").len(),
            3
        );
        assert!(points(Granularity::Day, "2026-11-28", "2026-11-26").is_empty());
    }

    #[test]
    fn a_local_day_starts_at_its_first_valid_moment() {
        let moscow = Calendar::new(chrono_tz::Europe::Moscow);
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).expect("date");
        assert_eq!(moscow.start_of(day), utc("2026-12-01T21:00:00Z"));
        // Santiago skipped midnight on 2026-09-06: the day began at 01:00 local.
        let santiago = Calendar::new(chrono_tz::America::Santiago);
        let skipped = NaiveDate::from_ymd_opt(2026, 9, 6).expect("date");
        assert_eq!(santiago.local_day(santiago.start_of(skipped)), skipped);
        assert_eq!(santiago.start_of(skipped), utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn whole_days_are_the_floor_of_elapsed_time() {
        let enrolled = Utc
            .with_ymd_and_hms(2026, 11, 1, 23, 0, 0)
            .single()
            .expect("time");
        let next_morning = Utc
            .with_ymd_and_hms(2026, 11, 2, 8, 0, 0)
            .single()
            .expect("time");
        let a_day_later = Utc
            .with_ymd_and_hms(2026, 11, 2, 23, 0, 0)
            .single()
            .expect("time");
        assert_eq!(Calendar::whole_days(enrolled, next_morning), 0);
        assert_eq!(Calendar::whole_days(enrolled, a_day_later), 1);
        assert_eq!(Calendar::whole_days(a_day_later, enrolled), -1);
    }

    #[test]
    fn bucket_keys_parse_back() {
        let calendar = Calendar::new(chrono_tz::Europe::Moscow);
        let at = DateTime::from_timestamp(1_798_700_000, 0).expect("time");
        for bucket in calendar.buckets(at) {
            assert_eq!(Bucket::parse(&bucket.to_string()), Some(bucket));
        }
        assert_eq!(
            Bucket::parse("w:2026-W53").and_then(Bucket::first_day),
            NaiveDate::from_ymd_opt(2026, 12, 28)
        );
        assert_eq!(Bucket::parse("w:2025-W53"), None, "2025 has 52 ISO weeks");
        assert_eq!(Bucket::parse("m:2026-13"), None);
        assert_eq!(Bucket::parse("x:1"), None);
        let february = Bucket::parse("m:2028-02")
            .and_then(Bucket::days)
            .expect("days");
        assert_eq!(february.len(), 29, "a leap year");
        let week = Bucket::parse("w:2026-W53")
            .and_then(Bucket::days)
            .expect("days");
        assert_eq!(
            (week[0].to_string(), week[6].to_string(), week.len()),
            ("2026-12-28".into(), "2027-01-03".into(), 7)
        );
    }

    #[test]
    fn buckets_expire_by_granularity() {
        assert_eq!(
            Bucket::Day(date("2026-11-26")).retention(),
            Some(Duration::from_secs(8_640_000))
        );
        assert_eq!(Bucket::Lifetime.retention(), None);
    }
}
