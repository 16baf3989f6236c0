//! The seeded workload of the aggregator bench (issue 16, "Bench honesty"): a genealogy, then
//! activity near now with refunds of the partner's own orders, ~5 % of the enrolments arriving
//! late (after activity of theirs or of their recruits), and mentorship — groups, assignments
//! that often cover activity already applied, unassignments, sessions — on its own topic.

use chrono::{DateTime, Duration, Utc};
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, ModuleCompleted, OrderPlaced, OrderRefunded, PartnerEnrolled,
    PingKind, activity_event::Payload,
};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::mentorship::v1::{
    GroupCreated, MenteeAssigned, MenteeUnassigned, MentorshipEvent, SessionCompleted,
    mentorship_event::Payload as Mentorship,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Enrolments that arrive among the activity instead of before it.
const LATE_ENROLMENTS: f64 = 0.05;
/// One mentor (with a group) per this many partners.
const PARTNERS_PER_MENTOR: usize = 40;
const GROUP_SIZE: usize = 8;
/// The history the activity spreads over; most of it is within the last two days.
const HISTORY_DAYS: i64 = 60;
const RECENT_HOURS: i64 = 48;

/// Records in the order they are produced.
#[derive(Debug, Default)]
pub struct Workload {
    /// Enrolments that arrive first: the genealogy phase.
    pub genealogy: Vec<ActivityEvent>,
    /// Activity events, with the late enrolments among them.
    pub activity: Vec<ActivityEvent>,
    /// Mentorship events, on their own topic, read during the activity phase.
    pub mentorship: Vec<MentorshipEvent>,
    /// Each partner's depth in the genealogy (the root's is 0).
    pub depths: Vec<usize>,
}

impl Workload {
    pub fn records(&self) -> usize {
        self.genealogy.len() + self.activity.len() + self.mentorship.len()
    }

    /// Every activity event (enrolments included), for the oracle.
    pub fn all_activity(&self) -> Vec<ActivityEvent> {
        self.genealogy
            .iter()
            .chain(&self.activity)
            .cloned()
            .collect()
    }
}

/// A random recursive tree of `partners` (each sponsored by a uniformly chosen earlier one:
/// depth grows like ln N, as in real genealogies), enrolled over the last 90 days in order, and
/// `activity` events of random partners at or after their enrolment. With `activity` 0 there
/// is neither late enrolment nor mentorship: the genealogy alone.
pub fn generate(
    tenant_id: &str,
    partners: usize,
    activity: usize,
    seed: u64,
    now: DateTime<Utc>,
) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut workload = Workload::default();
    let enrolled = enrol(&mut workload, tenant_id, partners, now, &mut rng);
    let mut orders: Vec<Vec<(String, i64)>> = vec![Vec::new(); partners];
    for n in 0..activity {
        let partner = rng.random_range(0..partners);
        let at = activity_time(enrolled[partner], now, &mut rng);
        let payload = payload(n, &mut orders[partner], &mut rng);
        let id = format!("a{n}");
        workload
            .activity
            .push(event(tenant_id, partner, id, at, payload));
    }
    if activity > 0 {
        delay_enrolments(&mut workload, &mut rng);
        workload.mentorship = mentorship(tenant_id, &enrolled, now, &mut rng);
    }
    workload
}

/// Appends every enrolment to the genealogy; answers each partner's enrolment time.
fn enrol(
    workload: &mut Workload,
    tenant_id: &str,
    partners: usize,
    now: DateTime<Utc>,
    rng: &mut StdRng,
) -> Vec<DateTime<Utc>> {
    let first = now - Duration::days(90);
    let span = Duration::days(88).num_seconds();
    let mut enrolled = Vec::with_capacity(partners);
    for partner in 0..partners {
        let sponsor = (partner > 0).then(|| rng.random_range(0..partner));
        workload
            .depths
            .push(sponsor.map_or(0, |sponsor| workload.depths[sponsor] + 1));
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
        let offset = span * partner as i64 / partners.max(1) as i64;
        let at = first + Duration::seconds(offset + rng.random_range(0..60));
        enrolled.push(at);
        let payload = Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor
                .map(|sponsor| format!("p{sponsor}"))
                .unwrap_or_default(),
            display_name: String::new(),
            locale: "ru-RU".into(),
            time_zone: "Europe/Moscow".into(),
            sealed_personal: Vec::new(),
        });
        let id = format!("enrol-{partner}");
        workload
            .genealogy
            .push(event(tenant_id, partner, id, at, payload));
    }
    enrolled
}

/// Mostly within the last two days; otherwise anywhere in the history after the enrolment.
fn activity_time(enrolled: DateTime<Utc>, now: DateTime<Utc>, rng: &mut StdRng) -> DateTime<Utc> {
    let earliest = enrolled.max(now - Duration::days(HISTORY_DAYS));
    let recent = now - Duration::hours(RECENT_HOURS);
    let from = if rng.random_bool(0.7) {
        recent.max(earliest)
    } else {
        earliest
    };
    let span = (now - from).num_seconds().max(1);
    from + Duration::seconds(rng.random_range(0..span))
}

/// An order (40 %), a refund of one of the partner's own orders (10 %, an order if it has
/// none), a completed module (20 %) or a ping.
fn payload(n: usize, orders: &mut Vec<(String, i64)>, rng: &mut StdRng) -> Payload {
    let roll = rng.random_range(0..10);
    if roll == 4 && !orders.is_empty() {
        let (order_id, cents) = orders[rng.random_range(0..orders.len())].clone();
        let refunded = if rng.random_bool(0.5) {
            cents
        } else {
            cents / 2
        };
        return Payload::OrderRefunded(OrderRefunded {
            order_id,
            volume: Some(decimal(refunded)),
        });
    }
    match roll {
        0..=4 => {
            let cents = rng.random_range(100..20_000);
            let order_id = format!("o{n}");
            orders.push((order_id.clone(), cents));
            Payload::OrderPlaced(OrderPlaced {
                order_id,
                volume: Some(decimal(cents)),
                amount: None,
            })
        }
        5 | 6 => Payload::ModuleCompleted(ModuleCompleted {
            module_id: format!("m{}", rng.random_range(0..20)),
            minutes: 15,
        }),
        _ => Payload::ActivityPing(ActivityPing {
            kind: PingKind::App.into(),
        }),
    }
}

fn decimal(cents: i64) -> Decimal {
    Decimal {
        value: format!("{}.{:02}", cents / 100, cents % 100),
    }
}

/// Moves ~5 % of the enrolments (never the root's) to random places among the activity.
fn delay_enrolments(workload: &mut Workload, rng: &mut StdRng) {
    let mut kept = Vec::with_capacity(workload.genealogy.len());
    // (place among the activity, enrolment), merged in one pass: inserting one by one would
    // move millions of events each time.
    let mut late = Vec::new();
    for (partner, enrolment) in std::mem::take(&mut workload.genealogy)
        .into_iter()
        .enumerate()
    {
        if partner > 0 && rng.random_bool(LATE_ENROLMENTS) {
            late.push((rng.random_range(0..=workload.activity.len()), enrolment));
        } else {
            kept.push(enrolment);
        }
    }
    late.sort_by_key(|(place, _)| *place);
    let activity = std::mem::take(&mut workload.activity);
    let mut merged = Vec::with_capacity(activity.len() + late.len());
    let mut late = late.into_iter().peekable();
    for (place, event) in activity.into_iter().enumerate() {
        while let Some((_, enrolment)) = late.next_if(|(at, _)| *at <= place) {
            merged.push(enrolment);
        }
        merged.push(event);
    }
    merged.extend(late.map(|(_, enrolment)| enrolment));
    workload.activity = merged;
    workload.genealogy = kept;
}

/// A group per mentor, filled with mentees assigned at random times of the history (so most
/// assignments cover activity the aggregator has applied already), one in ten unassigned
/// later, and two completed sessions per group, in shuffled order.
fn mentorship(
    tenant_id: &str,
    enrolled: &[DateTime<Utc>],
    now: DateTime<Utc>,
    rng: &mut StdRng,
) -> Vec<MentorshipEvent> {
    let mentors = (enrolled.len() / PARTNERS_PER_MENTOR).max(1);
    let mut mentees: Vec<usize> = (mentors..enrolled.len()).collect();
    mentees.shuffle(rng);
    let mut events = Vec::new();
    for (mentor, group) in (0..mentors).zip(mentees.chunks(GROUP_SIZE)) {
        let group_id = format!("g{mentor}");
        let mentor_id = format!("p{mentor}");
        let created = enrolled[mentor].max(now - Duration::days(HISTORY_DAYS));
        let id = format!("{group_id}-created");
        let created_event = Mentorship::GroupCreated(GroupCreated {
            group_id: group_id.clone(),
            program_id: "bench".into(),
            mentor_id: mentor_id.clone(),
            capacity: u32::try_from(GROUP_SIZE).unwrap_or(u32::MAX),
        });
        events.push(mentorship_event(tenant_id, id, created, created_event));
        let mut members = Vec::new();
        for &mentee in group {
            let from = created.max(enrolled[mentee]);
            let span = (now - from).num_seconds().max(2);
            let at = from + Duration::seconds(rng.random_range(0..span / 2));
            let mentee_id = format!("p{mentee}");
            members.push(mentee_id.clone());
            let assigned = Mentorship::MenteeAssigned(MenteeAssigned {
                group_id: group_id.clone(),
                mentor_id: mentor_id.clone(),
                mentee_id: mentee_id.clone(),
            });
            events.push(mentorship_event(
                tenant_id,
                format!("{group_id}-{mentee_id}-in"),
                at,
                assigned,
            ));
            if rng.random_bool(0.1) {
                let left =
                    at + Duration::seconds(rng.random_range(1..(now - at).num_seconds().max(2)));
                let unassigned = Mentorship::MenteeUnassigned(MenteeUnassigned {
                    group_id: group_id.clone(),
                    mentor_id: mentor_id.clone(),
                    mentee_id,
                });
                events.push(mentorship_event(
                    tenant_id,
                    format!("{group_id}-{mentee}-out"),
                    left,
                    unassigned,
                ));
            }
        }
        for session in 0..2 {
            let at = now - Duration::hours(rng.random_range(1..RECENT_HOURS));
            let attendees = members
                .iter()
                .filter(|_| rng.random_bool(0.8))
                .cloned()
                .collect();
            let completed = Mentorship::SessionCompleted(SessionCompleted {
                session_id: format!("{group_id}-s{session}"),
                group_id: group_id.clone(),
                mentor_id: mentor_id.clone(),
                mentee_ids: members.clone(),
                attendee_ids: attendees,
                starts_at: Some(mentorstream_sim::timestamp(at)),
                ..SessionCompleted::default()
            });
            events.push(mentorship_event(
                tenant_id,
                format!("{group_id}-s{session}"),
                at,
                completed,
            ));
        }
    }
    events.shuffle(rng);
    events
}

fn event(
    tenant_id: &str,
    partner: usize,
    id: String,
    at: DateTime<Utc>,
    payload: Payload,
) -> ActivityEvent {
    ActivityEvent {
        tenant_id: tenant_id.to_owned(),
        source: "bench".into(),
        source_event_id: id,
        occurred_at: Some(mentorstream_sim::timestamp(at)),
        partner_id: format!("p{partner}"),
        accepted_at: None,
        payload: Some(payload),
    }
}

fn mentorship_event(
    tenant_id: &str,
    id: String,
    at: DateTime<Utc>,
    payload: Mentorship,
) -> MentorshipEvent {
    MentorshipEvent {
        tenant_id: tenant_id.to_owned(),
        event_id: id,
        occurred_at: Some(mentorstream_sim::timestamp(at)),
        recorded_at: Some(mentorstream_sim::timestamp(at)),
        payload: Some(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn refunds_name_orders_of_the_same_partner() {
        let workload = generate("t", 200, 5_000, 7, now());
        let mut orders = std::collections::HashSet::new();
        let mut refunds = 0;
        for event in &workload.activity {
            match &event.payload {
                Some(Payload::OrderPlaced(order)) => {
                    orders.insert((event.partner_id.clone(), order.order_id.clone()));
                }
                Some(Payload::OrderRefunded(refund)) => {
                    refunds += 1;
                    let key = (event.partner_id.clone(), refund.order_id.clone());
                    assert!(orders.contains(&key), "{key:?}");
                }
                _ => {}
            }
        }
        assert!(refunds > 300, "{refunds}");
    }

    #[test]
    fn some_enrolments_arrive_late_and_mentorship_is_mixed_in() {
        let workload = generate("t", 2_000, 10_000, 7, now());
        let late = workload
            .activity
            .iter()
            .filter(|event| matches!(event.payload, Some(Payload::PartnerEnrolled(_))))
            .count();
        assert_eq!(late + workload.genealogy.len(), 2_000);
        assert!((60..=140).contains(&late), "{late}");
        assert!(
            workload.mentorship.len() > 50 * 8,
            "{}",
            workload.mentorship.len()
        );
        assert_eq!(
            workload.records(),
            2_000 + 10_000 + workload.mentorship.len()
        );
        let genealogy_only = generate("t", 2_000, 0, 7, now());
        assert_eq!(genealogy_only.genealogy.len(), 2_000);
        assert!(genealogy_only.mentorship.is_empty());
    }

    #[test]
    fn activity_is_mostly_recent() {
        let workload = generate("t", 500, 10_000, 7, now());
        let recent = workload
            .activity
            .iter()
            .filter_map(|event| event.occurred_at.as_ref())
            .filter(|at| at.seconds >= (now() - Duration::hours(RECENT_HOURS)).timestamp())
            .count();
        assert!(recent > 6_000, "{recent}");
    }
}
