//! Signals: things worth telling a person, decided in the shard script and published to
//! `mentorstream.kpi.signals.v1` after the batch that decided them (docs/kpi-engine.md,
//! "Signals and timers").
//!
//! A signal's id is a hash of its cause (tenant, partner, kind, fact), so a signal published
//! again after a crash, or announced again for an earlier occurrence of the same fact, carries
//! the same id and the notifier sends one message for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::kpi::v1::{self as proto, Metric, SubjectKind, WindowKind, kpi_signal};
use sha2::{Digest, Sha256};

use crate::calendar::{Bucket, Calendar};
use crate::metric::{Counter, decimal, timestamp};
use crate::state::partner::Announcement;

/// A signal about one partner.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub tenant_id: String,
    pub partner_id: String,
    pub signal_id: String,
    /// When the announced fact happened.
    pub occurred_at: DateTime<Utc>,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    FirstSale {
        order_id: String,
        /// Hundredths.
        volume: i64,
        days_to_first_sale: i64,
    },
    RankAchieved {
        level: u32,
        name: String,
        days_to_rank: i64,
    },
    Inactive {
        last_active_at: DateTime<Utc>,
        inactive_days: u32,
    },
    GoalAchieved {
        plan_id: String,
        goal_id: String,
        counter: Counter,
        /// In the counter's units.
        target: i64,
        value: i64,
    },
    GoalMissed {
        plan_id: String,
        goal_id: String,
        counter: Counter,
        target: i64,
        value: i64,
    },
    TargetCrossed {
        target_id: String,
        subject_kind: SubjectKind,
        subject_id: String,
        bucket: Bucket,
        counter: Counter,
        /// In the counter's units.
        threshold: i64,
        value: i64,
    },
}

/// Where signals go. Publishing must be durable when it returns `Ok`: the outbox entries are
/// trimmed afterwards.
pub trait SignalSink: std::fmt::Debug + Send + Sync {
    fn publish<'a>(&'a self, signals: &'a [Signal]) -> BoxFuture<'a, Result<(), String>>;
}

impl Signal {
    /// The signal of an announcement the rules made about `partner_id`; its id names the fact
    /// (tenant, partner, kind, rank level or goal), so a repetition or a correction keeps it.
    pub fn announced(tenant_id: &str, partner_id: &str, announcement: &Announcement) -> Self {
        let (kind, key, occurred_at, payload) = match announcement {
            Announcement::FirstSale { enrolled, sale } => (
                "first_sale",
                String::new(),
                sale.rank.occurred_at(),
                Payload::FirstSale {
                    order_id: sale.order_id.clone(),
                    volume: sale.volume,
                    days_to_first_sale: Calendar::whole_days(
                        enrolled.occurred_at(),
                        sale.rank.occurred_at(),
                    ),
                },
            ),
            Announcement::RankReached {
                enrolled,
                level,
                name,
                reached,
            } => (
                "rank",
                level.to_string(),
                reached.occurred_at(),
                Payload::RankAchieved {
                    level: *level,
                    name: name.clone(),
                    days_to_rank: Calendar::whole_days(
                        enrolled.occurred_at(),
                        reached.occurred_at(),
                    ),
                },
            ),
            Announcement::GoalAchieved { goal, value, rank } => (
                "goal_achieved",
                goal.goal_id.clone(),
                rank.occurred_at(),
                Payload::GoalAchieved {
                    plan_id: goal.plan_id.clone(),
                    goal_id: goal.goal_id.clone(),
                    counter: goal.counter,
                    target: goal.target,
                    value: *value,
                },
            ),
        };
        Self {
            tenant_id: tenant_id.to_owned(),
            partner_id: partner_id.to_owned(),
            signal_id: signal_id(tenant_id, partner_id, kind, &key),
            occurred_at,
            payload,
        }
    }

    /// The inverse of [`Signal::to_proto`]; `None` for a signal this aggregator would not
    /// make.
    pub fn from_proto(signal: proto::KpiSignal) -> Option<Self> {
        let counter = |metric: i32| Counter::of_metric(metric);
        let number = |counter: Counter,
                      value: Option<&mentorstream_proto::common::v1::Decimal>|
         -> Option<i64> {
            let text = value?.value.as_str();
            if counter == Counter::SalesVolume {
                crate::fold::hundredths(Some(text)).ok()
            } else {
                text.parse().ok()
            }
        };
        let time = |time: Option<&prost_types::Timestamp>| {
            let time = time?;
            DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
        };
        let payload = match signal.payload? {
            kpi_signal::Payload::FirstSale(sale) => Payload::FirstSale {
                volume: number(Counter::SalesVolume, sale.volume.as_ref())?,
                order_id: sale.order_id,
                days_to_first_sale: sale.days_to_first_sale,
            },
            kpi_signal::Payload::RankAchieved(rank) => Payload::RankAchieved {
                level: rank.rank_level,
                name: rank.rank_name,
                days_to_rank: rank.days_to_rank,
            },
            kpi_signal::Payload::Inactive(inactive) => Payload::Inactive {
                last_active_at: time(inactive.last_active_at.as_ref())?,
                inactive_days: inactive.inactive_days,
            },
            kpi_signal::Payload::GoalAchieved(goal) => {
                let counter = counter(goal.metric)?;
                Payload::GoalAchieved {
                    target: number(counter, goal.target.as_ref())?,
                    value: number(counter, goal.value.as_ref())?,
                    plan_id: goal.plan_id,
                    goal_id: goal.goal_id,
                    counter,
                }
            }
            kpi_signal::Payload::GoalMissed(goal) => {
                let counter = counter(goal.metric)?;
                Payload::GoalMissed {
                    target: number(counter, goal.target.as_ref())?,
                    value: number(counter, goal.value.as_ref())?,
                    plan_id: goal.plan_id,
                    goal_id: goal.goal_id,
                    counter,
                }
            }
            kpi_signal::Payload::TargetCrossed(crossed) => {
                let counter = counter(crossed.metric)?;
                let subject = crossed.subject?;
                let window = crossed.window?;
                let anchor = window.anchor.and_then(|date| {
                    chrono::NaiveDate::from_ymd_opt(
                        date.year,
                        u32::try_from(date.month).ok()?,
                        u32::try_from(date.day).ok()?,
                    )
                });
                let calendar = Calendar::new(chrono_tz::UTC);
                let bucket = match (WindowKind::try_from(window.kind).ok()?, anchor) {
                    (WindowKind::Lifetime, _) => Bucket::Lifetime,
                    (WindowKind::Day, Some(day)) => Bucket::Day(day),
                    (WindowKind::Week | WindowKind::Month, Some(day)) => {
                        let at = day.and_hms_opt(12, 0, 0)?.and_utc();
                        let [_, week, month, _] = calendar.buckets(at);
                        if WindowKind::try_from(window.kind).ok()? == WindowKind::Week {
                            week
                        } else {
                            month
                        }
                    }
                    _ => return None,
                };
                Payload::TargetCrossed {
                    target_id: crossed.target_id,
                    subject_kind: SubjectKind::try_from(subject.kind).ok()?,
                    subject_id: subject.id,
                    bucket,
                    counter,
                    threshold: number(counter, crossed.threshold.as_ref())?,
                    value: number(counter, crossed.value.as_ref())?,
                }
            }
        };
        Some(Self {
            occurred_at: time(signal.occurred_at.as_ref())?,
            tenant_id: signal.tenant_id,
            partner_id: signal.partner_id,
            signal_id: signal.signal_id,
            payload,
        })
    }

    /// TargetCrossed: `target`'s number of `subject_id` in `bucket` went from below its
    /// threshold to `value`, at or above it, `now`. The id names (target, subject, bucket):
    /// crossing again after a dip repeats it.
    pub fn target_crossed_now(
        tenant_id: &str,
        target: &crate::target::Target,
        subject_id: &str,
        recipient: &str,
        bucket: Bucket,
        value: i64,
        now: DateTime<Utc>,
    ) -> Self {
        let key = format!(
            "{}\u{1f}{}\u{1f}{subject_id}\u{1f}{bucket}",
            target.target_id,
            target.subject_code()
        );
        Self {
            tenant_id: tenant_id.to_owned(),
            partner_id: recipient.to_owned(),
            signal_id: signal_id(tenant_id, "", "target", &key),
            occurred_at: now,
            payload: Payload::TargetCrossed {
                target_id: target.target_id.clone(),
                subject_kind: target.subject_kind,
                subject_id: subject_id.to_owned(),
                bucket,
                counter: target.counter,
                threshold: target.threshold,
                value,
            },
        }
    }

    /// GoalMissed for a mentee's goal short of its target; `None` when it was reached.
    pub fn goal_missed_of(
        tenant_id: &str,
        mentee_id: &str,
        goal: &crate::state::partner::Goal,
    ) -> Option<Self> {
        if goal.progress >= goal.spec.target {
            return None;
        }
        Some(Self {
            tenant_id: tenant_id.to_owned(),
            partner_id: mentee_id.to_owned(),
            signal_id: signal_id(tenant_id, mentee_id, "goal_missed", &goal.spec.goal_id),
            occurred_at: DateTime::from_timestamp_micros(goal.spec.due)?,
            payload: Payload::GoalMissed {
                plan_id: goal.spec.plan_id.clone(),
                goal_id: goal.spec.goal_id.clone(),
                counter: goal.spec.counter,
                target: goal.spec.target,
                value: goal.progress,
            },
        })
    }

    /// Inactive for a partner whose latest activity was at `last_active_micros`: it happened
    /// when `after` had passed since; `now` counts the days.
    pub fn inactive(
        tenant_id: &str,
        partner_id: &str,
        last_active_micros: i64,
        after: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let last_active_at = DateTime::from_timestamp_micros(last_active_micros)?;
        Some(Self {
            tenant_id: tenant_id.to_owned(),
            partner_id: partner_id.to_owned(),
            signal_id: signal_id(
                tenant_id,
                partner_id,
                "inactive",
                &last_active_micros.to_string(),
            ),
            occurred_at: last_active_at + after,
            payload: Payload::Inactive {
                last_active_at,
                inactive_days: u32::try_from(Calendar::whole_days(last_active_at, now))
                    .unwrap_or(0),
            },
        })
    }

    pub fn to_proto(&self) -> proto::KpiSignal {
        let payload = match &self.payload {
            Payload::FirstSale {
                order_id,
                volume,
                days_to_first_sale,
            } => kpi_signal::Payload::FirstSale(proto::FirstSale {
                order_id: order_id.clone(),
                volume: Some(decimal(*volume)),
                days_to_first_sale: *days_to_first_sale,
            }),
            Payload::RankAchieved {
                level,
                name,
                days_to_rank,
            } => kpi_signal::Payload::RankAchieved(proto::RankAchieved {
                rank_level: *level,
                rank_name: name.clone(),
                days_to_rank: *days_to_rank,
            }),
            Payload::Inactive {
                last_active_at,
                inactive_days,
            } => kpi_signal::Payload::Inactive(proto::Inactive {
                last_active_at: Some(timestamp(*last_active_at)),
                inactive_days: *inactive_days,
            }),
            Payload::GoalAchieved {
                plan_id,
                goal_id,
                counter,
                target,
                value,
            } => kpi_signal::Payload::GoalAchieved(proto::GoalAchieved {
                plan_id: plan_id.clone(),
                goal_id: goal_id.clone(),
                metric: counter.metric().unwrap_or(Metric::Unspecified).into(),
                target: Some(counter_number(*counter, *target)),
                value: Some(counter_number(*counter, *value)),
            }),
            Payload::GoalMissed {
                plan_id,
                goal_id,
                counter,
                target,
                value,
            } => kpi_signal::Payload::GoalMissed(proto::GoalMissed {
                plan_id: plan_id.clone(),
                goal_id: goal_id.clone(),
                metric: counter.metric().unwrap_or(Metric::Unspecified).into(),
                target: Some(counter_number(*counter, *target)),
                value: Some(counter_number(*counter, *value)),
            }),
            Payload::TargetCrossed {
                target_id,
                subject_kind,
                subject_id,
                bucket,
                counter,
                threshold,
                value,
            } => {
                let number = |value: i64| counter_number(*counter, value);
                let window_kind = match bucket {
                    Bucket::Day(_) => WindowKind::Day,
                    Bucket::Week { .. } => WindowKind::Week,
                    Bucket::Month { .. } => WindowKind::Month,
                    Bucket::Lifetime => WindowKind::Lifetime,
                };
                kpi_signal::Payload::TargetCrossed(proto::TargetCrossed {
                    target_id: target_id.clone(),
                    subject: Some(proto::Subject {
                        kind: (*subject_kind).into(),
                        id: subject_id.clone(),
                        mentor_id: String::new(),
                    }),
                    window: Some(proto::Window {
                        kind: window_kind.into(),
                        anchor: bucket.first_day().map(Into::into),
                    }),
                    metric: counter.metric().unwrap_or(Metric::Unspecified).into(),
                    threshold: Some(number(*threshold)),
                    value: Some(number(*value)),
                })
            }
        };
        proto::KpiSignal {
            tenant_id: self.tenant_id.clone(),
            signal_id: self.signal_id.clone(),
            partner_id: self.partner_id.clone(),
            occurred_at: Some(timestamp(self.occurred_at)),
            payload: Some(payload),
        }
    }
}

/// A number of `counter` on the wire: volumes as decimals, counts as whole numbers.
fn counter_number(counter: Counter, value: i64) -> mentorstream_proto::common::v1::Decimal {
    if counter == Counter::SalesVolume {
        decimal(value)
    } else {
        mentorstream_proto::common::v1::Decimal {
            value: value.to_string(),
        }
    }
}

/// The stable id of a signal's cause: 128 bits of SHA-256, in hex.
pub fn signal_id(tenant_id: &str, partner_id: &str, kind: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [tenant_id, partner_id, kind, key] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Publishes signals to the signals topic, keyed by tenant and partner, with the signal id as
/// the CloudEvents id.
#[derive(Debug, Clone)]
pub struct KafkaSignals {
    pub producer: Producer,
    pub topic: String,
}

/// How long one signal may take to be acknowledged.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(30);

impl SignalSink for KafkaSignals {
    fn publish<'a>(&'a self, signals: &'a [Signal]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut pending = Vec::with_capacity(signals.len());
            for signal in signals {
                let record = OutboundRecord::protobuf(
                    &self.topic,
                    format!("{}/{}", signal.tenant_id, signal.partner_id),
                    &signal.to_proto(),
                    CloudEvent {
                        id: signal.signal_id.clone(),
                        event_type: "mentorstream.kpi.v1.KpiSignal".into(),
                        source: format!("/tenants/{}/kpi", signal.tenant_id),
                        time: signal.occurred_at,
                    },
                );
                pending.push(
                    self.producer
                        .enqueue(&record)
                        .await
                        .map_err(|error| error.to_string())?,
                );
            }
            for delivery in pending {
                delivery.await.map_err(|error| error.to_string())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::partner::{GoalSpec, Sale};
    use crate::state::rank::Rank;

    #[test]
    fn a_signal_counts_whole_days_from_the_enrolment_and_keeps_its_id() {
        let enrolled = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let sold = enrolled + chrono::Duration::hours(47);
        let announcement = Announcement::FirstSale {
            enrolled: Rank::new(enrolled, "crm", "e-1"),
            sale: Sale {
                rank: Rank::new(sold, "shop", "e-7"),
                order_id: "o-1".into(),
                volume: 4950,
            },
        };
        let signal = Signal::announced("t1", "ann", &announcement);
        assert_eq!(signal.occurred_at, sold);
        assert_eq!(
            signal.payload,
            Payload::FirstSale {
                order_id: "o-1".into(),
                volume: 4950,
                days_to_first_sale: 1,
            }
        );
        assert_eq!(signal.signal_id, signal_id("t1", "ann", "first_sale", ""));
        assert_ne!(signal.signal_id, signal_id("t1", "bob", "first_sale", ""));
    }

    #[test]
    fn signals_round_trip_through_their_published_form() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let goal = GoalSpec {
            goal_id: "g".into(),
            plan_id: "p".into(),
            counter: Counter::SalesVolume,
            target: 10_050,
            start: 0,
            due: at.timestamp_micros(),
        };
        let target = crate::target::Target {
            target_id: "t".into(),
            subject_kind: SubjectKind::Team,
            counter: Counter::Orders,
            window: crate::target::TargetWindow::Week,
            threshold: 3,
        };
        let week = Calendar::new(chrono_tz::UTC).buckets(at)[1];
        let signals = [
            Signal::announced(
                "t1",
                "ann",
                &Announcement::GoalAchieved {
                    goal,
                    value: 10_100,
                    rank: Rank::new(at, "crm", "x"),
                },
            ),
            Signal::target_crossed_now("t1", &target, "ann", "ann", week, 3, at),
            Signal::inactive(
                "t1",
                "bob",
                at.timestamp_micros(),
                chrono::Duration::days(7),
                at,
            )
            .expect("valid"),
        ];
        for signal in signals {
            assert_eq!(Signal::from_proto(signal.to_proto()), Some(signal));
        }
    }
}
