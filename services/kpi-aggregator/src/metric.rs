//! The counters kept per subject and bucket, and their names in Redis.

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

#[cfg(test)]
mod tests {
    use super::*;

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
