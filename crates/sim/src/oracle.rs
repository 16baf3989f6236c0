//! docs/spec.md §6 computed directly from event sets: what every KPI must be, whatever the order
//! the events arrive in. Used by the aggregator's state tests and the end-to-end suite as their
//! independent oracle; it shares no code with the aggregator.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use chrono_tz::Tz;
use mentorstream_proto::activity::v1::{ActivityEvent, activity_event::Payload};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::mentorship::v1::{MentorshipEvent, mentorship_event};

/// A counter: (kind: "c" personal, "t" team, "g" group, "tenant"; subject; bucket key; field).
pub type Key = (String, String, String, String);

/// Personal, team, group and tenant counters: docs/spec.md §6 computed directly from the event
/// sets.
pub fn expected(
    events: &[ActivityEvent],
    mentorship: &[MentorshipEvent],
    time_zone: Tz,
) -> BTreeMap<Key, i64> {
    let contributions = contributions(events, mentorship, time_zone);
    let mut personal: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for contribution in &contributions {
        for bucket in buckets(contribution.at, time_zone) {
            *personal
                .entry((
                    contribution.partner.clone(),
                    bucket,
                    contribution.field.to_owned(),
                ))
                .or_default() += contribution.amount;
        }
    }
    let parents = parents(events);
    let mut all = BTreeMap::new();
    for ((partner, bucket, field), value) in &personal {
        all.insert(
            ("c".into(), partner.clone(), bucket.clone(), field.clone()),
            *value,
        );
        *all.entry((
            "tenant".into(),
            String::new(),
            bucket.clone(),
            field.clone(),
        ))
        .or_default() += value;
        // The partner's own team and every ancestor's.
        let mut member = Some(partner.clone());
        while let Some(current) = member {
            *all.entry(("t".into(), current.clone(), bucket.clone(), field.clone()))
                .or_default() += value;
            member = parents
                .get(&current)
                .filter(|parent| !parent.is_empty())
                .cloned();
        }
    }
    // A mentee's contributions count for the group whose membership covers their moment;
    // feedback is the mentor's own, and active days have a rule of their own (below).
    for contribution in &contributions {
        if matches!(contribution.field, "fbs" | "fbc" | "act") {
            continue;
        }
        if let Some((group, _)) =
            assignment(mentorship, &contribution.partner, Some(contribution.at))
        {
            for bucket in buckets(contribution.at, time_zone) {
                *all.entry((
                    "g".into(),
                    group.clone(),
                    bucket,
                    contribution.field.to_owned(),
                ))
                .or_default() += contribution.amount;
            }
        }
    }
    // A group counts a mentee's local day as active when at least one of the mentee's events
    // that day happened during membership: on a transfer day both groups may count it.
    let mut group_days: BTreeMap<(String, String, NaiveDate), DateTime<Utc>> = BTreeMap::new();
    for event in events {
        let time = moment(event.occurred_at.as_ref());
        if let Some((group, _)) = assignment(mentorship, &event.partner_id, Some(time)) {
            let day = time.with_timezone(&time_zone).date_naive();
            group_days.insert((group, event.partner_id.clone(), day), time);
        }
    }
    for ((group, _, _), time) in group_days {
        for bucket in buckets(time, time_zone) {
            *all.entry(("g".into(), group.clone(), bucket, "act".into()))
                .or_default() += 1;
        }
    }
    all.retain(|_, value| *value != 0);
    all
}

/// Each partner's sponsor (empty for a root), from their earliest enrolment.
pub fn parents(events: &[ActivityEvent]) -> BTreeMap<String, String> {
    let mut parents: BTreeMap<String, String> = BTreeMap::new();
    let mut enrolled_at: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for event in events {
        if let Some(Payload::PartnerEnrolled(enrolled)) = &event.payload {
            let rank = (
                event.occurred_at.as_ref().expect("time").seconds,
                event.source_event_id.clone(),
            );
            let earliest = enrolled_at
                .entry(event.partner_id.clone())
                .or_insert_with(|| rank.clone());
            if rank <= *earliest {
                *earliest = rank;
                parents.insert(event.partner_id.clone(), enrolled.sponsor_id.clone());
            }
        }
    }
    parents
}

/// A partner and everyone below them in the genealogy the rules give.
pub fn downline(events: &[ActivityEvent], root: &str) -> std::collections::BTreeSet<String> {
    let parents = parents(events);
    parents
        .keys()
        .filter(|partner| {
            let mut current = Some(partner.as_str());
            while let Some(member) = current {
                if member == root {
                    return true;
                }
                current = parents
                    .get(member)
                    .map(String::as_str)
                    .filter(|parent| !parent.is_empty());
            }
            false
        })
        .cloned()
        .collect()
}

/// The (group, mentor) `mentee` is assigned to at `at` (at the end, for `None`): membership
/// events up to that moment in (occurred_at, event id) order; an unassignment from another
/// group than the current one changes nothing.
pub fn assignment(
    mentorship: &[MentorshipEvent],
    mentee: &str,
    at: Option<DateTime<Utc>>,
) -> Option<(String, String)> {
    let mut changes: Vec<(DateTime<Utc>, &str, &mentorship_event::Payload)> = mentorship
        .iter()
        .filter_map(|event| {
            let payload = event.payload.as_ref()?;
            let concerns = match payload {
                mentorship_event::Payload::MenteeAssigned(assigned) => assigned.mentee_id == mentee,
                mentorship_event::Payload::MenteeUnassigned(unassigned) => {
                    unassigned.mentee_id == mentee
                }
                _ => false,
            };
            concerns.then(|| {
                (
                    moment(event.occurred_at.as_ref()),
                    event.event_id.as_str(),
                    payload,
                )
            })
        })
        .collect();
    changes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut current: Option<(String, String)> = None;
    for (time, _, payload) in changes {
        if at.is_some_and(|at| time > at) {
            break;
        }
        match payload {
            mentorship_event::Payload::MenteeAssigned(assigned) => {
                current = Some((assigned.group_id.clone(), assigned.mentor_id.clone()));
            }
            mentorship_event::Payload::MenteeUnassigned(unassigned)
                if current
                    .as_ref()
                    .is_some_and(|(group, _)| *group == unassigned.group_id) =>
            {
                current = None;
            }
            _ => {}
        }
    }
    current
}

/// (mentor, group, start, end unless current)
pub type MentorPeriod = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// A mentee's mentoring periods, from the
/// membership events in (occurred_at, event id) order; an assignment to another group ends the
/// current period, an unassignment ends it only if it names its group.
pub fn mentor_periods(mentorship: &[MentorshipEvent], mentee: &str) -> Vec<MentorPeriod> {
    let mut changes: Vec<&MentorshipEvent> = mentorship
        .iter()
        .filter(|event| match event.payload.as_ref() {
            Some(mentorship_event::Payload::MenteeAssigned(assigned)) => {
                assigned.mentee_id == mentee
            }
            Some(mentorship_event::Payload::MenteeUnassigned(unassigned)) => {
                unassigned.mentee_id == mentee
            }
            _ => false,
        })
        .collect();
    changes.sort_by_key(|event| (moment(event.occurred_at.as_ref()), event.event_id.clone()));
    let mut periods: Vec<MentorPeriod> = Vec::new();
    for event in changes {
        let at = moment(event.occurred_at.as_ref());
        let open = periods.last_mut().filter(|period| period.3.is_none());
        match (event.payload.as_ref().expect("payload"), open) {
            (mentorship_event::Payload::MenteeAssigned(assigned), open) => {
                if let Some(open) = open {
                    if open.1 == assigned.group_id {
                        continue;
                    }
                    open.3 = Some(at);
                }
                periods.push((
                    assigned.mentor_id.clone(),
                    assigned.group_id.clone(),
                    at,
                    None,
                ));
            }
            (mentorship_event::Payload::MenteeUnassigned(unassigned), Some(open))
                if open.1 == unassigned.group_id =>
            {
                open.3 = Some(at);
            }
            _ => {}
        }
    }
    periods
}

/// A group's current mentees, sorted, and its mentor (once it had a mentee).
pub fn members(mentorship: &[MentorshipEvent], group: &str) -> (Vec<String>, Option<String>) {
    let mut mentees: Vec<String> = mentorship
        .iter()
        .filter_map(|event| match event.payload.as_ref()? {
            mentorship_event::Payload::MenteeAssigned(assigned) => Some(assigned.mentee_id.clone()),
            _ => None,
        })
        .filter(|mentee| {
            assignment(mentorship, mentee, None).is_some_and(|(current, _)| current == group)
        })
        .collect();
    mentees.sort();
    mentees.dedup();
    // A group has one mentor, named by every assignment to it.
    let mentor = mentorship
        .iter()
        .find_map(|event| match event.payload.as_ref()? {
            mentorship_event::Payload::MenteeAssigned(assigned) if assigned.group_id == group => {
                Some(assigned.mentor_id.clone())
            }
            _ => None,
        });
    (mentees, mentor)
}

pub fn moment(time: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.expect("time").seconds, 0).expect("time")
}

/// The day, week, month and lifetime bucket keys of a moment.
pub fn buckets(time: DateTime<Utc>, time_zone: Tz) -> Vec<String> {
    let day: NaiveDate = time.with_timezone(&time_zone).date_naive();
    let week = day.iso_week();
    vec![
        format!("d:{day}"),
        format!("w:{}-W{:02}", week.year(), week.week()),
        format!("m:{}-{:02}", day.year(), day.month()),
        "life".to_owned(),
    ]
}

/// One change of a partner's personal counter, at the moment of the event that causes it.
#[derive(Debug, Clone)]
pub struct Contribution {
    pub partner: String,
    pub at: DateTime<Utc>,
    pub field: &'static str,
    pub amount: i64,
    /// The event's source and source_event_id (`mentorship` and the event id for mentorship
    /// events).
    pub source: String,
    pub id: String,
}

pub fn cents(decimal: &Option<Decimal>) -> i64 {
    let text = &decimal.as_ref().expect("decimal").value;
    let (integer, fraction) = text.split_once('.').unwrap_or((text, "0"));
    integer.parse::<i64>().expect("integer") * 100
        + format!("{fraction:0<2}").parse::<i64>().expect("fraction")
}

/// Every personal contribution the rules derive from the event sets.
pub fn contributions(
    events: &[ActivityEvent],
    mentorship: &[MentorshipEvent],
    time_zone: Tz,
) -> Vec<Contribution> {
    let at = |event: &ActivityEvent| moment(event.occurred_at.as_ref());
    // The earliest event per key, by (occurred_at, source, source_event_id).
    let mut earliest: BTreeMap<(String, String), &ActivityEvent> = BTreeMap::new();
    let mut keep_earliest = |key: (String, String), event| {
        let slot = earliest.entry(key).or_insert(event);
        if (at(event), &event.source_event_id) < (at(slot), &slot.source_event_id) {
            *slot = event;
        }
    };
    let mut refunds: BTreeMap<(String, String), i64> = BTreeMap::new();
    for event in events {
        let partner = event.partner_id.clone();
        let day = at(event).with_timezone(&time_zone).date_naive();
        keep_earliest((partner.clone(), format!("day {day}")), event);
        match event.payload.as_ref().expect("payload") {
            Payload::OrderPlaced(placed) => {
                keep_earliest((partner, format!("order {}", placed.order_id)), event);
            }
            Payload::OrderRefunded(refunded) => {
                *refunds
                    .entry((partner, refunded.order_id.clone()))
                    .or_default() += cents(&refunded.volume);
            }
            Payload::ModuleCompleted(module) => {
                keep_earliest((partner, format!("module {}", module.module_id)), event);
            }
            Payload::EventAttended(attended) => {
                keep_earliest((partner, format!("event {}", attended.event_id)), event);
            }
            Payload::RankAchieved(rank) => {
                keep_earliest((partner, format!("rank {}", rank.rank_level)), event);
            }
            Payload::PartnerEnrolled(_) => keep_earliest((partner, "enrol ".to_owned()), event),
            Payload::ActivityPing(_) => {}
        }
    }
    let mut contributions = Vec::new();
    let mut add =
        |partner: &str, at, field: &'static str, amount: i64, (source, id): (&str, &str)| {
            contributions.push(Contribution {
                partner: partner.to_owned(),
                at,
                field,
                amount,
                source: source.to_owned(),
                id: id.to_owned(),
            });
        };
    for ((partner, key), event) in &earliest {
        let time = at(event);
        let cause = (event.source.as_str(), event.source_event_id.as_str());
        match (key.split_once(' ').expect("kind").0, event.payload.as_ref()) {
            ("day", _) => add(partner, time, "act", 1, cause),
            ("order", Some(Payload::OrderPlaced(placed))) => {
                let volume = cents(&placed.volume);
                let refunded = refunds
                    .get(&(partner.clone(), placed.order_id.clone()))
                    .copied()
                    .unwrap_or(0);
                add(partner, time, "ord", 1, cause);
                add(partner, time, "pv", volume - refunded.min(volume), cause);
            }
            ("module", Some(Payload::ModuleCompleted(module))) => {
                add(partner, time, "mod", 1, cause);
                add(partner, time, "min", i64::from(module.minutes), cause);
            }
            ("event", _) => add(partner, time, "evt", 1, cause),
            ("rank", _) => add(partner, time, "rank", 1, cause),
            ("enrol", Some(Payload::PartnerEnrolled(enrolled))) => {
                if !enrolled.sponsor_id.is_empty() {
                    add(&enrolled.sponsor_id, time, "rec", 1, cause);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Sessions once per session and partner, feedback once per session and mentee: the
    // earliest event by (occurred_at, event id) counts.
    // (partner, fact) → (moment, event id, field, amount, feedback count)
    type Candidate = (DateTime<Utc>, String, &'static str, i64, i64);
    let mut first_mentorship: BTreeMap<(String, String), Candidate> = BTreeMap::new();
    let mut keep = |partner: &str, fact: String, event: &MentorshipEvent, field, amount, count| {
        let candidate = (
            moment(event.occurred_at.as_ref()),
            event.event_id.clone(),
            field,
            amount,
            count,
        );
        let slot = first_mentorship
            .entry((partner.to_owned(), fact))
            .or_insert_with(|| candidate.clone());
        if (candidate.0, &candidate.1) < (slot.0, &slot.1) {
            *slot = candidate;
        }
    };
    for event in mentorship {
        match event.payload.as_ref().expect("payload") {
            mentorship_event::Payload::SessionCompleted(session) => {
                let fact = format!("session {}", session.session_id);
                keep(&session.mentor_id, fact.clone(), event, "ses", 1, 0);
                for mentee in &session.mentee_ids {
                    let field = if session.attendee_ids.contains(mentee) {
                        "ses"
                    } else {
                        "mis"
                    };
                    keep(mentee, fact.clone(), event, field, 1, 0);
                }
            }
            mentorship_event::Payload::SessionMissed(session) => {
                let fact = format!("session {}", session.session_id);
                for partner in std::iter::once(&session.mentor_id).chain(&session.mentee_ids) {
                    keep(partner, fact.clone(), event, "mis", 1, 0);
                }
            }
            mentorship_event::Payload::FeedbackSubmitted(feedback) => {
                let fact = format!("feedback {} {}", feedback.session_id, feedback.mentee_id);
                keep(
                    &feedback.mentor_id,
                    fact,
                    event,
                    "fbs",
                    i64::from(feedback.rating),
                    1,
                );
            }
            _ => {}
        }
    }
    for ((partner, _), (time, event_id, field, amount, count)) in first_mentorship {
        let cause = ("mentorship", event_id.as_str());
        add(&partner, time, field, amount, cause);
        if field == "fbs" {
            add(&partner, time, "fbc", count, cause);
        }
    }
    contributions
}

/// The activity events of `scenario` as IngestService accepts them, for the oracle.
pub fn accepted_activity(scenario: &crate::Scenario) -> Vec<ActivityEvent> {
    scenario
        .activity()
        .map(|(step, activity)| activity.to_proto(step.at))
        .collect()
}

/// The mentorship events the service announces for the calls of `scenario`, given the ids it
/// gave to what the scenario created (programs, groups, sessions by scenario name): the
/// assignments, completed sessions and feedback, each at its step's time. (Sessions never
/// completed are missed only after the grace; within a test run they are not.)
pub fn announced_mentorship(
    scenario: &crate::Scenario,
    created: &BTreeMap<String, String>,
) -> Vec<MentorshipEvent> {
    use crate::Action;
    let id = |name: &str| {
        created
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    };
    let mut mentors: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sessions: BTreeMap<&str, (&str, &[String])> = BTreeMap::new();
    let mut events = Vec::new();
    let mut announce = |step: &crate::Step, payload| {
        events.push(MentorshipEvent {
            tenant_id: String::new(),
            event_id: step.id.clone(),
            occurred_at: Some(crate::timestamp(step.at)),
            recorded_at: None,
            payload: Some(payload),
        });
    };
    for step in &scenario.steps {
        match &step.action {
            Action::CreateGroup { group, mentor, .. } => {
                mentors.insert(group, mentor);
            }
            Action::AssignMentee { group, mentee } => announce(
                step,
                mentorship_event::Payload::MenteeAssigned(
                    mentorstream_proto::mentorship::v1::MenteeAssigned {
                        group_id: id(group),
                        mentor_id: mentors
                            .get(group.as_str())
                            .copied()
                            .unwrap_or_default()
                            .into(),
                        mentee_id: mentee.clone(),
                    },
                ),
            ),
            Action::ScheduleSession {
                session,
                group,
                mentees,
                ..
            } => {
                sessions.insert(session, (group, mentees));
            }
            Action::CompleteSession { session, attendees } => {
                let (group, mentees) = sessions.get(session.as_str()).copied().unwrap_or_default();
                announce(
                    step,
                    mentorship_event::Payload::SessionCompleted(
                        mentorstream_proto::mentorship::v1::SessionCompleted {
                            session_id: id(session),
                            group_id: id(group),
                            mentor_id: mentors.get(group).copied().unwrap_or_default().into(),
                            mentee_ids: mentees.to_vec(),
                            attendee_ids: attendees.clone(),
                            starts_at: None,
                            duration: None,
                        },
                    ),
                );
            }
            Action::SubmitFeedback {
                session,
                mentee,
                rating,
            } => {
                let group = sessions
                    .get(session.as_str())
                    .map_or("", |(group, _)| group);
                announce(
                    step,
                    mentorship_event::Payload::FeedbackSubmitted(
                        mentorstream_proto::mentorship::v1::FeedbackSubmitted {
                            session_id: id(session),
                            mentor_id: mentors.get(group).copied().unwrap_or_default().into(),
                            mentee_id: mentee.clone(),
                            rating: *rating,
                        },
                    ),
                );
            }
            _ => {}
        }
    }
    events
}
