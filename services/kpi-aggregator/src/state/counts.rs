//! Counters of one subject by bucket, held as plain integers: the unit every roll-up adds.
//!
//! A [`Counters`] is both a subject's numbers (a partner's own, a team's, a group's, the
//! tenant's) and a change of them: roll-ups add one to another. Buckets are compact: a local
//! day is its number of days since 1970-01-01, a week the day number of its Monday, a month
//! `year * 12 + month - 1`. Only non-zero buckets are kept.

use chrono::{Datelike as _, Days, NaiveDate};

use crate::calendar::{Bucket, DAY_RETENTION, MONTH_RETENTION, WEEK_RETENTION};
use crate::metric::Counter;

/// A local day of the tenant's calendar: days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalDay(pub i32);

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");

impl LocalDay {
    pub fn of(date: NaiveDate) -> Self {
        let days = date.signed_duration_since(EPOCH).num_days();
        // chrono's dates stay within ±262,143 years: their day numbers fit in an i32.
        Self(i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX }))
    }

    pub fn date(self) -> NaiveDate {
        let offset = Days::new(u64::from(self.0.unsigned_abs()));
        if self.0 >= 0 {
            EPOCH.checked_add_days(offset)
        } else {
            EPOCH.checked_sub_days(offset)
        }
        .unwrap_or(EPOCH)
    }

    /// The week key: the day number of the week's Monday (ISO weeks).
    pub fn week(self) -> i32 {
        let weekday = i32::try_from(self.date().weekday().num_days_from_monday()).unwrap_or(0);
        self.0 - weekday
    }

    /// The month key: `year * 12 + month - 1`.
    pub fn month(self) -> i32 {
        let date = self.date();
        date.year() * 12 + i32::try_from(date.month0()).unwrap_or(0)
    }
}

/// The numbers of every counter in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([i64; Counter::ALL.len()]);

impl Counts {
    pub fn get(&self, counter: Counter) -> i64 {
        self.0[counter as usize]
    }

    pub fn add(&mut self, counter: Counter, amount: i64) {
        self.0[counter as usize] += amount;
    }

    /// Adds `sign` times every number of `other`.
    pub fn add_all(&mut self, other: &Self, sign: i64) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += sign * theirs;
        }
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|value| *value == 0)
    }

    /// The stored form: a mask of the counters that are not zero (bit `i` for `Counter::ALL[i]`)
    /// and their numbers in `Counter` order. Most buckets hold one or two counters.
    pub fn sparse(&self) -> (u32, Vec<i64>) {
        let mut mask = 0;
        let mut values = Vec::new();
        for (index, value) in self.0.iter().enumerate() {
            if *value != 0 {
                mask |= 1 << index;
                values.push(*value);
            }
        }
        (mask, values)
    }

    /// The inverse of [`Counts::sparse`]; `None` when the mask names a counter that does not
    /// exist or the values do not match it.
    pub fn from_sparse(mask: u32, values: &[i64]) -> Option<Self> {
        if mask >> Counter::ALL.len() != 0 || mask.count_ones() as usize != values.len() {
            return None;
        }
        let mut counts = Self::default();
        let set = (0..Counter::ALL.len()).filter(|index| mask & (1 << index) != 0);
        for (index, value) in set.zip(values) {
            counts.0[index] = *value;
        }
        Some(counts)
    }

    /// The numbers in `Counter` order, every one (the stored form of version 1, read still).
    pub fn from_values(values: &[i64]) -> Option<Self> {
        let mut counts = Self::default();
        counts.0.get_mut(..values.len())?.copy_from_slice(values);
        Some(counts)
    }

    /// Every counter with its number, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, i64)> + '_ {
        Counter::ALL
            .into_iter()
            .map(|counter| (counter, self.get(counter)))
    }
}

/// The buckets of one granularity with numbers, by key, in key order: a sorted vector, which
/// for the few buckets one subject has is far smaller than a map (a map's first node holds
/// room for eleven).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets(Vec<(i32, Counts)>);

impl Buckets {
    pub fn get(&self, key: &i32) -> Option<&Counts> {
        let at = self
            .0
            .binary_search_by_key(key, |(bucket, _)| *bucket)
            .ok()?;
        Some(&self.0[at].1)
    }

    /// Adds `sign` times `counts` to the bucket `key`; a bucket back at zero goes.
    pub fn add_all(&mut self, key: i32, counts: &Counts, sign: i64) {
        match self.0.binary_search_by_key(&key, |(bucket, _)| *bucket) {
            Ok(at) => {
                self.0[at].1.add_all(counts, sign);
                if self.0[at].1.is_zero() {
                    self.0.remove(at);
                }
            }
            Err(at) => {
                let mut new = Counts::default();
                new.add_all(counts, sign);
                if !new.is_zero() {
                    self.0.insert(at, (key, new));
                }
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&i32, &Counts)> {
        self.0.iter().map(|(key, counts)| (key, counts))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&i32, &Counts) -> bool) {
        self.0.retain(|(key, counts)| keep(key, counts));
    }
}

impl FromIterator<(i32, Counts)> for Buckets {
    fn from_iter<I: IntoIterator<Item = (i32, Counts)>>(buckets: I) -> Self {
        let mut all: Vec<(i32, Counts)> = buckets.into_iter().collect();
        all.sort_by_key(|(key, _)| *key);
        all.dedup_by_key(|(key, _)| *key);
        Self(all)
    }
}

/// A subject's counters in every bucket it has numbers in, or a change of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub life: Counts,
    pub days: Buckets,
    pub weeks: Buckets,
    pub months: Buckets,
}

impl Counters {
    /// Counts `amount` of `counter` in the day, week, month and lifetime of `day`.
    pub fn add(&mut self, day: LocalDay, counter: Counter, amount: i64) {
        if amount == 0 {
            return;
        }
        self.life.add(counter, amount);
        let mut change = Counts::default();
        change.add(counter, amount);
        for (buckets, key) in [
            (&mut self.days, day.0),
            (&mut self.weeks, day.week()),
            (&mut self.months, day.month()),
        ] {
            buckets.add_all(key, &change, 1);
        }
    }

    /// Adds `sign` times every number of `other` (a roll-up, or a team moving away).
    pub fn add_all(&mut self, other: &Self, sign: i64) {
        self.life.add_all(&other.life, sign);
        for (buckets, theirs) in [
            (&mut self.days, &other.days),
            (&mut self.weeks, &other.weeks),
            (&mut self.months, &other.months),
        ] {
            for (key, counts) in theirs.iter() {
                buckets.add_all(*key, counts, sign);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.life.is_zero()
            && self.days.is_empty()
            && self.weeks.is_empty()
            && self.months.is_empty()
    }

    /// The numbers of one bucket (zeros for a bucket without any).
    pub fn bucket(&self, bucket: Bucket) -> Counts {
        let found = match bucket {
            Bucket::Lifetime => return self.life,
            Bucket::Day(date) => self.days.get(&LocalDay::of(date).0),
            Bucket::Week { year, week } => {
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
                    .and_then(|monday| self.weeks.get(&LocalDay::of(monday).0))
            }
            Bucket::Month { year, month } => (1..=12)
                .contains(&month)
                .then(|| year * 12 + i32::try_from(month).unwrap_or(1) - 1)
                .and_then(|key| self.months.get(&key)),
        };
        found.copied().unwrap_or_default()
    }

    /// The sum of `buckets` (a window).
    pub fn sum(&self, buckets: &[Bucket]) -> Counts {
        let mut total = Counts::default();
        for bucket in buckets {
            total.add_all(&self.bucket(*bucket), 1);
        }
        total
    }

    /// Every bucket with numbers, lifetime first.
    pub fn buckets(&self) -> impl Iterator<Item = (Bucket, &Counts)> {
        let days = self
            .days
            .iter()
            .map(|(day, counts)| (Bucket::Day(LocalDay(*day).date()), counts));
        let weeks = self.weeks.iter().map(|(monday, counts)| {
            let week = LocalDay(*monday).date().iso_week();
            let bucket = Bucket::Week {
                year: week.year(),
                week: week.week(),
            };
            (bucket, counts)
        });
        let months = self.months.iter().map(|(month, counts)| {
            let bucket = Bucket::Month {
                year: month.div_euclid(12),
                month: u32::try_from(month.rem_euclid(12) + 1).unwrap_or(1),
            };
            (bucket, counts)
        });
        std::iter::once((Bucket::Lifetime, &self.life))
            .filter(|(_, counts)| !counts.is_zero())
            .chain(days)
            .chain(weeks)
            .chain(months)
    }

    /// Forgets the buckets past their retention on `today` (the last 100 local days, the weeks
    /// of the last 400 days, the months of the last 1,200): no window of the API reads them.
    pub fn prune(&mut self, today: LocalDay) {
        let oldest = |retention: std::time::Duration| {
            today.0 - i32::try_from(retention.as_secs() / 86_400).unwrap_or(i32::MAX)
        };
        let oldest_month = LocalDay(oldest(MONTH_RETENTION)).month();
        self.days.retain(|day, _| *day > oldest(DAY_RETENTION));
        self.weeks
            .retain(|monday, _| *monday + 6 >= oldest(WEEK_RETENTION));
        self.months.retain(|month, _| *month >= oldest_month);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> LocalDay {
        LocalDay::of(NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date"))
    }

    #[test]
    fn local_days_know_their_week_and_month() {
        let thursday = day("2026-12-03");
        assert_eq!(thursday.date().to_string(), "2026-12-03");
        assert_eq!(LocalDay(thursday.week()).date().to_string(), "2026-11-30");
        assert_eq!(thursday.month(), 2026 * 12 + 11);
        assert_eq!(day("1969-12-31").0, -1);
        assert_eq!(day("1969-12-31").date().to_string(), "1969-12-31");
        // 1970-01-01 was a Thursday: its week began on Monday 1969-12-29.
        assert_eq!(LocalDay(0).week(), -3);
    }

    #[test]
    fn a_change_counts_in_day_week_month_and_lifetime() {
        let mut counters = Counters::default();
        counters.add(day("2026-12-03"), Counter::SalesVolume, 4950);
        counters.add(day("2026-12-01"), Counter::SalesVolume, 50);
        let read = |bucket| counters.bucket(bucket).get(Counter::SalesVolume);
        assert_eq!(read(Bucket::Day(day("2026-12-03").date())), 4950);
        assert_eq!(
            read(Bucket::Week {
                year: 2026,
                week: 49
            }),
            5000
        );
        assert_eq!(
            read(Bucket::Month {
                year: 2026,
                month: 12
            }),
            5000
        );
        assert_eq!(
            read(Bucket::Month {
                year: 2026,
                month: 11
            }),
            0
        );
        assert_eq!(read(Bucket::Lifetime), 5000);
    }

    #[test]
    fn buckets_are_named_as_the_calendar_names_them() {
        let mut counters = Counters::default();
        counters.add(day("2026-12-31"), Counter::Orders, 1);
        let named: Vec<String> = counters
            .buckets()
            .map(|(bucket, _)| bucket.to_string())
            .collect();
        assert_eq!(
            named,
            vec!["life", "d:2026-12-31", "w:2026-W53", "m:2026-12"]
        );
        for (bucket, counts) in counters.buckets() {
            assert_eq!(counters.bucket(bucket), *counts);
        }
    }

    #[test]
    fn buckets_that_return_to_zero_disappear() {
        let mut counters = Counters::default();
        counters.add(day("2026-12-03"), Counter::Orders, 1);
        let mut undo = Counters::default();
        undo.add(day("2026-12-03"), Counter::Orders, -1);
        counters.add_all(&undo, 1);
        assert!(counters.is_empty());
        counters.add(day("2026-12-03"), Counter::Orders, 2);
        counters.add_all(&counters.clone(), -1);
        assert!(counters.is_empty());
    }

    #[test]
    fn stored_counts_keep_only_what_is_not_zero() {
        let mut counts = Counts::default();
        assert_eq!(counts.sparse(), (0, vec![]));
        counts.add(Counter::SalesVolume, 7);
        counts.add(Counter::ActiveDays, 1);
        let (mask, values) = counts.sparse();
        assert_eq!(mask, 1 << 1 | 1 << (Counter::ActiveDays as usize));
        assert_eq!(values, vec![7, 1]);
        assert_eq!(Counts::from_sparse(mask, &values), Some(counts));
        assert_eq!(Counts::from_sparse(mask, &[7]), None);
        assert_eq!(Counts::from_sparse(1 << 12, &[1]), None);
        assert_eq!(
            Counts::from_values(&[0, 7]).map(|read| read.get(Counter::SalesVolume)),
            Some(7)
        );
        assert_eq!(Counts::from_values(&[0; 13]), None);
    }

    #[test]
    fn pruning_keeps_what_windows_still_read() {
        let mut counters = Counters::default();
        let today = day("2026-12-03");
        counters.add(today, Counter::Orders, 1);
        counters.add(LocalDay(today.0 - 99), Counter::Orders, 1);
        counters.add(LocalDay(today.0 - 100), Counter::Orders, 1);
        counters.add(LocalDay(today.0 - 1300), Counter::Orders, 1);
        counters.prune(today);
        assert_eq!(counters.days.len(), 2);
        // 99 and 100 days ago share a week and a month; 1,300 days ago is past every retention.
        assert_eq!(counters.weeks.len(), 2);
        assert_eq!(counters.months.len(), 2);
        assert_eq!(
            counters.life.get(Counter::Orders),
            4,
            "lifetime is never pruned"
        );
    }

    /// `Bucket::expired` (what the KPI updates topic tombstones) names exactly the buckets
    /// pruning forgets, on every day around each retention.
    #[test]
    fn expired_buckets_are_the_pruned_ones() {
        let first = day("2023-01-01");
        let mut counters = Counters::default();
        for offset in 0..1400 {
            counters.add(LocalDay(first.0 + offset), Counter::Orders, 1);
        }
        let written: Vec<Bucket> = counters.buckets().map(|(bucket, _)| bucket).collect();
        for offset in (90..110)
            .chain(395..415)
            .chain(1190..1240)
            .chain(1380..1420)
        {
            let today = LocalDay(first.0 + offset);
            let mut pruned = Counters::default();
            for offset in 0..1400 {
                pruned.add(LocalDay(first.0 + offset), Counter::Orders, 1);
            }
            pruned.prune(today);
            let kept: Vec<Bucket> = pruned.buckets().map(|(bucket, _)| bucket).collect();
            let live: Vec<Bucket> = written
                .iter()
                .copied()
                .filter(|bucket| !bucket.expired(today.date()))
                .collect();
            assert_eq!(kept, live, "on {}", today.date());
        }
    }
}
