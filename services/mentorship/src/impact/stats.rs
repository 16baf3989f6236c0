//! The statistics behind comparing mentoring programmes: how sure we are of a rate (Wilson
//! interval), how long until an event when some subjects have not had it yet (Kaplan–Meier),
//! how sure we are of any other statistic or of a difference between two programmes
//! (percentile bootstrap), and how far to trust a small programme's mean (shrinkage toward a
//! prior).
//!
//! Everything is pure and deterministic: the bootstrap draws from a hand-written, seeded
//! SplitMix64 stream, so a report computed twice, or after a dependency upgrade, gives the same
//! numbers.

/// Two-sided 95 % normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Survival within this of one half counts as one half, so that an exact 0.5 reached through
/// a product of fractions is not missed by rounding.
const HALF_TOLERANCE: f64 = 1e-12;

/// A closed interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// Wilson score interval for `successes` of `n` at normal quantile `z`; None when n == 0 or
/// when `successes > n`. The ends are clamped to `[0, 1]`, and are exactly 0 for no successes
/// and exactly 1 for all successes.
pub fn wilson(successes: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 || successes > n {
        return None;
    }
    let trials = n as f64;
    let p = successes as f64 / trials;
    let z2 = z * z;
    let denominator = 1.0 + z2 / trials;
    let center = (p + z2 / (2.0 * trials)) / denominator;
    let half =
        z.abs() / denominator * (p * (1.0 - p) / trials + z2 / (4.0 * trials * trials)).sqrt();
    let low = if successes == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if successes == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Some(Interval { low, high })
}

/// Newcombe's hybrid score interval (method 10, Newcombe 1998) for the difference of two
/// proportions `x1/n1 − x2/n2`, built from their Wilson intervals; None when either n is 0.
pub fn newcombe(x1: u64, n1: u64, x2: u64, n2: u64, z: f64) -> Option<Interval> {
    let (first, second) = (wilson(x1, n1, z)?, wilson(x2, n2, z)?);
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let difference = p1 - p2;
    Some(Interval {
        low: difference - ((p1 - first.low).powi(2) + (second.high - p2).powi(2)).sqrt(),
        high: difference + ((first.high - p1).powi(2) + (p2 - second.low).powi(2)).sqrt(),
    })
}

/// One subject's time to an event in days: `event == false` means censored at `time`
/// (not happened yet when observation ended).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Days from the start of observation to the event or to the censoring.
    pub time: f64,
    /// Whether the event happened at `time` (false: censored then).
    pub event: bool,
}

/// Kaplan–Meier survival curve: one step (time, survival after that time) per distinct event
/// time, ascending. Convention: at a tied time, events happen before censorings (a subject
/// censored at t is at risk at t). Observations with a NaN time are ignored.
pub fn kaplan_meier(observations: &[Observation]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<Observation> = observations
        .iter()
        .copied()
        .filter(|observation| !observation.time.is_nan())
        .collect();
    sorted.sort_by(|a, b| a.time.total_cmp(&b.time));
    let mut curve = Vec::new();
    let mut survival = 1.0;
    let mut rest = sorted.as_slice();
    while let Some(first) = rest.first() {
        let tied = rest.iter().take_while(|o| o.time == first.time).count();
        let at_risk = rest.len();
        let events = rest[..tied].iter().filter(|o| o.event).count();
        if events > 0 {
            survival = survival * (at_risk - events) as f64 / at_risk as f64;
            curve.push((first.time, survival));
        }
        rest = &rest[tied..];
    }
    curve
}

/// Kaplan–Meier median: the smallest event time at which survival is <= 0.5; None when the
/// curve never reaches 0.5 (fewer than half have had the event, accounting for censoring).
pub fn km_median(observations: &[Observation]) -> Option<f64> {
    kaplan_meier(observations)
        .into_iter()
        .find(|&(_, survival)| survival <= 0.5 + HALF_TOLERANCE)
        .map(|(time, _)| time)
}

/// A seeded, portable random stream: SplitMix64 (Steele, Lea, Flood 2014). Hand-written on
/// purpose: a reproducible report must not change with a crate upgrade, and the algorithm is
/// short enough to state and to re-implement in a test.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below `n` (n > 0; 0 is returned for n == 0) by Lemire's multiply-shift:
    /// the high 64 bits of `next_u64() * n`.
    pub fn below(&mut self, n: usize) -> usize {
        let wide = u128::from(self.next_u64()) * n as u128;
        // The high half is below `n`, so it fits in a usize.
        (wide >> 64) as usize
    }
}

/// Refills `into` with `from.len()` draws with replacement from `from`.
fn resample<T: Copy>(random: &mut SplitMix64, from: &[T], into: &mut Vec<T>) {
    into.clear();
    into.extend((0..from.len()).map(|_| from[random.below(from.len())]));
}

/// Quantile `q` of ascending `sorted` (non-empty) by linear interpolation between order
/// statistics (Hyndman–Fan type 7, numpy's default). Infinite values (a statistic that does
/// not exist in a resample, counted as ∞) stay infinite instead of turning into NaN.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let position = (sorted.len().checked_sub(1)? as f64) * q;
    let floor = position.floor();
    let index = floor as usize;
    let below = *sorted.get(index)?;
    Some(match sorted.get(index + 1) {
        Some(&above) if position > floor && above != below => {
            below + (position - floor) * (above - below)
        }
        _ => below,
    })
}

/// The central `level` interval of `values`, or None when fewer than half of `resamples`
/// rounds gave a value or `level` is not strictly between 0 and 1.
fn percentile_interval(mut values: Vec<f64>, resamples: u32, level: f64) -> Option<Interval> {
    let level_valid = level > 0.0 && level < 1.0;
    if !level_valid || values.is_empty() || (values.len() as u64) * 2 < u64::from(resamples) {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Interval {
        low: quantile(&values, (1.0 - level) / 2.0)?,
        high: quantile(&values, (1.0 + level) / 2.0)?,
    })
}

/// Percentile bootstrap interval (level e.g. 0.95) of `statistic` over `resamples` resamples
/// with replacement of `sample`, drawn from `SplitMix64::new(seed)`: each resample draws
/// `sample.len()` indices with `below(len)` in order. Resamples for which `statistic` returns
/// None (or NaN) are skipped. The ends are the (1-level)/2 and (1+level)/2 quantiles of the
/// collected statistics by linear interpolation between order statistics (numpy's default).
/// None when the sample is empty, fewer than half the resamples gave a value, or `level` is
/// not strictly between 0 and 1.
pub fn bootstrap<T: Copy>(
    sample: &[T],
    statistic: impl Fn(&[T]) -> Option<f64>,
    resamples: u32,
    seed: u64,
    level: f64,
) -> Option<Interval> {
    if sample.is_empty() {
        return None;
    }
    let mut random = SplitMix64::new(seed);
    let mut drawn = Vec::with_capacity(sample.len());
    let mut values = Vec::new();
    for _ in 0..resamples {
        resample(&mut random, sample, &mut drawn);
        values.extend(statistic(&drawn).filter(|value| !value.is_nan()));
    }
    percentile_interval(values, resamples, level)
}

/// Percentile bootstrap interval of statistic(a) - statistic(b): each round resamples `a` then
/// `b` (in that order, from one SplitMix64 stream seeded with `seed`), skipping rounds where
/// either statistic is None (or the difference is NaN); same quantile rule and same None rule
/// as [`bootstrap`], and None when either sample is empty.
pub fn bootstrap_difference<T: Copy>(
    a: &[T],
    b: &[T],
    statistic: impl Fn(&[T]) -> Option<f64>,
    resamples: u32,
    seed: u64,
    level: f64,
) -> Option<Interval> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut random = SplitMix64::new(seed);
    let (mut drawn_a, mut drawn_b) = (Vec::with_capacity(a.len()), Vec::with_capacity(b.len()));
    let mut values = Vec::new();
    for _ in 0..resamples {
        resample(&mut random, a, &mut drawn_a);
        resample(&mut random, b, &mut drawn_b);
        if let (Some(x), Some(y)) = (statistic(&drawn_a), statistic(&drawn_b)) {
            let difference = x - y;
            if !difference.is_nan() {
                values.push(difference);
            }
        }
    }
    percentile_interval(values, resamples, level)
}

/// Arithmetic mean; None for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Shrinkage toward a prior (empirical-Bayes / credibility weighting):
/// (n * mean + strength * prior) / (n + strength). With n <= 0 (no data) it is the prior.
/// `strength` is the number of pseudo-observations the prior is worth.
pub fn shrink(mean: f64, n: f64, prior: f64, strength: f64) -> f64 {
    let weight = n + strength;
    if n <= 0.0 || weight <= 0.0 {
        return prior;
    }
    (n * mean + strength * prior) / weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    fn close_interval(actual: Option<Interval>, low: f64, high: f64) {
        let interval = actual.expect("an interval");
        close(interval.low, low);
        close(interval.high, high);
    }

    fn cohort(rows: &[(f64, bool)]) -> Vec<Observation> {
        rows.iter()
            .map(|&(time, event)| Observation { time, event })
            .collect()
    }

    fn assert_curve(actual: &[(f64, f64)], expected: &[(f64, f64)]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (&(time, survival), &(want_time, want_survival)) in actual.iter().zip(expected) {
            assert_eq!(time, want_time);
            close(survival, want_survival);
        }
    }

    // Expected values: python3 (standard library) from the Wilson formula:
    //   p=k/n; d=1+z*z/n; c=(p+z*z/(2n))/d; h=z/d*sqrt(p(1-p)/n+z*z/(4n*n)); (c-h, c+h)
    #[test]
    fn wilson_matches_the_formula_and_stays_in_the_unit_interval() {
        close_interval(wilson(8, 10, Z95), 0.4901624715366418, 0.9433178485456248);
        close_interval(wilson(1, 3, Z95), 0.06149194472039615, 0.7923403991979523);
        let zero = wilson(0, 10, Z95).expect("an interval");
        assert_eq!(zero.low, 0.0);
        close(zero.high, 0.2775327998628892);
        let all = wilson(10, 10, Z95).expect("an interval");
        close(all.low, 0.7224672001371107);
        assert!((all.high - 1.0).abs() < 1e-12);
        assert_eq!(wilson(0, 0, Z95), None);
        assert_eq!(wilson(11, 10, Z95), None);
    }

    // By hand (checked with fractions.Fraction in python3):
    //   time  at risk  events  S
    //   2     10       1       9/10           = 0.9
    //   3      9       1       0.9 * 8/9      = 0.8      (3 censored is at risk at 3)
    //   5      7       1       0.8 * 6/7      = 24/35
    //   7      5       1       24/35 * 4/5    = 96/175
    //   10     3       1       96/175 * 2/3   = 64/175   (first S <= 0.5: median 10)
    //   14     1       1       0
    #[test]
    fn kaplan_meier_steps_down_at_event_times_with_censoring() {
        let observations = cohort(&[
            (2.0, true),
            (3.0, false),
            (3.0, true),
            (5.0, true),
            (5.0, false),
            (7.0, true),
            (8.0, false),
            (10.0, true),
            (12.0, false),
            (14.0, true),
        ]);
        let expected = [
            (2.0, 0.9),
            (3.0, 0.8),
            (5.0, 24.0 / 35.0),
            (7.0, 96.0 / 175.0),
            (10.0, 64.0 / 175.0),
            (14.0, 0.0),
        ];
        assert_curve(&kaplan_meier(&observations), &expected);
        // Order of the input does not matter.
        let reversed: Vec<Observation> = observations.iter().rev().copied().collect();
        assert_curve(&kaplan_meier(&reversed), &expected);
        assert_eq!(km_median(&observations), Some(10.0));
    }

    #[test]
    fn the_median_is_none_until_half_have_had_the_event() {
        // By hand: at 4, 6 at risk, S = 5/6; at 9, 4 at risk, S = 5/6 * 3/4 = 5/8 > 0.5.
        let few = cohort(&[
            (4.0, true),
            (6.0, false),
            (9.0, true),
            (9.0, false),
            (11.0, false),
            (15.0, false),
        ]);
        assert_curve(&kaplan_meier(&few), &[(4.0, 5.0 / 6.0), (9.0, 0.625)]);
        assert_eq!(km_median(&few), None);

        let censored = cohort(&[(3.0, false), (5.0, false)]);
        assert!(kaplan_meier(&censored).is_empty());
        assert_eq!(km_median(&censored), None);
        assert_eq!(km_median(&[]), None);
    }

    #[test]
    fn the_median_is_the_time_survival_reaches_exactly_one_half() {
        // By hand: at 1, 6 at risk, S = 5/6; at 2, 5 at risk with 2 events, S = 5/6 * 3/5 = 1/2;
        // at 4, 2 at risk, S = 1/4.
        let observations = cohort(&[
            (1.0, true),
            (2.0, true),
            (2.0, true),
            (3.0, false),
            (4.0, true),
            (5.0, false),
        ]);
        assert_curve(
            &kaplan_meier(&observations),
            &[(1.0, 5.0 / 6.0), (2.0, 0.5), (4.0, 0.25)],
        );
        assert_eq!(km_median(&observations), Some(2.0));
    }

    // The published splitmix64 test vector for seed 1234567, reproduced with a python3
    // re-implementation (64-bit masked arithmetic) of the algorithm.
    #[test]
    fn splitmix64_matches_the_reference_vector() {
        let mut random = SplitMix64::new(1_234_567);
        let outputs: Vec<u64> = (0..5).map(|_| random.next_u64()).collect();
        assert_eq!(
            outputs,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
        let mut random = SplitMix64::new(7);
        assert!((0..1000).all(|_| random.below(6) < 6));
        assert_eq!(SplitMix64::new(7).below(1), 0);
    }

    // Expected intervals: python3 re-implementation of SplitMix64, `below` as
    // (next * n) >> 64, the resampling order described on `bootstrap`/`bootstrap_difference`,
    // means by left-to-right summation, and type-7 quantiles h = (m-1)q.
    #[test]
    fn bootstrap_matches_an_independent_reimplementation() {
        let sample = [1.0, 2.0, 4.0, 7.0, 11.0, 16.0];
        let interval = bootstrap(&sample, mean, 1000, 42, 0.95);
        close_interval(interval, 2.8333333333333335, 11.333333333333334);
        assert_eq!(interval, bootstrap(&sample, mean, 1000, 42, 0.95));
        assert_eq!(bootstrap(&[] as &[f64], mean, 1000, 42, 0.95), None);
    }

    #[test]
    fn bootstrap_skips_resamples_without_a_value() {
        // Mean of the values above 4, None when a resample has none: 280 of 300 rounds gave a
        // value. (Counting the 20 skipped rounds as 0 instead would give (6.5, 8.333...).)
        let above_four = |values: &[f64]| {
            let kept: Vec<f64> = values.iter().copied().filter(|&v| v > 4.0).collect();
            mean(&kept)
        };
        let sample = [1.0, 2.0, 6.5, 9.25];
        close_interval(bootstrap(&sample, above_four, 300, 9, 0.5), 6.5, 9.25);
        assert_eq!(bootstrap(&[1.0, 2.0], |_| None, 100, 1, 0.95), None);
    }

    #[test]
    fn bootstrap_difference_matches_an_independent_reimplementation() {
        let a = [3.0, 5.0, 6.0, 9.0, 12.0];
        let b = [1.0, 2.0, 2.0, 4.0, 6.0, 8.0, 9.0];
        let interval = bootstrap_difference(&a, &b, mean, 1000, 7, 0.90);
        close_interval(interval, -0.31571428571428584, 5.287142857142856);
        assert_eq!(interval, bootstrap_difference(&a, &b, mean, 1000, 7, 0.90));
        assert_eq!(bootstrap_difference(&a, &[], mean, 1000, 7, 0.90), None);
    }

    #[test]
    fn shrinkage_moves_from_the_prior_to_the_mean_as_data_grow() {
        assert_eq!(shrink(4.8, 0.0, 4.0, 5.0), 4.0);
        // (3 * 4.8 + 5 * 4.0) / (3 + 5) = (14.4 + 20) / 8 = 4.3
        close(shrink(4.8, 3.0, 4.0, 5.0), 4.3);
        assert!((shrink(4.8, 1e9, 4.0, 5.0) - 4.8).abs() < 1e-6);
        assert_eq!(mean(&[]), None);
        close(mean(&[1.0, 2.0, 6.0]).expect("a mean"), 3.0);
    }

    #[test]
    fn newcombe_matches_the_published_example() {
        // Newcombe (1998), Statistics in Medicine 17:873, table II example (56/70 vs 48/80):
        // 0.0524 to 0.3339; the digits from python3 with the formula and `wilson` above.
        let interval = newcombe(56, 70, 48, 80, Z95).expect("interval");
        assert!((interval.low - 0.052_431_472_402_365_065).abs() < 1e-12);
        assert!((interval.high - 0.333_872_654_036_906).abs() < 1e-12);
        let interval = newcombe(9, 10, 3, 10, Z95).expect("interval");
        assert!((interval.low - 0.170_522_723_934_503_02).abs() < 1e-12);
        assert!((interval.high - 0.809_017_973_535_488_1).abs() < 1e-12);
        assert_eq!(newcombe(1, 0, 1, 2, Z95), None);
    }
}
