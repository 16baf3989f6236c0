//! Tenant-defined KPI targets: validated from the API, stored by name in the control database
//! (`mentorstream_tenancy::KpiTarget`), shown as progress in scorecards, and passed to the
//! shard script, which raises TargetCrossed when an applied change takes a number in a
//! bucket from below a threshold to at or above it.

use std::sync::Arc;

use futures::future::BoxFuture;
use mentorstream_proto::kpi::v1::{self as proto, Metric, SubjectKind, WindowKind};
use mentorstream_tenancy::{KpiTarget, Tenants};

use crate::fold::hundredths;
use crate::metric::{Counter, NOT_COUNTED, decimal};

/// Longest target id.
const MAX_ID_CHARS: usize = 128;

/// Windows a target can be set on: those whose number lives in one bucket, so crossing it is a
/// moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetWindow {
    Day,
    Week,
    Month,
    Lifetime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub target_id: String,
    pub subject_kind: SubjectKind,
    pub counter: Counter,
    pub window: TargetWindow,
    /// In the counter's units (hundredths for volumes).
    pub threshold: i64,
}

/// A target the API refuses: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidTarget {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidTarget {
    InvalidTarget {
        field,
        message: message.into(),
    }
}

impl Target {
    /// A target from the API; an empty id is replaced by `new_id`.
    pub fn from_proto(target: &proto::Target, new_id: &str) -> Result<Self, InvalidTarget> {
        let target_id = if target.target_id.is_empty() {
            new_id.to_owned()
        } else {
            target.target_id.clone()
        };
        if target_id.chars().count() > MAX_ID_CHARS || target_id.chars().any(char::is_control) {
            return Err(invalid(
                "target.target_id",
                format!("must be at most {MAX_ID_CHARS} characters without control characters"),
            ));
        }
        let subject_kind = match SubjectKind::try_from(target.subject_kind) {
            Ok(
                kind @ (SubjectKind::Partner
                | SubjectKind::Group
                | SubjectKind::Team
                | SubjectKind::Tenant),
            ) => kind,
            _ => {
                return Err(invalid(
                    "target.subject_kind",
                    "must be SUBJECT_KIND_PARTNER, SUBJECT_KIND_GROUP, SUBJECT_KIND_TEAM or \
                     SUBJECT_KIND_TENANT",
                ));
            }
        };
        let counter = Counter::of_metric(target.metric)
            .ok_or_else(|| invalid("target.metric", NOT_COUNTED))?;
        let window = match WindowKind::try_from(target.window_kind) {
            Ok(WindowKind::Day) => TargetWindow::Day,
            Ok(WindowKind::Week) => TargetWindow::Week,
            Ok(WindowKind::Month) => TargetWindow::Month,
            Ok(WindowKind::Lifetime) => TargetWindow::Lifetime,
            Ok(WindowKind::Rolling7d | WindowKind::Rolling30d | WindowKind::Rolling90d) => {
                return Err(invalid(
                    "target.window_kind",
                    "rolling windows have no moment of crossing; use DAY, WEEK, MONTH or LIFETIME",
                ));
            }
            _ => {
                return Err(invalid(
                    "target.window_kind",
                    "must be DAY, WEEK, MONTH or LIFETIME",
                ));
            }
        };
        let text = target
            .threshold
            .as_ref()
            .map(|threshold| threshold.value.as_str())
            .unwrap_or_default();
        let threshold = threshold(counter, text).ok_or_else(|| {
            invalid(
                "target.threshold",
                if counter == Counter::SalesVolume {
                    format!("must be a volume above 0 with at most 2 decimals, got `{text}`")
                } else {
                    format!("must be a whole number above 0, got `{text}`")
                },
            )
        })?;
        Ok(Self {
            target_id,
            subject_kind,
            counter,
            window,
            threshold,
        })
    }

    pub fn to_proto(&self) -> proto::Target {
        proto::Target {
            target_id: self.target_id.clone(),
            subject_kind: self.subject_kind.into(),
            metric: self.counter.metric().unwrap_or(Metric::Unspecified).into(),
            window_kind: self.window_kind().into(),
            threshold: Some(self.display(self.threshold)),
        }
    }

    pub fn window_kind(&self) -> WindowKind {
        match self.window {
            TargetWindow::Day => WindowKind::Day,
            TargetWindow::Week => WindowKind::Week,
            TargetWindow::Month => WindowKind::Month,
            TargetWindow::Lifetime => WindowKind::Lifetime,
        }
    }

    /// A number of this target's counter as the API shows it.
    pub fn display(&self, value: i64) -> mentorstream_proto::common::v1::Decimal {
        if self.counter == Counter::SalesVolume {
            decimal(value)
        } else {
            mentorstream_proto::common::v1::Decimal {
                value: value.to_string(),
            }
        }
    }

    pub fn to_stored(&self) -> KpiTarget {
        KpiTarget {
            target_id: self.target_id.clone(),
            subject_kind: self.subject_code().to_owned(),
            metric: self.counter.field().to_owned(),
            window_kind: self.window_code().to_owned(),
            threshold: self.threshold.to_string(),
        }
    }

    /// A stored target; `None` if it is not one this version understands.
    pub fn from_stored(stored: &KpiTarget) -> Option<Self> {
        let subject_kind = match stored.subject_kind.as_str() {
            "p" => SubjectKind::Partner,
            "g" => SubjectKind::Group,
            "t" => SubjectKind::Team,
            "n" => SubjectKind::Tenant,
            _ => return None,
        };
        let window = match stored.window_kind.as_str() {
            "d" => TargetWindow::Day,
            "w" => TargetWindow::Week,
            "m" => TargetWindow::Month,
            "l" => TargetWindow::Lifetime,
            _ => return None,
        };
        Some(Self {
            target_id: stored.target_id.clone(),
            subject_kind,
            counter: Counter::from_field(&stored.metric)?,
            window,
            threshold: stored.threshold.parse().ok()?,
        })
    }

    /// The subject kind's letter in signal ids: partner, group, team, tenant (n).
    pub fn subject_code(&self) -> &'static str {
        match self.subject_kind {
            SubjectKind::Group => "g",
            SubjectKind::Team => "t",
            SubjectKind::Tenant => "n",
            _ => "p",
        }
    }

    /// Whether the target's window is the kind of `bucket`.
    pub fn watches(&self, bucket: crate::calendar::Bucket) -> bool {
        use crate::calendar::Bucket;
        matches!(
            (self.window, bucket),
            (TargetWindow::Day, Bucket::Day(_))
                | (TargetWindow::Week, Bucket::Week { .. })
                | (TargetWindow::Month, Bucket::Month { .. })
                | (TargetWindow::Lifetime, Bucket::Lifetime)
        )
    }

    /// The first letter of the buckets the target watches.
    fn window_code(&self) -> &'static str {
        match self.window {
            TargetWindow::Day => "d",
            TargetWindow::Week => "w",
            TargetWindow::Month => "m",
            TargetWindow::Lifetime => "l",
        }
    }
}

/// Where the store finds a tenant's targets.
pub trait TargetSource: std::fmt::Debug + Send + Sync {
    fn targets<'a>(&'a self, tenant_id: &'a str)
    -> BoxFuture<'a, Result<Arc<Vec<Target>>, String>>;
}

/// The control database's targets, cached for a few seconds.
impl TargetSource for Tenants {
    fn targets<'a>(
        &'a self,
        tenant_id: &'a str,
    ) -> BoxFuture<'a, Result<Arc<Vec<Target>>, String>> {
        Box::pin(async move {
            let stored = self
                .cached_targets(tenant_id)
                .await
                .map_err(|error| error.to_string())?;
            Ok(Arc::new(
                stored.iter().filter_map(Target::from_stored).collect(),
            ))
        })
    }
}

/// A threshold in the counter's units: above zero; volumes with at most 2 decimals, others
/// whole numbers.
fn threshold(counter: Counter, text: &str) -> Option<i64> {
    let value = if counter == Counter::SalesVolume {
        hundredths(Some(text)).ok()?
    } else {
        text.parse::<i64>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))?
    };
    (value > 0).then_some(value)
}

#[cfg(test)]
mod tests {
    use mentorstream_proto::common::v1::Decimal;

    use super::*;

    fn proto_target(metric: Metric, window: WindowKind, threshold: &str) -> proto::Target {
        proto::Target {
            target_id: String::new(),
            subject_kind: SubjectKind::Team.into(),
            metric: metric.into(),
            window_kind: window.into(),
            threshold: Some(Decimal {
                value: threshold.into(),
            }),
        }
    }

    #[test]
    fn targets_round_trip_through_storage_and_the_api() {
        let target = Target::from_proto(
            &proto_target(Metric::SalesVolume, WindowKind::Month, "1500.50"),
            "t-1",
        )
        .expect("valid");
        assert_eq!(target.threshold, 150_050);
        assert_eq!(target.target_id, "t-1");
        assert_eq!(
            Target::from_stored(&target.to_stored()),
            Some(target.clone())
        );
        assert_eq!(
            target.to_proto().threshold.expect("threshold").value,
            "1500.50"
        );
    }

    #[test]
    fn invalid_targets_name_the_field() {
        let refused =
            |target: proto::Target| Target::from_proto(&target, "x").expect_err("invalid");
        assert_eq!(
            refused(proto_target(Metric::Orders, WindowKind::Rolling7d, "3")).field,
            "target.window_kind"
        );
        assert_eq!(
            refused(proto_target(Metric::Orders, WindowKind::Week, "2.5")).to_string(),
            "target.threshold: must be a whole number above 0, got `2.5`"
        );
        assert_eq!(
            refused(proto_target(Metric::SalesVolume, WindowKind::Week, "0")).field,
            "target.threshold"
        );
        assert_eq!(
            refused(proto_target(Metric::FeedbackAvg, WindowKind::Week, "4")).field,
            "target.metric"
        );
        let mut no_kind = proto_target(Metric::Orders, WindowKind::Week, "3");
        no_kind.subject_kind = 0;
        assert_eq!(refused(no_kind).field, "target.subject_kind");
    }
}
