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
pub const NOT_COUNTED: &str =
    "must be a counted metric (not FEEDBACK_AVG, GROUP_SIZE, RETENTION_30D or unspecified)";

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

    /// The API metric a counter is shown as, when it is shown directly.
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
            Self::FeedbackCount => ProtoMetric::FeedbackCount,
            Self::RankAdvancements => ProtoMetric::RankAdvancements,
            Self::ActiveDays => ProtoMetric::ActiveDays,
            Self::FeedbackSum => return None,
        })
    }
}

/// Every counted metric (zeros included) and, when there are ratings, the feedback average.
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
    let ratings = count(Counter::FeedbackCount);
    if ratings > 0 {
        #[allow(clippy::cast_precision_loss)] // sums of 1–5 ratings stay far below 2^52
        let average = count(Counter::FeedbackSum) as f64 / ratings as f64;
        values.push(MetricValue {
            metric: ProtoMetric::FeedbackAvg.into(),
            value: Some(Value::Ratio(average)),
        });
    }
    values
}

/// A local date on the wire.
pub fn local_date(day: chrono::NaiveDate) -> mentorstream_proto::common::v1::LocalDate {
    use chrono::Datelike as _;
    mentorstream_proto::common::v1::LocalDate {
        year: day.year(),
        month: i32::try_from(day.month()).unwrap_or_default(),
        day: i32::try_from(day.day()).unwrap_or_default(),
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
