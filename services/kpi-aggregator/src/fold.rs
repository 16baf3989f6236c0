//! What an activity or mentorship event does to partner shards (stage 1 of
//! docs/kpi-state.md), as operations for the shard script. Pure: the tenant's calendar is a
//! parameter.

use chrono::{DateTime, Utc};
use mentorstream_proto::activity::v1::{ActivityEvent, activity_event::Payload};
use mentorstream_proto::mentorship::v1::{MentorshipEvent, mentorship_event};
use sha2::{Digest, Sha256};

use crate::calendar::{Bucket, Calendar};
use crate::metric::Counter;

/// One event's operations on its partner's shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEvent {
    /// Offset of the record in its topic-partition.
    pub offset: i64,
    /// The event's identity, hashed: the shard counts an id once.
    pub id: String,
    /// Day, week and month of `occurred_at` (lifetime is implied).
    pub buckets: [Bucket; 3],
    pub operations: Vec<Operation>,
}

/// An operation of the shard script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Counts `amounts` once per `fact`, in the buckets of the earliest event (by `rank`).
    First {
        fact: String,
        rank: String,
        amounts: Vec<(Counter, i64)>,
    },
    /// An order placed: one order and its volume (hundredths), net of its refunds.
    Order {
        order_id: String,
        rank: String,
        volume: i64,
    },
    /// A refund of an order's volume (hundredths), in the order's buckets.
    Refund { order_id: String, volume: i64 },
    /// The partner's enrolment: the genealogy edge to the sponsor (empty for a root) and the
    /// sponsor's recruit. The earliest enrolment counts.
    Enrol { sponsor_id: String, rank: String },
    /// Activity by the partner: their latest activity moves forward.
    Active { rank: String },
    /// A rank level reached: counted (and named) the first time.
    Rank {
        level: u32,
        name: String,
        rank: String,
    },
    /// A development goal of the mentee: `counter` summed over the contributions from `start`
    /// to `due` (20-digit micros) should reach `target` (the counter's units).
    Goal {
        goal_id: String,
        plan_id: String,
        counter: Counter,
        target: i64,
        start: String,
        due: String,
        rank: String,
    },
    /// A mentee assigned to or unassigned from a group; the partner is the mentee.
    Member {
        rank: String,
        change: MembershipChange,
        group_id: String,
        mentor_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Assign,
    Unassign,
}

impl MembershipChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assign => "assign",
            Self::Unassign => "unassign",
        }
    }
}

/// The `source` of mentorship events in ranks and identities: their ids are the outbox's.
pub const MENTORSHIP_SOURCE: &str = "mentorship";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FoldError {
    #[error("event has no occurred_at or an invalid one")]
    Time,
    #[error("event has no payload this aggregator knows")]
    Payload,
    #[error("volume `{0}` is not a decimal with at most 2 places")]
    Volume(String),
}

/// The operations of `event`, which sits at `offset` of its partition.
pub fn partner_event(
    event: &ActivityEvent,
    offset: i64,
    calendar: &Calendar,
) -> Result<ShardEvent, FoldError> {
    let occurred_at = occurred_at(event).ok_or(FoldError::Time)?;
    let [day, week, month, _] = calendar.buckets(occurred_at);
    let rank = rank(occurred_at, &event.source, &event.source_event_id);
    let mut operations = vec![
        Operation::First {
            fact: format!("day\u{1e}{}", calendar.local_day(occurred_at)),
            rank: rank.clone(),
            amounts: vec![(Counter::ActiveDays, 1)],
        },
        Operation::Active { rank: rank.clone() },
    ];
    match event.payload.as_ref().ok_or(FoldError::Payload)? {
        Payload::PartnerEnrolled(enrolled) => operations.push(Operation::Enrol {
            sponsor_id: enrolled.sponsor_id.clone(),
            rank,
        }),
        Payload::ActivityPing(_) => {}
        Payload::OrderPlaced(order) => operations.push(Operation::Order {
            order_id: order.order_id.clone(),
            rank,
            volume: hundredths(order.volume.as_ref().map(|volume| volume.value.as_str()))?,
        }),
        Payload::OrderRefunded(refund) => operations.push(Operation::Refund {
            order_id: refund.order_id.clone(),
            volume: hundredths(refund.volume.as_ref().map(|volume| volume.value.as_str()))?,
        }),
        Payload::ModuleCompleted(module) => operations.push(Operation::First {
            fact: format!("mod\u{1e}{}", module.module_id),
            rank,
            amounts: vec![
                (Counter::ModulesCompleted, 1),
                (Counter::LearningMinutes, i64::from(module.minutes)),
            ],
        }),
        Payload::EventAttended(attended) => operations.push(Operation::First {
            fact: format!("evt\u{1e}{}", attended.event_id),
            rank,
            amounts: vec![(Counter::EventsAttended, 1)],
        }),
        Payload::RankAchieved(achieved) => operations.push(Operation::Rank {
            level: achieved.rank_level,
            name: achieved.rank_name.clone(),
            rank,
        }),
    }
    Ok(ShardEvent {
        offset,
        id: identity(&event.source, &event.source_event_id),
        buckets: [day, week, month],
        operations,
    })
}

/// The operations of a mentorship `event` at `offset`, per partner it concerns: sessions
/// completed and missed (once per session for the mentor and each mentee), feedback received
/// by the mentor (once per mentee and session), and membership changes of the mentee. Events
/// that change no KPI give none.
pub fn mentorship_event(
    event: &MentorshipEvent,
    offset: i64,
    calendar: &Calendar,
) -> Result<Vec<(String, ShardEvent)>, FoldError> {
    use mentorship_event::Payload as Mentorship;
    let occurred_at = event
        .occurred_at
        .as_ref()
        .and_then(timestamp)
        .ok_or(FoldError::Time)?;
    let [day, week, month, _] = calendar.buckets(occurred_at);
    let rank = rank(occurred_at, MENTORSHIP_SOURCE, &event.event_id);
    let id = identity(MENTORSHIP_SOURCE, &event.event_id);
    let session = |session_id: &str, counter: Counter| Operation::First {
        fact: format!("ses\u{1e}{session_id}"),
        rank: rank.clone(),
        amounts: vec![(counter, 1)],
    };
    let member = |change, group_id: &str, mentor_id: &str| Operation::Member {
        rank: rank.clone(),
        change,
        group_id: group_id.to_owned(),
        mentor_id: mentor_id.to_owned(),
    };
    let operations: Vec<(&str, Operation)> =
        match event.payload.as_ref().ok_or(FoldError::Payload)? {
            Mentorship::MenteeAssigned(assigned) => vec![(
                &assigned.mentee_id,
                member(
                    MembershipChange::Assign,
                    &assigned.group_id,
                    &assigned.mentor_id,
                ),
            )],
            Mentorship::MenteeUnassigned(unassigned) => vec![(
                &unassigned.mentee_id,
                member(
                    MembershipChange::Unassign,
                    &unassigned.group_id,
                    &unassigned.mentor_id,
                ),
            )],
            Mentorship::SessionCompleted(completed) => {
                let mut operations = vec![(
                    completed.mentor_id.as_str(),
                    session(&completed.session_id, Counter::SessionsCompleted),
                )];
                for mentee in &completed.mentee_ids {
                    let counter = if completed.attendee_ids.contains(mentee) {
                        Counter::SessionsCompleted
                    } else {
                        Counter::SessionsMissed
                    };
                    operations.push((mentee, session(&completed.session_id, counter)));
                }
                operations
            }
            Mentorship::SessionMissed(missed) => std::iter::once(&missed.mentor_id)
                .chain(&missed.mentee_ids)
                .map(|partner| {
                    (
                        partner.as_str(),
                        session(&missed.session_id, Counter::SessionsMissed),
                    )
                })
                .collect(),
            Mentorship::FeedbackSubmitted(feedback) => vec![(
                &feedback.mentor_id,
                Operation::First {
                    fact: format!(
                        "fb\u{1e}{}\u{1e}{}",
                        feedback.session_id, feedback.mentee_id
                    ),
                    rank: rank.clone(),
                    amounts: vec![
                        (Counter::FeedbackSum, i64::from(feedback.rating)),
                        (Counter::FeedbackCount, 1),
                    ],
                },
            )],
            Mentorship::GoalSet(set) => goal_operation(set, &rank)
                .map(|operation| vec![(set.mentee_id.as_str(), operation)])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
    Ok(operations
        .into_iter()
        .filter(|(partner, _)| !partner.is_empty())
        .map(|(partner, operation)| {
            (
                partner.to_owned(),
                ShardEvent {
                    offset,
                    id: id.clone(),
                    buckets: [day, week, month],
                    operations: vec![operation],
                },
            )
        })
        .collect())
}

/// A goal as the shard script keeps it; `None` for a goal on a metric that is not a counter
/// or with a target or period that cannot be read (the mentorship service refuses those).
fn goal_operation(
    set: &mentorstream_proto::mentorship::v1::GoalSet,
    rank: &str,
) -> Option<Operation> {
    let counter = Counter::of_metric(set.metric)?;
    let text = set.target.as_ref()?.value.as_str();
    let target = if counter == Counter::SalesVolume {
        hundredths(Some(text)).ok()?
    } else {
        text.parse().ok()?
    };
    let micros = |time: Option<&prost_types::Timestamp>| {
        timestamp(time?).map(|time| format!("{:020}", time.timestamp_micros()))
    };
    Some(Operation::Goal {
        goal_id: set.goal_id.clone(),
        plan_id: set.plan_id.clone(),
        counter,
        target,
        start: micros(set.starts_at.as_ref())?,
        due: micros(set.due_at.as_ref())?,
        rank: rank.to_owned(),
    })
}

fn occurred_at(event: &ActivityEvent) -> Option<DateTime<Utc>> {
    timestamp(event.occurred_at.as_ref()?)
}

fn timestamp(time: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
}

/// Orders "first" candidates by occurred_at, then source, then source_event_id (§6). Fields
/// are joined by \x1e, which sorts below every character an id may hold.
pub fn rank(occurred_at: DateTime<Utc>, source: &str, source_event_id: &str) -> String {
    format!(
        "{:020}\u{1e}{source}\u{1e}{source_event_id}",
        occurred_at.timestamp_micros()
    )
}

/// The occurred_at of a rank (20 digits of microseconds, then source and id).
pub fn rank_time(rank: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(rank.get(..20)?.parse().ok()?)
}

/// 128 bits of SHA-256 of (source, source_event_id), in hex.
pub fn identity(source: &str, source_event_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0]);
    hasher.update(source_event_id.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// A canonical volume ("12.50", "7", "0.5") in hundredths.
pub fn hundredths(volume: Option<&str>) -> Result<i64, FoldError> {
    let text = volume.unwrap_or_default();
    let malformed = || FoldError::Volume(text.to_owned());
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(integer) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 2 {
        return Err(malformed());
    }
    let integer: i64 = integer.parse().map_err(|_| malformed())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| malformed())?;
    integer
        .checked_mul(100)
        .and_then(|units| units.checked_add(fraction))
        .ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use mentorstream_proto::activity::v1::{ModuleCompleted, OrderPlaced};
    use mentorstream_proto::common::v1::Decimal;

    use super::*;

    #[test]
    fn volumes_become_hundredths() {
        assert_eq!(hundredths(Some("12.50")), Ok(1250));
        assert_eq!(hundredths(Some("7")), Ok(700));
        assert_eq!(hundredths(Some("0.5")), Ok(50));
        assert_eq!(
            hundredths(Some("1.234")),
            Err(FoldError::Volume("1.234".into()))
        );
        assert_eq!(hundredths(Some("-1")), Err(FoldError::Volume("-1".into())));
        assert_eq!(hundredths(None), Err(FoldError::Volume(String::new())));
    }

    #[test]
    fn ranks_order_by_time_then_source_then_id() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        let later = DateTime::from_timestamp(1_790_000_001, 0).expect("time");
        assert!(rank(at, "shop", "b") < rank(later, "crm", "a"));
        assert!(rank(at, "crm", "z") < rank(at, "shop", "a"));
        assert!(rank(at, "shop", "a") < rank(at, "shop", "b"));
        // A shorter source sorts first: "ab" < "abc" whatever follows.
        assert!(rank(at, "ab", "zzz") < rank(at, "abc", "a"));
    }

    #[test]
    fn an_order_counts_its_volume_and_an_active_day() {
        let calendar = Calendar::new(chrono_tz::Europe::Moscow);
        let event = ActivityEvent {
            source: "shop".into(),
            source_event_id: "o-1".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            partner_id: "p-1".into(),
            payload: Some(Payload::OrderPlaced(OrderPlaced {
                order_id: "1001".into(),
                volume: Some(Decimal {
                    value: "49.50".into(),
                }),
                amount: None,
            })),
            ..ActivityEvent::default()
        };
        let folded = partner_event(&event, 7, &calendar).expect("folds");
        let at = DateTime::from_timestamp(1_790_000_000, 0).expect("time");
        assert_eq!(folded.offset, 7);
        assert_eq!(folded.id, identity("shop", "o-1"));
        assert_eq!(
            folded.operations[2],
            Operation::Order {
                order_id: "1001".into(),
                rank: rank(at, "shop", "o-1"),
                volume: 4950
            }
        );
        let module = ActivityEvent {
            payload: Some(Payload::ModuleCompleted(ModuleCompleted {
                module_id: "m-3".into(),
                minutes: 25,
            })),
            ..event
        };
        let folded = partner_event(&module, 8, &calendar).expect("folds");
        assert_eq!(
            folded.operations[2],
            Operation::First {
                fact: "mod\u{1e}m-3".into(),
                rank: rank(at, "shop", "o-1"),
                amounts: vec![
                    (Counter::ModulesCompleted, 1),
                    (Counter::LearningMinutes, 25)
                ],
            }
        );
    }
}
