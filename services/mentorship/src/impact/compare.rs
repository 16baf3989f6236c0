//! Two cohorts' outcomes side by side (ComparePrograms): medians by Kaplan–Meier, proportions
//! with Wilson intervals (differences by Newcombe's hybrid score), means with a seeded
//! bootstrap — and what it means, said in English and Russian. Pure: no IO.

use mentorstream_proto::mentorship::v1::{Estimate, Outcome, OutcomeComparison};

use crate::impact::outcomes::MenteeOutcome;
use crate::impact::stats::{self, Interval, Z95};

/// The fewest mentees per side an outcome is compared on.
pub const MIN_COHORT: u32 = 10;
/// Below this many per side the summary calls the sample small.
pub const SMALL_COHORT: u32 = 30;
pub const DEFAULT_RESAMPLES: u32 = 2_000;
const LEVEL: f64 = 0.95;

/// How the bootstrap runs.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    pub seed: u64,
    pub resamples: u32,
}

/// How an outcome is measured.
#[derive(Debug, Clone, Copy)]
enum Measure {
    /// Kaplan–Meier median of the time to the first sale.
    Median,
    /// A yes/no per mentee.
    Share(fn(&MenteeOutcome) -> Option<bool>),
    /// A number per mentee.
    Mean(fn(&MenteeOutcome) -> Option<f64>),
}

/// Every outcome, in the order reports show them.
fn outcomes() -> [(Outcome, Measure); 14] {
    use Measure::{Mean, Median, Share};
    [
        (Outcome::DaysToFirstSale, Median),
        (Outcome::FirstSale30d, Share(|m| m.first_sale_within(30))),
        (Outcome::Retention30d, Share(|m| m.retained(30))),
        (Outcome::Retention60d, Share(|m| m.retained(60))),
        (Outcome::Retention90d, Share(|m| m.retained(90))),
        (
            Outcome::SalesVolume30d,
            Mean(|m| m.first_days(30, |d| d.sales_volume)),
        ),
        (
            Outcome::SalesVolume60d,
            Mean(|m| m.first_days(60, |d| d.sales_volume)),
        ),
        (
            Outcome::SalesVolume90d,
            Mean(|m| m.first_days(90, |d| d.sales_volume)),
        ),
        (
            Outcome::Recruits30d,
            Mean(|m| m.first_days(30, |d| d.recruits)),
        ),
        (
            Outcome::Recruits60d,
            Mean(|m| m.first_days(60, |d| d.recruits)),
        ),
        (
            Outcome::Recruits90d,
            Mean(|m| m.first_days(90, |d| d.recruits)),
        ),
        (Outcome::ModulesCompleted, Mean(MenteeOutcome::modules)),
        (
            Outcome::SessionsAttended,
            Mean(|m| Some(f64::from(m.sessions_attended))),
        ),
        (Outcome::Feedback, Mean(MenteeOutcome::mean_rating)),
    ]
}

fn estimate(value: Option<f64>, interval: Option<Interval>, n: usize) -> Estimate {
    Estimate {
        value,
        low: interval.map(|interval| interval.low),
        high: interval.map(|interval| interval.high),
        n: u32::try_from(n).unwrap_or(u32::MAX),
    }
}

/// Every outcome of cohort `a` against cohort `b`. Each outcome gets its own bootstrap stream
/// (`seed` plus its number), so adding an outcome never changes another's interval.
pub fn compare(
    a: &[MenteeOutcome],
    b: &[MenteeOutcome],
    bootstrap: Bootstrap,
) -> Vec<OutcomeComparison> {
    outcomes()
        .into_iter()
        .map(|(outcome, measure)| {
            let seed = bootstrap.seed.wrapping_add(outcome as u64);
            let run = Bootstrap { seed, ..bootstrap };
            let (a, b, difference) = match measure {
                Measure::Median => medians(a, b, run),
                Measure::Share(share) => shares(a, b, share),
                Measure::Mean(value) => means(a, b, value, run),
            };
            OutcomeComparison {
                outcome: outcome.into(),
                enough_data: a.n >= MIN_COHORT && b.n >= MIN_COHORT,
                a: Some(a),
                b: Some(b),
                difference: Some(difference),
            }
        })
        .collect()
}

/// The Kaplan–Meier median of a resample, +∞ when it is not reached: a resample where fewer
/// than half sold is a slow one, and must pull the interval up, not drop out of it.
fn median_or_infinity(observations: &[stats::Observation]) -> Option<f64> {
    Some(stats::km_median(observations).unwrap_or(f64::INFINITY))
}

/// An estimate whose interval end is infinite or undefined (resampled medians never reached)
/// leaves that end open.
fn finite_ends(estimate: Estimate) -> Estimate {
    let finite = |end: Option<f64>| end.filter(|end| end.is_finite());
    Estimate {
        low: finite(estimate.low),
        high: finite(estimate.high),
        ..estimate
    }
}

fn median_of(cohort: &[MenteeOutcome], bootstrap: Bootstrap) -> Estimate {
    let observations: Vec<stats::Observation> = cohort
        .iter()
        .map(MenteeOutcome::time_to_first_sale)
        .collect();
    let interval = stats::bootstrap(
        &observations,
        median_or_infinity,
        bootstrap.resamples,
        bootstrap.seed,
        LEVEL,
    );
    finite_ends(estimate(
        stats::km_median(&observations),
        interval,
        observations.len(),
    ))
}

fn medians(
    a: &[MenteeOutcome],
    b: &[MenteeOutcome],
    bootstrap: Bootstrap,
) -> (Estimate, Estimate, Estimate) {
    let observations = |cohort: &[MenteeOutcome]| -> Vec<stats::Observation> {
        cohort
            .iter()
            .map(MenteeOutcome::time_to_first_sale)
            .collect()
    };
    let (first, second) = (median_of(a, bootstrap), median_of(b, bootstrap));
    let value = first.value.zip(second.value).map(|(x, y)| x - y);
    // A round where neither resample reaches its median (∞ − ∞) is skipped.
    let interval = stats::bootstrap_difference(
        &observations(a),
        &observations(b),
        median_or_infinity,
        bootstrap.resamples,
        bootstrap.seed,
        LEVEL,
    );
    let n = first.n.min(second.n) as usize;
    let difference = estimate(value, value.and(interval), n);
    (first, second, finite_ends(difference))
}

/// (successes, subjects) of a yes/no outcome over the mentees it is known for.
fn tally(cohort: &[MenteeOutcome], share: fn(&MenteeOutcome) -> Option<bool>) -> (u64, u64) {
    cohort
        .iter()
        .filter_map(share)
        .fold((0, 0), |(yes, n), known| (yes + u64::from(known), n + 1))
}

fn share_estimate(yes: u64, n: u64) -> Estimate {
    let value = (n > 0).then(|| yes as f64 / n as f64);
    estimate(value, stats::wilson(yes, n, Z95), n as usize)
}

fn shares(
    a: &[MenteeOutcome],
    b: &[MenteeOutcome],
    share: fn(&MenteeOutcome) -> Option<bool>,
) -> (Estimate, Estimate, Estimate) {
    let ((yes_a, n_a), (yes_b, n_b)) = (tally(a, share), tally(b, share));
    let (first, second) = (share_estimate(yes_a, n_a), share_estimate(yes_b, n_b));
    let difference = match (first.value, second.value) {
        (Some(p1), Some(p2)) => {
            let interval = stats::newcombe(yes_a, n_a, yes_b, n_b, Z95);
            estimate(Some(p1 - p2), interval, n_a.min(n_b) as usize)
        }
        _ => estimate(None, None, n_a.min(n_b) as usize),
    };
    (first, second, difference)
}

fn means(
    a: &[MenteeOutcome],
    b: &[MenteeOutcome],
    value: fn(&MenteeOutcome) -> Option<f64>,
    bootstrap: Bootstrap,
) -> (Estimate, Estimate, Estimate) {
    let values =
        |cohort: &[MenteeOutcome]| -> Vec<f64> { cohort.iter().filter_map(value).collect() };
    let (a, b) = (values(a), values(b));
    let mean = |sample: &[f64]| stats::mean(sample);
    let of = |sample: &[f64]| {
        let interval = stats::bootstrap(sample, mean, bootstrap.resamples, bootstrap.seed, LEVEL);
        estimate(mean(sample), interval, sample.len())
    };
    let (first, second) = (of(&a), of(&b));
    let difference = first.value.zip(second.value).map(|(x, y)| x - y);
    let interval =
        stats::bootstrap_difference(&a, &b, mean, bootstrap.resamples, bootstrap.seed, LEVEL);
    let n = a.len().min(b.len());
    (
        first,
        second,
        estimate(difference, difference.and(interval), n),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impact::outcomes::Day;

    fn mentee(index: usize, first_sale: Option<u32>, age: u32) -> MenteeOutcome {
        MenteeOutcome {
            partner_id: format!("p-{index}"),
            today: age,
            age_days: age,
            days_to_first_sale: first_sale,
            days: vec![Day::default(); (age.min(90) + 1) as usize],
            known_from: 0,
            sessions_attended: 2,
            ratings: vec![5],
        }
    }

    fn cohort(first_sales: &[Option<u32>], age: u32) -> Vec<MenteeOutcome> {
        first_sales
            .iter()
            .enumerate()
            .map(|(index, sale)| mentee(index, *sale, age))
            .collect()
    }

    fn outcome(all: &[OutcomeComparison], which: Outcome) -> &OutcomeComparison {
        all.iter()
            .find(|comparison| comparison.outcome == which as i32)
            .expect("every outcome is compared")
    }

    const RUN: Bootstrap = Bootstrap {
        seed: 7,
        resamples: 500,
    };

    #[test]
    fn sooner_first_sales_give_a_negative_median_difference() {
        // a: everyone sold on day 2; b: everyone on day 9 (ages 40: all known).
        let a = cohort(&[Some(2); 12], 40);
        let b = cohort(&[Some(9); 12], 40);
        let all = compare(&a, &b, RUN);
        let median = outcome(&all, Outcome::DaysToFirstSale);
        assert!(median.enough_data);
        let difference = median.difference.as_ref().expect("difference");
        assert_eq!(difference.value, Some(-7.0));
        assert_eq!((difference.low, difference.high), (Some(-7.0), Some(-7.0)));
        let share = outcome(&all, Outcome::FirstSale30d);
        assert_eq!(share.a.as_ref().and_then(|e| e.value), Some(1.0));
    }

    #[test]
    fn tiny_cohorts_are_not_enough_and_still_shown() {
        let a = cohort(&[Some(2), Some(3)], 40);
        let b = cohort(&[Some(9); 12], 40);
        let all = compare(&a, &b, RUN);
        let median = outcome(&all, Outcome::DaysToFirstSale);
        assert!(!median.enough_data);
        assert_eq!(median.a.as_ref().map(|e| e.n), Some(2));
        assert_eq!(median.a.as_ref().and_then(|e| e.value), Some(2.0));
    }

    #[test]
    fn young_mentees_do_not_count_for_outcomes_they_have_not_reached() {
        let a = cohort(&[None; 12], 20);
        let b = cohort(&[None; 12], 20);
        let all = compare(&a, &b, RUN);
        let retention = outcome(&all, Outcome::Retention30d);
        assert_eq!(retention.a.as_ref().map(|e| e.n), Some(0));
        assert!(!retention.enough_data);
        // Censored at 20 days, nobody sold: no median.
        let median = outcome(&all, Outcome::DaysToFirstSale);
        assert_eq!(median.a.as_ref().and_then(|e| e.value), None);
        assert_eq!(median.difference.as_ref().and_then(|e| e.value), None);
    }

    #[test]
    fn resamples_without_a_median_pull_the_interval_open_instead_of_dropping_out() {
        // Half sold on day 1, half never (censored at 40): the median is 1, but about half the
        // resamples have fewer than half sellers — their median is ∞, so the upper end is open.
        let mut sales = vec![Some(1); 6];
        sales.extend([None; 6]);
        let a = cohort(&sales, 40);
        let b = cohort(&[Some(1); 12], 40);
        let all = compare(&a, &b, RUN);
        let median = outcome(&all, Outcome::DaysToFirstSale);
        let a = median.a.expect("a");
        assert_eq!((a.value, a.low, a.high), (Some(1.0), Some(1.0), None));
        let difference = median.difference.expect("difference");
        assert_eq!((difference.value, difference.high), (Some(0.0), None));
    }

    #[test]
    fn the_same_seed_gives_the_same_answer() {
        let a = cohort(&[Some(1), Some(4), None, Some(6), Some(2), Some(8)], 40);
        let b = cohort(&[Some(5), None, Some(9), Some(3), Some(12), None], 40);
        assert_eq!(compare(&a, &b, RUN), compare(&a, &b, RUN));
    }
}
