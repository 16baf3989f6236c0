//! The one encoding of the KPI state in Redis: a version byte, then a protobuf message
//! (prost). Fields only ever get added, so a newer aggregator reads an older value; a value of
//! an unknown version is refused as malformed rather than misread.

use std::collections::BTreeMap;

use super::counts::{Buckets, Counters, Counts, LocalDay};
use super::group::GroupRecord;
use super::membership::{Change, MembershipEvent, Timeline};
use super::partner::{
    DayLog, Enrolment, Fact, First, Goal, GoalSpec, LogEntry, Order, PartnerRecord, Sale,
};
use super::rank::Rank;
use crate::metric::Counter;

/// The version byte every value written starts with. Version 2 stores counts sparsely (a mask
/// and the numbers that are not zero); version 1 values (every number up to the last that is
/// not zero) are read still.
pub const VERSION: u8 = 2;

/// The versions this aggregator reads.
const READS: [u8; 2] = [1, VERSION];

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("stored value is empty")]
    Empty,
    #[error("stored value has version {0}; this aggregator reads versions 1 to {VERSION}")]
    Version(u8),
    #[error("stored value is not a valid message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("stored value is invalid: {0}")]
    Invalid(&'static str),
}

impl CodecError {
    /// The value was written by a newer aggregator (a rolling upgrade is under way).
    pub fn is_newer(&self) -> bool {
        matches!(self, Self::Version(version) if *version > VERSION)
    }
}

fn encode(message: &impl prost::Message) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + message.encoded_len());
    bytes.push(VERSION);
    message.encode_raw(&mut bytes);
    bytes
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((version, message)) if READS.contains(version) => Ok(M::decode(message)?),
        Some((version, _)) => Err(CodecError::Version(*version)),
    }
}

pub fn encode_counters(counters: &Counters) -> Vec<u8> {
    encode(&CountersWire::from(counters))
}

pub fn decode_counters(bytes: &[u8]) -> Result<Counters, CodecError> {
    Counters::try_from(decode::<CountersWire>(bytes)?)
}

pub fn encode_partner(record: &PartnerRecord) -> Vec<u8> {
    encode(&PartnerWire::from(record))
}

pub fn decode_partner(bytes: &[u8]) -> Result<PartnerRecord, CodecError> {
    PartnerRecord::try_from(decode::<PartnerWire>(bytes)?)
}

pub fn encode_group(group: &GroupRecord) -> Vec<u8> {
    encode(&GroupWire {
        counters: Some(CountersWire::from(&group.counters)),
        mentor: group.mentor.clone(),
        members: group.members.clone(),
        everyone: group.everyone.iter().cloned().collect(),
    })
}

pub fn decode_group(bytes: &[u8]) -> Result<GroupRecord, CodecError> {
    let wire: GroupWire = decode(bytes)?;
    Ok(GroupRecord {
        counters: wire
            .counters
            .map(Counters::try_from)
            .transpose()?
            .unwrap_or_default(),
        mentor: wire.mentor,
        members: wire.members,
        everyone: wire.everyone.into_iter().collect(),
    })
}

#[derive(Clone, PartialEq, prost::Message)]
struct GroupWire {
    #[prost(message, optional, tag = "1")]
    counters: Option<CountersWire>,
    #[prost(string, tag = "2")]
    mentor: String,
    #[prost(btree_map = "string, sint64", tag = "3")]
    members: BTreeMap<String, i64>,
    #[prost(string, repeated, tag = "4")]
    everyone: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CountersWire {
    /// The numbers of the counters in `life_mask` (version 2), or every number (version 1).
    #[prost(sint64, repeated, tag = "1")]
    life: Vec<i64>,
    #[prost(uint32, tag = "5")]
    life_mask: u32,
    #[prost(message, repeated, tag = "2")]
    days: Vec<BucketWire>,
    #[prost(message, repeated, tag = "3")]
    weeks: Vec<BucketWire>,
    #[prost(message, repeated, tag = "4")]
    months: Vec<BucketWire>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BucketWire {
    #[prost(sint32, tag = "1")]
    key: i32,
    /// As `CountersWire::life`.
    #[prost(sint64, repeated, tag = "2")]
    values: Vec<i64>,
    #[prost(uint32, tag = "3")]
    mask: u32,
}

impl From<&Counters> for CountersWire {
    fn from(counters: &Counters) -> Self {
        let buckets = |map: &Buckets| {
            map.iter()
                .map(|(key, counts)| {
                    let (mask, values) = counts.sparse();
                    BucketWire {
                        key: *key,
                        values,
                        mask,
                    }
                })
                .collect()
        };
        let (life_mask, life) = counters.life.sparse();
        Self {
            life,
            life_mask,
            days: buckets(&counters.days),
            weeks: buckets(&counters.weeks),
            months: buckets(&counters.months),
        }
    }
}

/// Counts stored sparsely under a mask, or (a zero mask) every number up to the last that is
/// not zero: version 1, and any all-zero counts.
fn counts(mask: u32, values: &[i64]) -> Result<Counts, CodecError> {
    if mask == 0 {
        Counts::from_values(values).ok_or(CodecError::Invalid("more values than counters"))
    } else {
        Counts::from_sparse(mask, values)
            .ok_or(CodecError::Invalid("counts do not match their mask"))
    }
}

impl TryFrom<CountersWire> for Counters {
    type Error = CodecError;

    fn try_from(wire: CountersWire) -> Result<Self, CodecError> {
        let buckets = |wire: Vec<BucketWire>| -> Result<Buckets, CodecError> {
            wire.into_iter()
                .map(|bucket| Ok((bucket.key, counts(bucket.mask, &bucket.values)?)))
                .collect()
        };
        Ok(Self {
            life: counts(wire.life_mask, &wire.life)?,
            days: buckets(wire.days)?,
            weeks: buckets(wire.weeks)?,
            months: buckets(wire.months)?,
        })
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct RankWire {
    #[prost(int64, tag = "1")]
    micros: i64,
    #[prost(string, tag = "2")]
    source: String,
    #[prost(string, tag = "3")]
    id: String,
}

impl From<&Rank> for RankWire {
    fn from(rank: &Rank) -> Self {
        Self {
            micros: rank.micros,
            source: rank.source.clone(),
            id: rank.id.clone(),
        }
    }
}

impl From<RankWire> for Rank {
    fn from(wire: RankWire) -> Self {
        Self {
            micros: wire.micros,
            source: wire.source,
            id: wire.id,
        }
    }
}

fn rank(wire: Option<RankWire>) -> Result<Rank, CodecError> {
    wire.map(Rank::from)
        .ok_or(CodecError::Invalid("a rank is missing"))
}

fn counter(index: u32) -> Result<Counter, CodecError> {
    Counter::ALL
        .get(index as usize)
        .copied()
        .ok_or(CodecError::Invalid("unknown counter"))
}

/// Pairs of (counter, amount), flattened.
fn amounts_wire(amounts: &[(Counter, i64)]) -> Vec<i64> {
    amounts
        .iter()
        .flat_map(|(counter, amount)| [*counter as i64, *amount])
        .collect()
}

fn amounts(wire: &[i64]) -> Result<Vec<(Counter, i64)>, CodecError> {
    if !wire.len().is_multiple_of(2) {
        return Err(CodecError::Invalid("amounts come in pairs"));
    }
    wire.chunks_exact(2)
        .map(|pair| {
            let index =
                u32::try_from(pair[0]).map_err(|_| CodecError::Invalid("unknown counter"))?;
            Ok((counter(index)?, pair[1]))
        })
        .collect()
}

#[derive(Clone, PartialEq, prost::Message)]
struct PartnerWire {
    #[prost(message, optional, tag = "1")]
    enrolment: Option<EnrolmentWire>,
    #[prost(message, optional, tag = "2")]
    first_sale: Option<SaleWire>,
    #[prost(message, repeated, tag = "3")]
    firsts: Vec<FirstWire>,
    #[prost(btree_map = "uint32, string", tag = "4")]
    rank_names: BTreeMap<u32, String>,
    #[prost(message, repeated, tag = "5")]
    orders: Vec<OrderWire>,
    #[prost(btree_map = "string, sint64", tag = "6")]
    held_refunds: BTreeMap<String, i64>,
    #[prost(message, repeated, tag = "7")]
    membership: Vec<MemberWire>,
    #[prost(message, repeated, tag = "8")]
    goals: Vec<GoalWire>,
    #[prost(message, repeated, tag = "9")]
    days: Vec<DayWire>,
    #[prost(message, optional, tag = "10")]
    latest_activity: Option<RankWire>,
    #[prost(message, optional, tag = "11")]
    personal: Option<CountersWire>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EnrolmentWire {
    #[prost(message, optional, tag = "1")]
    rank: Option<RankWire>,
    #[prost(sint32, tag = "2")]
    day: i32,
    #[prost(string, tag = "3")]
    sponsor: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SaleWire {
    #[prost(message, optional, tag = "1")]
    rank: Option<RankWire>,
    #[prost(string, tag = "2")]
    order_id: String,
    #[prost(sint64, tag = "3")]
    volume: i64,
}

/// A first fact: `kind` 0 module, 1 event attended, 2 session, 3 feedback (`key` the
/// session, `other` the mentee), 4 rank level (`level`).
#[derive(Clone, PartialEq, prost::Message)]
struct FirstWire {
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(string, tag = "2")]
    key: String,
    #[prost(string, tag = "3")]
    other: String,
    #[prost(uint32, tag = "4")]
    level: u32,
    #[prost(message, optional, tag = "5")]
    rank: Option<RankWire>,
    #[prost(sint32, tag = "6")]
    day: i32,
    #[prost(sint64, repeated, tag = "7")]
    amounts: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OrderWire {
    #[prost(string, tag = "1")]
    order_id: String,
    #[prost(message, optional, tag = "2")]
    rank: Option<RankWire>,
    #[prost(sint32, tag = "3")]
    day: i32,
    #[prost(sint64, tag = "4")]
    volume: i64,
    #[prost(sint64, tag = "5")]
    refunded: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberWire {
    #[prost(message, optional, tag = "1")]
    rank: Option<RankWire>,
    #[prost(bool, tag = "2")]
    assign: bool,
    #[prost(string, tag = "3")]
    group: String,
    #[prost(string, tag = "4")]
    mentor: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GoalWire {
    #[prost(string, tag = "1")]
    goal_id: String,
    #[prost(string, tag = "2")]
    plan_id: String,
    #[prost(uint32, tag = "3")]
    counter: u32,
    #[prost(sint64, tag = "4")]
    target: i64,
    #[prost(int64, tag = "5")]
    start: i64,
    #[prost(int64, tag = "6")]
    due: i64,
    #[prost(message, optional, tag = "7")]
    rank: Option<RankWire>,
    #[prost(sint64, tag = "8")]
    progress: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DayWire {
    #[prost(sint32, tag = "1")]
    day: i32,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryWire>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryWire {
    #[prost(message, optional, tag = "1")]
    rank: Option<RankWire>,
    #[prost(bool, tag = "2")]
    event: bool,
    #[prost(bool, tag = "3")]
    activity: bool,
    #[prost(sint64, repeated, tag = "4")]
    contributions: Vec<i64>,
}

fn first_wire(fact: &Fact, first: &First) -> FirstWire {
    let (kind, key, other, level) = match fact {
        Fact::Module(id) => (0, id.clone(), String::new(), 0),
        Fact::Attended(id) => (1, id.clone(), String::new(), 0),
        Fact::Session(id) => (2, id.clone(), String::new(), 0),
        Fact::Feedback {
            session_id,
            mentee_id,
        } => (3, session_id.clone(), mentee_id.clone(), 0),
        Fact::RankLevel(level) => (4, String::new(), String::new(), *level),
    };
    FirstWire {
        kind,
        key,
        other,
        level,
        rank: Some(RankWire::from(&first.rank)),
        day: first.day.0,
        amounts: amounts_wire(&first.amounts),
    }
}

fn first(wire: FirstWire) -> Result<(Fact, First), CodecError> {
    let fact = match wire.kind {
        0 => Fact::Module(wire.key),
        1 => Fact::Attended(wire.key),
        2 => Fact::Session(wire.key),
        3 => Fact::Feedback {
            session_id: wire.key,
            mentee_id: wire.other,
        },
        4 => Fact::RankLevel(wire.level),
        _ => return Err(CodecError::Invalid("unknown kind of first fact")),
    };
    let first = First {
        rank: rank(wire.rank)?,
        day: LocalDay(wire.day),
        amounts: amounts(&wire.amounts)?,
    };
    Ok((fact, first))
}

impl From<&PartnerRecord> for PartnerWire {
    fn from(record: &PartnerRecord) -> Self {
        Self {
            enrolment: record.enrolment.as_ref().map(|enrolment| EnrolmentWire {
                rank: Some(RankWire::from(&enrolment.rank)),
                day: enrolment.day.0,
                sponsor: enrolment.sponsor.clone(),
            }),
            first_sale: record.first_sale.as_ref().map(|sale| SaleWire {
                rank: Some(RankWire::from(&sale.rank)),
                order_id: sale.order_id.clone(),
                volume: sale.volume,
            }),
            firsts: record
                .firsts
                .iter()
                .map(|(fact, first)| first_wire(fact, first))
                .collect(),
            rank_names: record.rank_names.clone(),
            orders: record
                .orders
                .iter()
                .map(|(order_id, order)| OrderWire {
                    order_id: order_id.clone(),
                    rank: Some(RankWire::from(&order.rank)),
                    day: order.day.0,
                    volume: order.volume,
                    refunded: order.refunded,
                })
                .collect(),
            held_refunds: record.held_refunds.clone(),
            membership: record
                .membership
                .events()
                .iter()
                .map(|event| MemberWire {
                    rank: Some(RankWire::from(&event.rank)),
                    assign: event.change == Change::Assign,
                    group: event.group.clone(),
                    mentor: event.mentor.clone(),
                })
                .collect(),
            goals: record
                .goals
                .iter()
                .map(|goal| GoalWire {
                    goal_id: goal.spec.goal_id.clone(),
                    plan_id: goal.spec.plan_id.clone(),
                    counter: goal.spec.counter as u32,
                    target: goal.spec.target,
                    start: goal.spec.start,
                    due: goal.spec.due,
                    rank: Some(RankWire::from(&goal.rank)),
                    progress: goal.progress,
                })
                .collect(),
            days: record
                .days
                .iter()
                .map(|(day, log)| DayWire {
                    day: *day,
                    entries: log
                        .0
                        .iter()
                        .map(|entry| EntryWire {
                            rank: Some(RankWire::from(&entry.rank)),
                            event: entry.event,
                            activity: entry.activity,
                            contributions: amounts_wire(&entry.contributions),
                        })
                        .collect(),
                })
                .collect(),
            latest_activity: record.latest_activity.as_ref().map(RankWire::from),
            personal: Some(CountersWire::from(&record.personal)),
        }
    }
}

impl TryFrom<PartnerWire> for PartnerRecord {
    type Error = CodecError;

    fn try_from(wire: PartnerWire) -> Result<Self, CodecError> {
        let enrolment = wire
            .enrolment
            .map(|enrolment| {
                Ok::<_, CodecError>(Enrolment {
                    rank: rank(enrolment.rank)?,
                    day: LocalDay(enrolment.day),
                    sponsor: enrolment.sponsor,
                })
            })
            .transpose()?;
        let first_sale = wire
            .first_sale
            .map(|sale| {
                Ok::<_, CodecError>(Sale {
                    rank: rank(sale.rank)?,
                    order_id: sale.order_id,
                    volume: sale.volume,
                })
            })
            .transpose()?;
        let orders = wire
            .orders
            .into_iter()
            .map(|order| {
                let placed = Order {
                    rank: rank(order.rank)?,
                    day: LocalDay(order.day),
                    volume: order.volume,
                    refunded: order.refunded,
                };
                Ok((order.order_id, placed))
            })
            .collect::<Result<_, CodecError>>()?;
        let membership = wire
            .membership
            .into_iter()
            .map(|event| {
                Ok(MembershipEvent {
                    rank: rank(event.rank)?,
                    change: if event.assign {
                        Change::Assign
                    } else {
                        Change::Unassign
                    },
                    group: event.group,
                    mentor: event.mentor,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        let goals = wire
            .goals
            .into_iter()
            .map(|goal| {
                Ok(Goal {
                    spec: GoalSpec {
                        goal_id: goal.goal_id,
                        plan_id: goal.plan_id,
                        counter: counter(goal.counter)?,
                        target: goal.target,
                        start: goal.start,
                        due: goal.due,
                    },
                    rank: rank(goal.rank)?,
                    progress: goal.progress,
                })
            })
            .collect::<Result<_, CodecError>>()?;
        let days = wire
            .days
            .into_iter()
            .map(|day| {
                let entries = day
                    .entries
                    .into_iter()
                    .map(|entry| {
                        Ok(LogEntry {
                            rank: rank(entry.rank)?,
                            event: entry.event,
                            activity: entry.activity,
                            contributions: amounts(&entry.contributions)?,
                        })
                    })
                    .collect::<Result<_, CodecError>>()?;
                Ok((day.day, DayLog(entries)))
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(Self {
            enrolment,
            first_sale,
            firsts: wire
                .firsts
                .into_iter()
                .map(first)
                .collect::<Result<_, _>>()?,
            rank_names: wire.rank_names,
            orders,
            held_refunds: wire.held_refunds,
            membership: Timeline::from_events(membership),
            goals,
            days,
            latest_activity: wire.latest_activity.map(Rank::from),
            personal: wire
                .personal
                .map(Counters::try_from)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::state::partner::{Effects, Event, EventKind};

    fn rank(seconds: i64, id: &str) -> Rank {
        Rank::new(
            DateTime::from_timestamp(seconds, 0).expect("time"),
            "crm",
            id,
        )
    }

    /// A record with every kind of fact in it.
    fn busy_record() -> PartnerRecord {
        let mut record = PartnerRecord::default();
        let day = LocalDay(20_600);
        let mut effects = Effects::default();
        let kinds = [
            EventKind::Enrolled {
                sponsor: "s-1".into(),
            },
            EventKind::Order {
                order_id: "1001".into(),
                volume: 4950,
            },
            EventKind::Refund {
                order_id: "1001".into(),
                volume: 50,
            },
            EventKind::Refund {
                order_id: "unknown".into(),
                volume: 70,
            },
            EventKind::Module {
                module_id: "m-1".into(),
                minutes: 25,
            },
            EventKind::Attended {
                event_id: "e-1".into(),
            },
            EventKind::RankReached {
                level: 3,
                name: "Gold".into(),
            },
            EventKind::Session {
                session_id: "s-1".into(),
                counter: Counter::SessionsMissed,
            },
            EventKind::Feedback {
                session_id: "s-1".into(),
                mentee_id: "m".into(),
                rating: 5,
            },
            EventKind::Member {
                change: Change::Assign,
                group: "g".into(),
                mentor: "mentor".into(),
            },
            EventKind::GoalSet(GoalSpec {
                goal_id: "goal".into(),
                plan_id: "plan".into(),
                counter: Counter::Orders,
                target: 3,
                start: 0,
                due: i64::MAX,
            }),
        ];
        for (n, kind) in kinds.into_iter().enumerate() {
            let seconds = 1_780_000_000 + i64::try_from(n).expect("small") * 60;
            let event = Event {
                rank: rank(seconds, &format!("e{n}")),
                day,
                kind,
            };
            assert!(record.apply(&event, &mut effects));
        }
        record
    }

    #[test]
    fn a_partner_record_round_trips() {
        let record = busy_record();
        assert!(!record.firsts.is_empty() && !record.orders.is_empty() && !record.goals.is_empty());
        let bytes = encode_partner(&record);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode_partner(&bytes).expect("decodes"), record);
        assert_eq!(
            decode_partner(&[]).map_err(|error| error.to_string()).err(),
            Some("stored value is empty".to_owned())
        );
    }

    #[test]
    fn a_group_round_trips() {
        let mut group = GroupRecord::default();
        group.counters.add(LocalDay(20_600), Counter::Orders, 2);
        group.joined("ann", "mentor");
        group.members.insert("ann".into(), 1);
        assert_eq!(decode_group(&encode_group(&group)).expect("decodes"), group);
    }

    #[test]
    fn counters_round_trip() {
        let mut counters = Counters::default();
        counters.add(LocalDay(20_600), Counter::SalesVolume, -4950);
        counters.add(LocalDay(20_500), Counter::ActiveDays, 1);
        let bytes = encode_counters(&counters);
        assert_eq!(decode_counters(&bytes).expect("decodes"), counters);
        assert_eq!(
            decode_counters(&encode_counters(&Counters::default())).expect("decodes"),
            Counters::default()
        );
    }

    #[test]
    fn version_1_counts_every_number_and_still_reads() {
        use prost::Message as _;
        let mut version_1 = vec![1];
        CountersWire {
            life: vec![0, 7],
            life_mask: 0,
            days: vec![BucketWire {
                key: 20_600,
                values: vec![0, 7],
                mask: 0,
            }],
            ..CountersWire::default()
        }
        .encode_raw(&mut version_1);
        let mut expected = Counters::default();
        expected.add(LocalDay(20_600), Counter::SalesVolume, 7);
        let read = decode_counters(&version_1).expect("decodes");
        assert_eq!(read.life, expected.life);
        assert_eq!(read.days, expected.days);
    }

    #[test]
    fn an_unknown_version_or_garbage_is_refused() {
        let mut bytes = encode_partner(&busy_record());
        bytes[0] = 3;
        assert_eq!(
            decode_partner(&bytes)
                .map_err(|error| error.to_string())
                .err(),
            Some("stored value has version 3; this aggregator reads versions 1 to 2".to_owned())
        );
        assert!(matches!(
            decode_partner(&[VERSION, 0xff, 0xff]),
            Err(CodecError::Decode(_))
        ));
        // Thirteen values cannot be counters.
        let wire = CountersWire {
            life: vec![1; 13],
            ..CountersWire::default()
        };
        assert!(matches!(
            decode_counters(&encode(&wire)),
            Err(CodecError::Invalid(_))
        ));
    }
}
