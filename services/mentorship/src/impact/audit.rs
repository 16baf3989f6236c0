//! The mentor effectiveness audit (AuditMentors), pure: each mentor's outcomes over their
//! mentees, and a quality score that does not let a mentor with two lucky mentees top one with
//! twenty good ones.
//!
//! The score (docs/impact.md) averages three components, each a share in [0, 1]:
//! - `s`: mentees who made a first sale within 30 days of enrolment (of those for whom it is
//!   known: 30 days old, or sold sooner);
//! - `r`: mentees retained at 30 days (active on days 1–30; of those 31 local days old);
//! - `q`: the ratings the mentees gave this mentor, as (rating − 1) / 4.
//!
//! Each component is shrunk toward the programme's mean μ over every mentor's mentees (or
//! ratings): `ŝ = (n·s + K·μ) / (n + K)` with `n` the mentor's count for that component and
//! `K = PRIOR_STRENGTH` pseudo-mentees; a mentor with no data on a component gets μ. The score
//! is `100 × mean(ŝ, r̂, q̂)` over the components the programme has any data for; its
//! interval is the seeded percentile bootstrap of the same score over the mentor's mentees
//! (each resampled with their ratings), with μ held fixed.

use std::collections::BTreeMap;

use mentorstream_proto::mentorship::v1::{Estimate, MentorAudit};

use crate::impact::compare::Bootstrap;
use crate::impact::outcomes::MenteeOutcome;
use crate::impact::stats::{self, Z95};

/// Pseudo-mentees the programme's mean is worth.
pub const PRIOR_STRENGTH: f64 = 5.0;
const LEVEL: f64 = 0.95;

/// Per component: the values (0–1) the mentees give.
#[derive(Debug, Default, Clone, PartialEq)]
struct Components {
    first_sale: Vec<f64>,
    retention: Vec<f64>,
    feedback: Vec<f64>,
}

fn components<'a>(mentees: impl IntoIterator<Item = &'a MenteeOutcome>) -> Components {
    let mut components = Components::default();
    for mentee in mentees {
        let yes = |known: bool| if known { 1.0 } else { 0.0 };
        components
            .first_sale
            .extend(mentee.first_sale_within(30).map(yes));
        components.retention.extend(mentee.retained(30).map(yes));
        components.feedback.extend(
            mentee
                .ratings
                .iter()
                .map(|&rating| (f64::from(rating) - 1.0) / 4.0),
        );
    }
    components
}

impl Components {
    fn each(&self) -> [&[f64]; 3] {
        [&self.first_sale, &self.retention, &self.feedback]
    }
}

/// The programme's means μ of the three components; None where it has no data.
pub type Prior = [Option<f64>; 3];

fn prior(all: &Components) -> Prior {
    all.each().map(stats::mean)
}

/// `100 × mean` of the shrunk components the prior has.
fn shrunk_score(mentor: &Components, prior: &Prior) -> Option<f64> {
    let shrunk: Vec<f64> = mentor
        .each()
        .into_iter()
        .zip(prior)
        .filter_map(|(values, prior)| {
            let prior = (*prior)?;
            let mean = stats::mean(values).unwrap_or(prior);
            Some(stats::shrink(
                mean,
                values.len() as f64,
                prior,
                PRIOR_STRENGTH,
            ))
        })
        .collect();
    stats::mean(&shrunk).map(|score| 100.0 * score)
}

/// `100 × mean` of the mentor's own component means.
fn raw_score(mentor: &Components) -> Option<f64> {
    let means: Vec<f64> = mentor.each().into_iter().filter_map(stats::mean).collect();
    stats::mean(&means).map(|score| 100.0 * score)
}

/// FNV-1a of the mentor id: each mentor's bootstrap stream depends on the seed and on who
/// they are, not on who else is in the report.
fn stream(seed: u64, mentor_id: &str) -> u64 {
    let hash = mentor_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    seed ^ hash
}

fn share(values: &[f64]) -> Estimate {
    let yes = values.iter().filter(|&&value| value > 0.5).count() as u64;
    let n = values.len() as u64;
    let interval = stats::wilson(yes, n, Z95);
    Estimate {
        value: stats::mean(values),
        low: interval.map(|interval| interval.low),
        high: interval.map(|interval| interval.high),
        n: u32::try_from(n).unwrap_or(u32::MAX),
    }
}

fn mean_estimate(values: &[f64], bootstrap: Bootstrap) -> Estimate {
    let interval = stats::bootstrap(
        values,
        stats::mean,
        bootstrap.resamples,
        bootstrap.seed,
        LEVEL,
    );
    Estimate {
        value: stats::mean(values),
        low: interval.map(|interval| interval.low),
        high: interval.map(|interval| interval.high),
        n: u32::try_from(values.len()).unwrap_or(u32::MAX),
    }
}

/// One mentor's row (rank 0 until ranked; no display name).
fn row(
    mentor_id: &str,
    mentees: &[&MenteeOutcome],
    prior: &Prior,
    bootstrap: Bootstrap,
) -> MentorAudit {
    let own = components(mentees.iter().copied());
    let run = Bootstrap {
        seed: stream(bootstrap.seed, mentor_id),
        ..bootstrap
    };
    let indices: Vec<usize> = (0..mentees.len()).collect();
    let interval = stats::bootstrap(
        &indices,
        |sample: &[usize]| shrunk_score(&components(sample.iter().map(|&i| mentees[i])), prior),
        run.resamples,
        run.seed,
        LEVEL,
    );
    let sales: Vec<f64> = mentees
        .iter()
        .filter_map(|mentee| mentee.first_days(30, |day| day.sales_volume))
        .collect();
    let ratings: Vec<f64> = mentees
        .iter()
        .flat_map(|mentee| mentee.ratings.iter().map(|&rating| f64::from(rating)))
        .collect();
    MentorAudit {
        rank: 0,
        mentor_id: mentor_id.to_owned(),
        display_name: String::new(),
        mentees: u32::try_from(mentees.len()).unwrap_or(u32::MAX),
        first_sale_30d: Some(share(&own.first_sale)),
        retention_30d: Some(share(&own.retention)),
        sales_volume_30d: Some(mean_estimate(&sales, run)),
        feedback: Some(mean_estimate(&ratings, run)),
        score: Some(Estimate {
            value: shrunk_score(&own, prior),
            low: interval.map(|interval| interval.low),
            high: interval.map(|interval| interval.high),
            n: u32::try_from(mentees.len()).unwrap_or(u32::MAX),
        }),
        raw_score: raw_score(&own),
    }
}

/// The audit of `pairs` — (mentor, one of their mentees with the ratings that mentee gave
/// them) — ranked by score, best first, ties by mentor id; and the programme's score.
pub fn audit(
    pairs: &[(String, MenteeOutcome)],
    bootstrap: Bootstrap,
) -> (Vec<MentorAudit>, Option<f64>) {
    let prior = prior(&components(pairs.iter().map(|(_, mentee)| mentee)));
    let mut by_mentor: BTreeMap<&str, Vec<&MenteeOutcome>> = BTreeMap::new();
    for (mentor, mentee) in pairs {
        by_mentor.entry(mentor).or_default().push(mentee);
    }
    let mut rows: Vec<MentorAudit> = by_mentor
        .iter()
        .map(|(mentor, mentees)| row(mentor, mentees, &prior, bootstrap))
        .collect();
    let score = |row: &MentorAudit| row.score.as_ref().and_then(|score| score.value);
    rows.sort_by(|x, y| {
        score(y)
            .partial_cmp(&score(x))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| x.mentor_id.cmp(&y.mentor_id))
    });
    for (index, row) in rows.iter_mut().enumerate() {
        row.rank = u32::try_from(index + 1).unwrap_or(u32::MAX);
    }
    let present: Vec<f64> = prior.iter().flatten().copied().collect();
    (rows, stats::mean(&present).map(|score| 100.0 * score))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impact::outcomes::Day;

    /// A mentee 40 days old: sold on `sale` (if any), active on day 10 if `retained`.
    fn mentee(sale: Option<u32>, retained: bool, ratings: &[u32]) -> MenteeOutcome {
        let mut days = vec![Day::default(); 41];
        days[10].active = retained;
        MenteeOutcome {
            partner_id: "p".into(),
            today: 40,
            age_days: 40,
            days_to_first_sale: sale,
            days,
            known_from: 0,
            sessions_attended: 0,
            ratings: ratings.to_vec(),
        }
    }

    const RUN: Bootstrap = Bootstrap {
        seed: 11,
        resamples: 400,
    };

    #[test]
    fn the_score_shrinks_small_groups_toward_the_programme_mean() {
        // "lucky": 2 mentees, both sold in 30 days and retained, ratings 5 and 5.
        // "steady": 10 mentees, 6 sold, 8 retained, ratings ten 4s.
        let mut pairs = vec![
            ("lucky".to_owned(), mentee(Some(3), true, &[5])),
            ("lucky".to_owned(), mentee(Some(5), true, &[5])),
        ];
        for index in 0..10 {
            pairs.push((
                "steady".to_owned(),
                mentee((index < 6).then_some(7), index < 8, &[4]),
            ));
        }
        let (rows, program) = audit(&pairs, RUN);
        // By hand: programme means over 12 mentees / 12 ratings:
        //   μs = 8/12, μr = 10/12, μq = (2·1 + 10·0.75)/12 = 9.5/12.
        // lucky:  ŝ = (2·1 + 5·8/12)/7 = 0.761904…, r̂ = (2·1 + 5·10/12)/7 = 0.880952…,
        //         q̂ = (2·1 + 5·9.5/12)/7 = 0.851190…  → score = 100·mean = 83.134920…
        // steady: ŝ = (10·0.6 + 5·8/12)/15 = 0.622222…, r̂ = (10·0.8 + 5·10/12)/15 = 0.811111…,
        //         q̂ = (10·0.75 + 5·9.5/12)/15 = 0.763888… → score = 73.240740…
        // Raw: lucky 100, steady 100·(0.6 + 0.8 + 0.75)/3 = 71.666…
        let lucky = rows
            .iter()
            .find(|row| row.mentor_id == "lucky")
            .expect("lucky");
        let steady = rows
            .iter()
            .find(|row| row.mentor_id == "steady")
            .expect("steady");
        let value = |row: &MentorAudit| row.score.as_ref().and_then(|s| s.value).expect("score");
        let expected_lucky = 100.0
            * (2.0 + 5.0 * 8.0 / 12.0 + 2.0 + 5.0 * 10.0 / 12.0 + 2.0 + 5.0 * 9.5 / 12.0)
            / 21.0;
        let expected_steady = 100.0
            * ((6.0 + 5.0 * 8.0 / 12.0) / 15.0
                + (8.0 + 5.0 * 10.0 / 12.0) / 15.0
                + (7.5 + 5.0 * 9.5 / 12.0) / 15.0)
            / 3.0;
        assert!((value(lucky) - expected_lucky).abs() < 1e-9);
        assert!((value(lucky) - 83.134_920_634_920_6).abs() < 1e-9);
        assert!((value(steady) - expected_steady).abs() < 1e-9);
        assert!((value(steady) - 73.240_740_740_740_7).abs() < 1e-9);
        assert_eq!(lucky.raw_score, Some(100.0));
        assert!((steady.raw_score.expect("raw") - 71.666_666_666_666_67).abs() < 1e-9);
        // μ as a score: 100·(8/12 + 10/12 + 9.5/12)/3.
        assert!((program.expect("programme") - 100.0 * 27.5 / 36.0).abs() < 1e-9);
        assert_eq!(rows[0].mentor_id, "lucky");
        assert_eq!((rows[0].rank, rows[1].rank), (1, 2));
        // The small group's interval is the wider one.
        let width = |row: &MentorAudit| {
            let score = row.score.as_ref().expect("score");
            score.high.expect("high") - score.low.expect("low")
        };
        assert!(
            width(lucky) < 1e-9,
            "two identical mentees: {}",
            width(lucky)
        );
        assert!(width(steady) > 0.0);
    }

    #[test]
    fn a_mentor_without_data_gets_the_programme_mean() {
        let pairs = vec![
            ("a".to_owned(), mentee(Some(3), true, &[5])),
            ("b".to_owned(), {
                let mut young = mentee(None, false, &[]);
                young.today = 2;
                young.age_days = 2;
                young.days.truncate(3);
                young
            }),
        ];
        let (rows, program) = audit(&pairs, RUN);
        let b = rows.iter().find(|row| row.mentor_id == "b").expect("b");
        assert_eq!(b.score.as_ref().and_then(|s| s.value), program);
        assert_eq!(b.raw_score, None);
    }
}
