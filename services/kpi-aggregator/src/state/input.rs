//! Activity and mentorship events as the rules take them: one [`Event`] per partner it
//! concerns, in the tenant's calendar.

use chrono::{DateTime, Utc};
use mentorstream_proto::activity::v1::{ActivityEvent, activity_event::Payload};
use mentorstream_proto::mentorship::v1::{GoalSet, MentorshipEvent, mentorship_event};

use super::counts::LocalDay;
use super::membership::Change;
use super::partner::{Event, EventKind, GoalSpec};
use super::rank::Rank;
use crate::calendar::Calendar;
use crate::fold::{FoldError, MENTORSHIP_SOURCE, hundredths};
use crate::metric::Counter;

/// The partner of an activity event and what it is to the rules.
pub fn activity(event: &ActivityEvent, calendar: &Calendar) -> Result<(String, Event), FoldError> {
    let occurred_at = timestamp(event.occurred_at.as_ref()).ok_or(FoldError::Time)?;
    let volume = |value: Option<&mentorstream_proto::common::v1::Decimal>| {
        hundredths(value.map(|value| value.value.as_str()))
    };
    let kind = match event.payload.as_ref().ok_or(FoldError::Payload)? {
        Payload::PartnerEnrolled(enrolled) => EventKind::Enrolled {
            sponsor: enrolled.sponsor_id.clone(),
        },
        Payload::ActivityPing(_) => EventKind::Ping,
        Payload::OrderPlaced(order) => EventKind::Order {
            order_id: order.order_id.clone(),
            volume: volume(order.volume.as_ref())?,
        },
        Payload::OrderRefunded(refund) => EventKind::Refund {
            order_id: refund.order_id.clone(),
            volume: volume(refund.volume.as_ref())?,
        },
        Payload::ModuleCompleted(module) => EventKind::Module {
            module_id: module.module_id.clone(),
            minutes: i64::from(module.minutes),
        },
        Payload::EventAttended(attended) => EventKind::Attended {
            event_id: attended.event_id.clone(),
        },
        Payload::RankAchieved(achieved) => EventKind::RankReached {
            level: achieved.rank_level,
            name: achieved.rank_name.clone(),
        },
    };
    let event_of_partner = Event {
        rank: Rank::new(occurred_at, &event.source, &event.source_event_id),
        day: LocalDay::of(calendar.local_day(occurred_at)),
        kind,
    };
    Ok((event.partner_id.clone(), event_of_partner))
}

/// The partners a mentorship event concerns and what it is to each: sessions completed and
/// missed (the mentor and every expected mentee), feedback (the mentor), membership and goals
/// (the mentee). Events that change no KPI give none.
pub fn mentorship(
    event: &MentorshipEvent,
    calendar: &Calendar,
) -> Result<Vec<(String, Event)>, FoldError> {
    use mentorship_event::Payload as Mentorship;
    let occurred_at = timestamp(event.occurred_at.as_ref()).ok_or(FoldError::Time)?;
    let session = |session_id: &str, counter| EventKind::Session {
        session_id: session_id.to_owned(),
        counter,
    };
    let member = |change, group: &str, mentor: &str| EventKind::Member {
        change,
        group: group.to_owned(),
        mentor: mentor.to_owned(),
    };
    let kinds: Vec<(&str, EventKind)> = match event.payload.as_ref().ok_or(FoldError::Payload)? {
        Mentorship::MenteeAssigned(assigned) => vec![(
            &assigned.mentee_id,
            member(Change::Assign, &assigned.group_id, &assigned.mentor_id),
        )],
        Mentorship::MenteeUnassigned(unassigned) => vec![(
            &unassigned.mentee_id,
            member(
                Change::Unassign,
                &unassigned.group_id,
                &unassigned.mentor_id,
            ),
        )],
        Mentorship::SessionCompleted(completed) => {
            let mut kinds = vec![(
                completed.mentor_id.as_str(),
                session(&completed.session_id, Counter::SessionsCompleted),
            )];
            for mentee in &completed.mentee_ids {
                let counter = if completed.attendee_ids.contains(mentee) {
                    Counter::SessionsCompleted
                } else {
                    Counter::SessionsMissed
                };
                kinds.push((mentee, session(&completed.session_id, counter)));
            }
            kinds
        }
        Mentorship::SessionMissed(missed) => std::iter::once(&missed.mentor_id)
            .chain(&missed.mentee_ids)
            .map(|partner| {
                let kind = session(&missed.session_id, Counter::SessionsMissed);
                (partner.as_str(), kind)
            })
            .collect(),
        Mentorship::FeedbackSubmitted(feedback) => vec![(
            &feedback.mentor_id,
            EventKind::Feedback {
                session_id: feedback.session_id.clone(),
                mentee_id: feedback.mentee_id.clone(),
                rating: i64::from(feedback.rating),
            },
        )],
        Mentorship::GoalSet(set) => goal(set)
            .map(|spec| vec![(set.mentee_id.as_str(), EventKind::GoalSet(spec))])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let rank = Rank::new(occurred_at, MENTORSHIP_SOURCE, &event.event_id);
    let day = LocalDay::of(calendar.local_day(occurred_at));
    Ok(kinds
        .into_iter()
        .filter(|(partner, _)| !partner.is_empty())
        .map(|(partner, kind)| {
            let event = Event {
                rank: rank.clone(),
                day,
                kind,
            };
            (partner.to_owned(), event)
        })
        .collect())
}

/// A goal as the rules keep it; `None` for a goal on a metric that is not a counter or with
/// a target or period that cannot be read (the mentorship service refuses those).
fn goal(set: &GoalSet) -> Option<GoalSpec> {
    let counter = Counter::of_metric(set.metric)?;
    let text = set.target.as_ref()?.value.as_str();
    let target = if counter == Counter::SalesVolume {
        hundredths(Some(text)).ok()?
    } else {
        text.parse().ok()?
    };
    let micros = |time| timestamp(time).map(|time| time.timestamp_micros());
    Some(GoalSpec {
        goal_id: set.goal_id.clone(),
        plan_id: set.plan_id.clone(),
        counter,
        target,
        start: micros(set.starts_at.as_ref())?,
        due: micros(set.due_at.as_ref())?,
    })
}

fn timestamp(time: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let time = time?;
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use mentorstream_proto::activity::v1::OrderPlaced;
    use mentorstream_proto::common::v1::Decimal;
    use mentorstream_proto::mentorship::v1::SessionCompleted;

    use super::*;

    const SECONDS: i64 = 1_790_000_000;

    fn at() -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: SECONDS,
            nanos: 0,
        })
    }

    #[test]
    fn an_order_is_an_event_of_its_partner_on_the_local_day() {
        let calendar = Calendar::new(chrono_tz::Asia::Tokyo);
        let event = ActivityEvent {
            source: "shop".into(),
            source_event_id: "o-1".into(),
            occurred_at: at(),
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
        let (partner, folded) = activity(&event, &calendar).expect("folds");
        let occurred_at = DateTime::from_timestamp(SECONDS, 0).expect("time");
        assert_eq!(partner, "p-1");
        assert_eq!(folded.rank, Rank::new(occurred_at, "shop", "o-1"));
        assert_eq!(folded.day, LocalDay::of(calendar.local_day(occurred_at)));
        assert_eq!(
            folded.kind,
            EventKind::Order {
                order_id: "1001".into(),
                volume: 4950
            }
        );
        let bad = ActivityEvent {
            payload: Some(Payload::OrderPlaced(OrderPlaced {
                order_id: "1001".into(),
                volume: Some(Decimal {
                    value: "1.234".into(),
                }),
                amount: None,
            })),
            ..event
        };
        assert_eq!(
            activity(&bad, &calendar).err(),
            Some(FoldError::Volume("1.234".into()))
        );
    }

    #[test]
    fn a_completed_session_counts_for_the_mentor_and_every_expected_mentee() {
        let calendar = Calendar::new(chrono_tz::UTC);
        let event = MentorshipEvent {
            event_id: "e-1".into(),
            occurred_at: at(),
            payload: Some(mentorship_event::Payload::SessionCompleted(
                SessionCompleted {
                    session_id: "s-1".into(),
                    mentor_id: "mentor".into(),
                    mentee_ids: vec!["came".into(), "absent".into()],
                    attendee_ids: vec!["came".into()],
                    ..SessionCompleted::default()
                },
            )),
            ..MentorshipEvent::default()
        };
        let events = mentorship(&event, &calendar).expect("folds");
        let counted: Vec<(&str, Counter)> = events
            .iter()
            .map(|(partner, event)| match &event.kind {
                EventKind::Session { counter, .. } => (partner.as_str(), *counter),
                other => panic!("not a session: {other:?}"),
            })
            .collect();
        assert_eq!(
            counted,
            vec![
                ("mentor", Counter::SessionsCompleted),
                ("came", Counter::SessionsCompleted),
                ("absent", Counter::SessionsMissed)
            ]
        );
        assert!(
            events
                .iter()
                .all(|(_, event)| event.rank.source == MENTORSHIP_SOURCE)
        );
    }
}
