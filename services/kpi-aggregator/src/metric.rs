//! The counters kept per subject and bucket, their names in Redis, and how numbers and
//! instants go on the wire.

use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::Metric as ProtoMetric;

/// A counter. Ratios of the API (feedback average, retention) are computed from counters at
/// query time; volumes are kept in hundredths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Recruits,
    SalesVolume,
    Orders,
    ModulesCompleted,
    LearningMinutes,
    EventsAttended,
    SessionsCompleted,
    SessionsMissed,
    FeedbackSum,
    FeedbackCount,
    RankAdvancements,
    ActiveDays,
}

/// Why a metric that is not a counter was refused.
pub const NOT_COUNTED: &str = "must be a counted metric (not FEEDBACK_AVG, GROUP_SIZE, \
                                RETENTION_30D, PARTNERS, TEAM_DEPTH or unspecified)";

impl Counter {
    pub const ALL: [Self; 12] = [
        Self::Recruits,
        Self::SalesVolume,
        Self::Orders,
        Self::ModulesCompleted,
        Self::LearningMinutes,
        Self::EventsAttended,
        Self::SessionsCompleted,
        Self::SessionsMissed,
        Self::FeedbackSum,
        Self::FeedbackCount,
        Self::RankAdvancements,
        Self::ActiveDays,
    ];

    /// The hash field in Redis (short: it is repeated in every bucket of every subject). The
    /// stage-1 script names `ord` and `pv` itself.
    pub fn field(self) -> &'static str {
        match self {
            Self::Recruits => "rec",
            Self::SalesVolume => "pv",
            Self::Orders => "ord",
            Self::ModulesCompleted => "mod",
            Self::LearningMinutes => "min",
            Self::EventsAttended => "evt",
            Self::SessionsCompleted => "ses",
            Self::SessionsMissed => "mis",
            Self::FeedbackSum => "fbs",
            Self::FeedbackCount => "fbc",
            Self::RankAdvancements => "rank",
            Self::ActiveDays => "act",
        }
    }

    pub fn from_field(field: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|counter| counter.field() == field)
    }

    /// The counter an API metric (its wire value) shows directly, if any.
    pub fn of_metric(metric: i32) -> Option<Self> {
        let metric = ProtoMetric::try_from(metric).ok()?;
        Self::ALL
            .into_iter()
            .find(|counter| counter.metric() == Some(metric))
    }

    /// The API metric a counter is shown as.
    pub fn metric(self) -> Option<ProtoMetric> {
        Some(match self {
            Self::Recruits => ProtoMetric::Recruits,
            Self::SalesVolume => ProtoMetric::SalesVolume,
            Self::Orders => ProtoMetric::Orders,
            Self::ModulesCompleted => ProtoMetric::ModulesCompleted,
            Self::LearningMinutes => ProtoMetric::LearningMinutes,
            Self::EventsAttended => ProtoMetric::EventsAttended,
            Self::SessionsCompleted => ProtoMetric::SessionsCompleted,
            Self::SessionsMissed => ProtoMetric::SessionsMissed,
            Self::FeedbackSum => ProtoMetric::FeedbackSum,
            Self::FeedbackCount => ProtoMetric::FeedbackCount,
            Self::RankAdvancements => ProtoMetric::RankAdvancements,
            Self::ActiveDays => ProtoMetric::ActiveDays,
        })
    }
}

/// Every counted metric (zeros included) and the feedback average with its parts.
pub fn metric_values(
    counters: &std::collections::BTreeMap<Counter, i64>,
) -> Vec<mentorstream_proto::kpi::v1::MetricValue> {
    use mentorstream_proto::kpi::v1::{MetricValue, metric_value::Value};
    let count = |counter: Counter| counters.get(&counter).copied().unwrap_or(0);
    let mut values: Vec<MetricValue> = Counter::ALL
        .into_iter()
        .filter_map(|counter| {
            let metric = counter.metric()?;
            let value = if counter == Counter::SalesVolume {
                Value::Decimal(decimal(count(counter)))
            } else {
                Value::Count(count(counter))
            };
            Some(MetricValue {
                metric: metric.into(),
                value: Some(value),
            })
        })
        .collect();
    values.push(MetricValue {
        metric: ProtoMetric::FeedbackAvg.into(),
        value: Some(Value::Fraction(fraction(
            count(Counter::FeedbackSum),
            count(Counter::FeedbackCount),
        ))),
    });
    values
}

/// Decimal places of a fraction's value.
const FRACTION_PLACES: u32 = 4;

/// `numerator / denominator` with its parts; the value rounded half to even to
/// [`FRACTION_PLACES`] places, unset when the denominator is 0.
pub fn fraction(numerator: i64, denominator: i64) -> mentorstream_proto::kpi::v1::Fraction {
    mentorstream_proto::kpi::v1::Fraction {
        numerator,
        denominator,
        value: (denominator != 0).then(|| {
            let scale = 10_i128.pow(FRACTION_PLACES);
            let (numerator, denominator) = (i128::from(numerator), i128::from(denominator));
            let scaled = numerator * scale;
            let (mut quotient, remainder) = (scaled / denominator, scaled % denominator);
            // Half to even: compare twice the remainder with the divisor, by magnitude.
            let twice = (2 * remainder).abs();
            let away = if (scaled < 0) == (denominator < 0) {
                1
            } else {
                -1
            };
            if twice > denominator.abs() || (twice == denominator.abs() && quotient % 2 != 0) {
                quotient += away;
            }
            let sign = if quotient < 0 { "-" } else { "" };
            let magnitude = quotient.unsigned_abs();
            let scale = scale.unsigned_abs();
            Decimal {
                value: format!(
                    "{sign}{}.{:0width$}",
                    magnitude / scale,
                    magnitude % scale,
                    width = FRACTION_PLACES as usize
                ),
            }
        }),
    }
}

/// An instant on the wire.
pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Hundredths as a decimal: 6975 → "69.75", -5 → "-0.05".
pub fn decimal(hundredths: i64) -> Decimal {
    let sign = if hundredths < 0 { "-" } else { "" };
    let magnitude = hundredths.unsigned_abs();
    Decimal {
        value: format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundredths_print_as_decimals() {
        assert_eq!(decimal(6975).value, "69.75");
        assert_eq!(decimal(5).value, "0.05");
        assert_eq!(decimal(0).value, "0.00");
        assert_eq!(decimal(-5).value, "-0.05");
    }

    #[test]
    fn fractions_keep_their_parts_and_round_half_to_even() {
        let value = |numerator, denominator| {
            fraction(numerator, denominator)
                .value
                .map(|decimal| decimal.value)
        };
        assert_eq!(value(9, 2).as_deref(), Some("4.5000"));
        assert_eq!(value(2, 3).as_deref(), Some("0.6667"));
        assert_eq!(value(1, 3).as_deref(), Some("0.3333"));
        assert_eq!(value(0, 7).as_deref(), Some("0.0000"));
        assert_eq!(value(7, 7).as_deref(), Some("1.0000"));
        // Ties go to the even neighbour: 0.00005 → 0.0000, 0.00015 → 0.0002.
        assert_eq!(value(1, 20_000).as_deref(), Some("0.0000"));
        assert_eq!(value(3, 20_000).as_deref(), Some("0.0002"));
        assert_eq!(value(-3, 20_000).as_deref(), Some("-0.0002"));
        assert_eq!(value(-1, 3).as_deref(), Some("-0.3333"));
        assert_eq!(value(5, 0), None, "nothing to divide");
        let parts = fraction(23, 5);
        assert_eq!((parts.numerator, parts.denominator), (23, 5));
    }

    #[test]
    fn fields_are_unique_and_parse_back() {
        for counter in Counter::ALL {
            assert_eq!(Counter::from_field(counter.field()), Some(counter));
        }
        let mut fields: Vec<&str> = Counter::ALL.iter().map(|counter| counter.field()).collect();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), Counter::ALL.len());
    }
}
