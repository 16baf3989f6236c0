//! ComparePrograms in words, for people who will not read a table: one sentence per headline
//! outcome, in English or Russian, saying which programme did better, by how much, how sure
//! that is, on how many mentees — or that there are too few to tell. Pure.

use mentorstream_proto::mentorship::v1::{Estimate, Outcome, OutcomeComparison};

use crate::impact::compare::{MIN_COHORT, SMALL_COHORT};

/// The outcomes a summary speaks of, in its order.
const HEADLINES: [Outcome; 6] = [
    Outcome::DaysToFirstSale,
    Outcome::Retention30d,
    Outcome::Retention60d,
    Outcome::Retention90d,
    Outcome::SalesVolume30d,
    Outcome::Recruits30d,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Ru,
}

/// The summary of `outcomes`, programme `a` (named `name_a`) against `b`.
pub fn summary(
    language: Language,
    name_a: &str,
    name_b: &str,
    outcomes: &[OutcomeComparison],
) -> String {
    let mut lines = vec![match language {
        Language::En => format!("{name_a} compared with {name_b}:"),
        Language::Ru => format!("Сравнение программ «{name_a}» и «{name_b}»:"),
    }];
    for headline in HEADLINES {
        if let Some(comparison) = outcomes.iter().find(|c| c.outcome == headline as i32) {
            lines.push(format!("- {}", sentence(language, name_a, comparison)));
        }
    }
    lines.join("\n")
}

fn sentence(language: Language, name_a: &str, comparison: &OutcomeComparison) -> String {
    let outcome = Outcome::try_from(comparison.outcome).unwrap_or(Outcome::Unspecified);
    let (a, b) = (
        comparison.a.unwrap_or_default(),
        comparison.b.unwrap_or_default(),
    );
    let sizes = sizes(language, &a, &b);
    if !comparison.enough_data {
        return match language {
            Language::En => format!(
                "{}: not enough data yet ({sizes}; at least {MIN_COHORT} per programme are needed)",
                title(language, outcome)
            ),
            Language::Ru => format!(
                "{}: пока мало данных ({sizes}; нужно не меньше {MIN_COHORT} в каждой программе)",
                title(language, outcome)
            ),
        };
    }
    let difference = comparison.difference.unwrap_or_default();
    let body = match outcome {
        Outcome::DaysToFirstSale => median_sentence(language, &a, &b, &difference),
        Outcome::Retention30d | Outcome::Retention60d | Outcome::Retention90d => {
            share_sentence(language, outcome, &a, &b, &difference)
        }
        _ => mean_sentence(language, outcome, &a, &b, &difference),
    };
    let small = if a.n.min(b.n) < SMALL_COHORT {
        match language {
            Language::En => ", a small sample",
            Language::Ru => ", малая выборка",
        }
    } else {
        ""
    };
    format!("{name_a}: {body}, {sizes}{small}")
}

fn title(language: Language, outcome: Outcome) -> &'static str {
    match (language, outcome) {
        (Language::En, Outcome::DaysToFirstSale) => "days to first sale",
        (Language::En, Outcome::Retention30d) => "30-day retention",
        (Language::En, Outcome::Retention60d) => "60-day retention",
        (Language::En, Outcome::Retention90d) => "90-day retention",
        (Language::En, Outcome::SalesVolume30d) => "sales volume in the first 30 days",
        (Language::En, _) => "recruits in the first 30 days",
        (Language::Ru, Outcome::DaysToFirstSale) => "дней до первой продажи",
        (Language::Ru, Outcome::Retention30d) => "удержание за 30 дней",
        (Language::Ru, Outcome::Retention60d) => "удержание за 60 дней",
        (Language::Ru, Outcome::Retention90d) => "удержание за 90 дней",
        (Language::Ru, Outcome::SalesVolume30d) => "объём продаж за первые 30 дней",
        (Language::Ru, _) => "новички за первые 30 дней",
    }
}

fn sizes(language: Language, a: &Estimate, b: &Estimate) -> String {
    match language {
        Language::En => format!("n = {} vs {}", a.n, b.n),
        Language::Ru => format!("n = {} и {}", a.n, b.n),
    }
}

/// `value` with `decimals` digits, with a decimal comma in Russian and a true minus sign.
fn number(language: Language, value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let text = if text.starts_with('-') && text.trim_start_matches(['-', '0', '.']).is_empty() {
        text.trim_start_matches('-').to_owned()
    } else {
        text
    };
    let text = text.replace('-', "−");
    match language {
        Language::En => text,
        Language::Ru => text.replace('.', ","),
    }
}

/// "95 % CI low–high" of `estimate` scaled by `scale`, ends ordered.
fn interval(language: Language, estimate: &Estimate, scale: f64, decimals: usize) -> String {
    let (Some(low), Some(high)) = (estimate.low, estimate.high) else {
        // A resampled median that was never reached leaves an end open.
        return match language {
            Language::En => " (95 % CI open-ended: in many resamples fewer than half sold)".into(),
            Language::Ru => {
                " (95 % ДИ не ограничен: во многих выборках продали меньше половины)".into()
            }
        };
    };
    let (low, high) = {
        let (x, y) = (low * scale, high * scale);
        (x.min(y), x.max(y))
    };
    let unclear = low <= 0.0 && high >= 0.0;
    let range = format!(
        "{}–{}",
        number(language, low, decimals),
        number(language, high, decimals)
    );
    match (language, unclear) {
        (Language::En, false) => format!(" (95 % CI {range})"),
        (Language::En, true) => format!(" (95 % CI {range}: no clear difference)"),
        (Language::Ru, false) => format!(" (95 % ДИ {range})"),
        (Language::Ru, true) => format!(" (95 % ДИ {range}: явной разницы нет)"),
    }
}

fn median_sentence(language: Language, a: &Estimate, b: &Estimate, d: &Estimate) -> String {
    let (Some(median_a), Some(median_b), Some(value)) = (a.value, b.value, d.value) else {
        let median = |estimate: &Estimate| match estimate.value {
            Some(value) => number(language, value, 1),
            None => match language {
                Language::En => "not reached (fewer than half have sold)".to_owned(),
                Language::Ru => "не достигнута (продали меньше половины)".to_owned(),
            },
        };
        return match language {
            Language::En => format!("median days to first sale {} vs {}", median(a), median(b)),
            Language::Ru => format!(
                "медиана дней до первой продажи {} и {}",
                median(a),
                median(b)
            ),
        };
    };
    let sooner = value < 0.0;
    let scale = if sooner { -1.0 } else { 1.0 };
    let days = number(language, value.abs(), 1);
    let medians = (number(language, median_a, 1), number(language, median_b, 1));
    let ci = interval(language, d, scale, 1);
    match (language, sooner) {
        (Language::En, true) => format!(
            "first sale {days} days sooner{ci}, median {} vs {} days",
            medians.0, medians.1
        ),
        (Language::En, false) => format!(
            "first sale {days} days later{ci}, median {} vs {} days",
            medians.0, medians.1
        ),
        (Language::Ru, true) => format!(
            "первая продажа на {days} дня раньше{ci}, медиана {} и {} дня",
            medians.0, medians.1
        ),
        (Language::Ru, false) => format!(
            "первая продажа на {days} дня позже{ci}, медиана {} и {} дня",
            medians.0, medians.1
        ),
    }
}

fn share_sentence(
    language: Language,
    outcome: Outcome,
    a: &Estimate,
    b: &Estimate,
    d: &Estimate,
) -> String {
    let percent = |estimate: &Estimate| number(language, estimate.value.unwrap_or(0.0) * 100.0, 0);
    let points = d.value.unwrap_or(0.0) * 100.0;
    let ci = interval(language, d, 100.0, 0);
    let title = title(language, outcome);
    let (a, b) = (percent(a), percent(b));
    let change = number(language, points.abs(), 0);
    match (language, points >= 0.0) {
        (Language::En, true) => format!("{title} {a} % vs {b} %, {change} points higher{ci}"),
        (Language::En, false) => format!("{title} {a} % vs {b} %, {change} points lower{ci}"),
        (Language::Ru, true) => format!("{title} {a} % и {b} %, на {change} п. п. выше{ci}"),
        (Language::Ru, false) => format!("{title} {a} % и {b} %, на {change} п. п. ниже{ci}"),
    }
}

fn mean_sentence(
    language: Language,
    outcome: Outcome,
    a: &Estimate,
    b: &Estimate,
    d: &Estimate,
) -> String {
    let mean = |estimate: &Estimate| number(language, estimate.value.unwrap_or(0.0), 2);
    let value = d.value.unwrap_or(0.0);
    let ci = interval(language, d, 1.0, 2);
    let title = title(language, outcome);
    let (a, b) = (mean(a), mean(b));
    let change = number(language, value.abs(), 2);
    match (language, value >= 0.0) {
        (Language::En, true) => format!("{title} {a} vs {b} on average, {change} more{ci}"),
        (Language::En, false) => format!("{title} {a} vs {b} on average, {change} less{ci}"),
        (Language::Ru, true) => format!("{title} {a} и {b} в среднем, на {change} больше{ci}"),
        (Language::Ru, false) => format!("{title} {a} и {b} в среднем, на {change} меньше{ci}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(value: Option<f64>, low: f64, high: f64, n: u32) -> Option<Estimate> {
        Some(Estimate {
            value,
            low: Some(low),
            high: Some(high),
            n,
        })
    }

    fn median(a: f64, b: f64, low: f64, high: f64, n: (u32, u32)) -> OutcomeComparison {
        OutcomeComparison {
            outcome: Outcome::DaysToFirstSale.into(),
            a: estimate(Some(a), 0.0, 0.0, n.0),
            b: estimate(Some(b), 0.0, 0.0, n.1),
            difference: estimate(Some(a - b), low, high, n.0.min(n.1)),
            enough_data: n.0 >= MIN_COHORT && n.1 >= MIN_COHORT,
        }
    }

    #[test]
    fn a_sooner_first_sale_reads_as_the_issue_asks() {
        let outcomes = [median(3.0, 7.2, -7.3, -1.1, (120, 340))];
        assert_eq!(
            summary(Language::En, "Pilot", "Standard", &outcomes),
            "Pilot compared with Standard:\n- Pilot: first sale 4.2 days sooner (95 % CI \
             1.1–7.3), median 3.0 vs 7.2 days, n = 120 vs 340"
        );
        assert_eq!(
            summary(Language::Ru, "Пилот", "Стандарт", &outcomes),
            "Сравнение программ «Пилот» и «Стандарт»:\n- Пилот: первая продажа на 4,2 дня раньше (95 % ДИ \
             1,1–7,3), медиана 3,0 и 7,2 дня, n = 120 и 340"
        );
    }

    #[test]
    fn an_interval_across_zero_and_a_small_sample_are_said() {
        let outcomes = [median(5.0, 4.0, -1.5, 3.0, (12, 15))];
        assert_eq!(
            summary(Language::En, "A", "B", &outcomes),
            "A compared with B:\n- A: first sale 1.0 days later (95 % CI −1.5–3.0: no clear \
             difference), median 5.0 vs 4.0 days, n = 12 vs 15, a small sample"
        );
    }

    #[test]
    fn too_few_mentees_are_not_enough_data() {
        let outcomes = [median(2.0, 4.0, -3.0, -1.0, (3, 40))];
        assert_eq!(
            summary(Language::En, "A", "B", &outcomes),
            "A compared with B:\n- days to first sale: not enough data yet (n = 3 vs 40; at \
             least 10 per programme are needed)"
        );
        assert_eq!(
            summary(Language::Ru, "A", "B", &outcomes),
            "Сравнение программ «A» и «B»:\n- дней до первой продажи: пока мало данных (n = 3 и 40; нужно \
             не меньше 10 в каждой программе)"
        );
    }

    #[test]
    fn retention_reads_in_points() {
        let outcomes = [OutcomeComparison {
            outcome: Outcome::Retention30d.into(),
            a: estimate(Some(0.62), 0.5, 0.7, 50),
            b: estimate(Some(0.48), 0.4, 0.6, 60),
            difference: estimate(Some(0.14), 0.02, 0.25, 50),
            enough_data: true,
        }];
        assert_eq!(
            summary(Language::En, "A", "B", &outcomes),
            "A compared with B:\n- A: 30-day retention 62 % vs 48 %, 14 points higher (95 % CI \
             2–25), n = 50 vs 60"
        );
    }
}
