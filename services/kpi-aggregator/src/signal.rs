//! Signals: things worth telling a person, decided in the shard script and published to
//! `mentorstream.kpi.signals.v1` by the forwarder (docs/kpi-state.md, "Signals and timers").
//!
//! A signal's id is a hash of its cause (tenant, partner, kind, fact), so a signal published
//! again after a crash, or announced again for an earlier occurrence of the same fact, carries
//! the same id and the notifier sends one message for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::kpi::v1::{self as proto, kpi_signal};
use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::fold::rank_time;
use crate::metric::{decimal, timestamp};

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
}

/// Where signals go. Publishing must be durable when it returns `Ok`: the outbox entries are
/// trimmed afterwards.
pub trait SignalSink: std::fmt::Debug + Send + Sync {
    fn publish<'a>(&'a self, signals: &'a [Signal]) -> BoxFuture<'a, Result<(), String>>;
}

impl Signal {
    /// A signal from a shard's outbox entry: `kind`, the enrolment's rank and the fact
    /// (`rank \x1f order \x1f volume` or `rank \x1f level \x1f name`). `None` if malformed.
    pub fn from_outbox(
        tenant_id: &str,
        partner_id: &str,
        kind: &str,
        enrolment_rank: &str,
        fact: &str,
    ) -> Option<Self> {
        let enrolled_at = rank_time(enrolment_rank)?;
        let mut fields = fact.split('\u{1f}');
        let occurred_at = rank_time(fields.next()?)?;
        let days = Calendar::whole_days(enrolled_at, occurred_at);
        let (key, payload) = match kind {
            "first_sale" => {
                let order_id = fields.next()?.to_owned();
                let volume = fields.next()?.parse().ok()?;
                (
                    String::new(),
                    Payload::FirstSale {
                        order_id,
                        volume,
                        days_to_first_sale: days,
                    },
                )
            }
            "rank" => {
                let level: u32 = fields.next()?.parse().ok()?;
                let name = fields.next().unwrap_or_default().to_owned();
                (
                    level.to_string(),
                    Payload::RankAchieved {
                        level,
                        name,
                        days_to_rank: days,
                    },
                )
            }
            _ => return None,
        };
        Some(Self {
            tenant_id: tenant_id.to_owned(),
            partner_id: partner_id.to_owned(),
            signal_id: signal_id(tenant_id, partner_id, kind, &key),
            occurred_at,
            payload,
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
    use crate::fold::rank;

    #[test]
    fn a_signal_counts_whole_days_from_the_enrolment_and_keeps_its_id() {
        let enrolled = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let sold = enrolled + chrono::Duration::hours(47);
        let fact = format!("{}\u{1f}o-1\u{1f}4950", rank(sold, "shop", "e-7"));
        let signal = Signal::from_outbox(
            "t1",
            "ann",
            "first_sale",
            &rank(enrolled, "crm", "e-1"),
            &fact,
        )
        .expect("well formed");
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
        assert_eq!(
            Signal::from_outbox("t1", "ann", "rank", "garbage", &fact),
            None
        );
    }
}
