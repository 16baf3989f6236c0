//! The seeded organisation and its weeks. The same [`SimConfig`] always gives the same
//! scenario (the RNG is seeded; iteration orders are fixed).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike as _, NaiveTime, TimeDelta, TimeZone as _, Utc, Weekday};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::{Action, Activity, Payload, Scenario, Step};

/// The company's time zone: sessions are at 18:00 there.
pub const TIME_ZONE: Tz = chrono_tz::Europe::Moscow;
/// Ranks and the lifetime volume (PV, in hundredths) that reaches each.
const RANKS: [(u32, &str, u64); 5] = [
    (1, "Consultant", 0),
    (2, "Senior Consultant", 15_000),
    (3, "Manager", 50_000),
    (4, "Senior Manager", 120_000),
    (5, "Director", 300_000),
];
const MODULES: u32 = 12;
/// Weekly webinars, Wednesdays 19:00.
const WEBINAR_AT: NaiveTime = NaiveTime::from_hms_opt(19, 0, 0).expect("19:00");
const SESSION_AT: NaiveTime = NaiveTime::from_hms_opt(18, 0, 0).expect("18:00");
const GROUP_CAPACITY: usize = 7;
/// The longest simulated period: events older than the tenant's allowed lateness (35 days by
/// default) would be rejected.
pub const MAX_DAYS: u32 = 34;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub partners: usize,
    /// Simulated days, ending at `end`; at most 34 (events older than the tenant's allowed
    /// lateness, 35 days by default, would be rejected).
    pub days: u32,
    pub end: DateTime<Utc>,
}

struct Partner {
    id: String,
    enrolled_at: DateTime<Utc>,
    /// Chance of being active on a day: most partners are occasional, a few are engaged,
    /// some stop after their first weeks.
    activity: f64,
    quits_at: Option<DateTime<Utc>>,
    recruits: Vec<usize>,
}

/// The planted pilot effect (docs/impact.md): a mentee of the pilot programme is engaged
/// (active on 60 % of days instead of 15 %) with this chance, and quits early with the other,
/// where a mentee of the standard programme or a partner without a mentor is engaged with
/// the first chance of [`ENGAGED`] and quits with its second. Pilot mentees therefore sell
/// sooner and stay longer, which ComparePrograms should find.
const PILOT_ENGAGED: (f64, f64) = (0.7, 0.1);
const ENGAGED: (f64, f64) = (0.2, 0.3);

/// Whether a partner leads a group of the pilot programme (the others lead standard ones).
fn leads_pilot(mentor_index: usize) -> bool {
    mentor_index.is_multiple_of(3)
}

/// For each partner, whether they will be a mentee of a pilot group (Some(true)), of a
/// standard one (Some(false)), or nobody's: a partner's third and later recruits (up to a
/// group's capacity) join the group they lead.
fn mentee_programmes(recruits: &[Vec<usize>]) -> Vec<Option<bool>> {
    let mut programmes = vec![None; recruits.len()];
    for (mentor, recruits) in recruits.iter().enumerate() {
        if let [_, _, later @ ..] = recruits.as_slice() {
            for &mentee in later.iter().take(GROUP_CAPACITY) {
                programmes[mentee] = Some(leads_pilot(mentor));
            }
        }
    }
    programmes
}

fn cents(value: u64) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

fn local(day: chrono::NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    TIME_ZONE
        .from_local_datetime(&day.and_time(time))
        .earliest()
        .expect("no daylight-saving gap at these hours in Moscow")
        .with_timezone(&Utc)
}

/// The scenario of `config`, its steps in time order.
pub fn generate(config: &SimConfig) -> Scenario {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let days = config.days.clamp(2, MAX_DAYS);
    let start = config.end - TimeDelta::days(i64::from(days));
    // Nothing happens in the last hour, so that every step is in the past when sent.
    let end = config.end - TimeDelta::hours(1);
    let span = (end - start).num_seconds() - 86_400;
    let mut steps: Vec<Step> = Vec::new();
    let mut push = |at: DateTime<Utc>, id: String, action: Action| {
        steps.push(Step { id, at, action });
    };

    // The sponsor tree: a few roots, then everyone enrolled by someone already there, chosen
    // in proportion to 1 + their recruits (successful recruiters recruit more): heavy-tailed
    // fan-out and a depth that grows like log n.
    let roots = config.partners.clamp(1, 3);
    let mut enrolment_times: Vec<DateTime<Utc>> = (0..config.partners)
        .map(|index| {
            if index < roots {
                start
            } else {
                start + TimeDelta::seconds(rng.random_range(0..span.max(1)))
            }
        })
        .collect();
    enrolment_times.sort();
    let mut partners: Vec<Partner> = Vec::with_capacity(config.partners);
    let mut tickets: Vec<usize> = Vec::new();
    for (index, enrolled_at) in enrolment_times.into_iter().enumerate() {
        let id = format!("p-{index:05}");
        let sponsor = (index >= roots).then(|| tickets[rng.random_range(0..tickets.len())]);
        partners.push(Partner {
            id: id.clone(),
            enrolled_at,
            activity: 0.15,
            quits_at: None,
            recruits: Vec::new(),
        });
        tickets.push(index);
        if let Some(sponsor) = sponsor {
            partners[sponsor].recruits.push(index);
            tickets.push(sponsor);
        }
        let russian = rng.random_bool(0.7);
        push(
            enrolled_at,
            format!("enrol-{id}"),
            Action::Activity(Activity {
                source: "crm".into(),
                source_event_id: format!("enrol-{id}"),
                partner_id: id.clone(),
                payload: Payload::Enrolled {
                    sponsor_id: sponsor.map(|s| partners[s].id.clone()).unwrap_or_default(),
                    display_name: format!("Partner {index}"),
                    locale: if russian { "ru-RU" } else { "en-US" }.into(),
                    time_zone: TIME_ZONE.name().into(),
                },
            }),
        );
    }

    // Who is engaged and who quits, now that it is known who will be whose mentee.
    let programmes = mentee_programmes(
        &partners
            .iter()
            .map(|partner| partner.recruits.clone())
            .collect::<Vec<_>>(),
    );
    for (partner, programme) in partners.iter_mut().zip(&programmes) {
        let (engaged, quits) = if *programme == Some(true) {
            PILOT_ENGAGED
        } else {
            ENGAGED
        };
        let engaged = rng.random_bool(engaged);
        partner.activity = if engaged { 0.6 } else { 0.15 };
        partner.quits_at = (!engaged && rng.random_bool(quits))
            .then(|| partner.enrolled_at + TimeDelta::days(rng.random_range(3..14)));
    }

    // Each partner's days: pings, orders (some refunded), modules in order, webinars, and a
    // rank each time their volume passes the next threshold.
    for partner in &partners {
        let mut day = partner.enrolled_at.with_timezone(&TIME_ZONE).date_naive();
        let last = partner.quits_at.unwrap_or(end).min(end);
        let (mut orders, mut volume, mut modules, mut rank) = (0u32, 0u64, 0u32, 0usize);
        let id = &partner.id;
        let activity = |at: DateTime<Utc>, event_id: String, source: &str, payload| {
            (
                at,
                event_id.clone(),
                Action::Activity(Activity {
                    source: source.into(),
                    source_event_id: event_id,
                    partner_id: id.clone(),
                    payload,
                }),
            )
        };
        let mut own: Vec<(DateTime<Utc>, String, Action)> = vec![activity(
            partner.enrolled_at + TimeDelta::minutes(1),
            format!("rank-{id}-1"),
            "crm",
            Payload::Rank {
                level: 1,
                name: RANKS[0].1.into(),
            },
        )];
        while local(day, NaiveTime::MIN) <= last {
            let moment = |rng: &mut StdRng, hour: std::ops::Range<u32>| {
                local(
                    day,
                    NaiveTime::from_hms_opt(rng.random_range(hour), rng.random_range(0..60), 0)
                        .expect("a time"),
                )
            };
            let in_life = |at: DateTime<Utc>| at > partner.enrolled_at && at <= last;
            if rng.random_bool(partner.activity) {
                let at = moment(&mut rng, 8..22);
                if in_life(at) {
                    own.push(activity(
                        at,
                        format!("ping-{id}-{day}"),
                        "chatbot",
                        Payload::Ping,
                    ));
                }
                if rng.random_bool(0.35) {
                    let at = moment(&mut rng, 9..21);
                    let order_volume = rng.random_range(1_000..15_000_u64);
                    if in_life(at) {
                        orders += 1;
                        let order_id = format!("{id}-o{orders}");
                        own.push(activity(
                            at,
                            format!("order-{order_id}"),
                            "shop",
                            Payload::Order {
                                order_id: order_id.clone(),
                                volume: cents(order_volume),
                                amount: cents(order_volume * 2),
                            },
                        ));
                        volume += order_volume;
                        let refund_at = at + TimeDelta::days(rng.random_range(1..6));
                        if rng.random_bool(0.06) && refund_at < end {
                            let refunded = order_volume / 2;
                            own.push(activity(
                                refund_at,
                                format!("refund-{order_id}"),
                                "shop",
                                Payload::Refund {
                                    order_id,
                                    volume: cents(refunded),
                                },
                            ));
                            volume -= refunded;
                        }
                        while rank + 1 < RANKS.len() && volume >= RANKS[rank + 1].2 {
                            rank += 1;
                            let (level, name, _) = RANKS[rank];
                            own.push(activity(
                                at + TimeDelta::minutes(5),
                                format!("rank-{id}-{level}"),
                                "crm",
                                Payload::Rank {
                                    level,
                                    name: name.into(),
                                },
                            ));
                        }
                    }
                }
                if modules < MODULES && rng.random_bool(0.25) {
                    let at = moment(&mut rng, 10..23);
                    if in_life(at) {
                        modules += 1;
                        own.push(activity(
                            at,
                            format!("module-{id}-{modules}"),
                            "lms",
                            Payload::Module {
                                module_id: format!("m-{modules:02}"),
                                minutes: rng.random_range(5..25),
                            },
                        ));
                    }
                }
            }
            let webinar = local(day, WEBINAR_AT);
            if day.weekday() == Weekday::Wed && in_life(webinar) && rng.random_bool(0.3) {
                own.push(activity(
                    webinar,
                    format!("webinar-{id}-{day}"),
                    "events",
                    Payload::Event {
                        event_id: format!("webinar-{day}"),
                    },
                ));
            }
            day = day.succ_opt().expect("a next day");
        }
        for (at, id, action) in own {
            push(at, id, action);
        }
    }

    // Mentoring: a pilot and a standard programme; a partner leads a group from their second
    // recruit, and each later recruit joins it while there is room; the group meets at 18:00
    // once (standard) or twice (pilot) a week, most mentees attend, most attendees rate it,
    // and a few sessions are never completed (the service marks them missed).
    push(
        start,
        "program-pilot".into(),
        Action::CreateProgram {
            program: "pilot".into(),
            name: "Pilot cohort".into(),
            pilot: true,
            sessions_per_week: 2,
            minutes: 15,
        },
    );
    push(
        start,
        "program-standard".into(),
        Action::CreateProgram {
            program: "standard".into(),
            name: "Standard programme".into(),
            pilot: false,
            sessions_per_week: 1,
            minutes: 20,
        },
    );
    for (mentor_index, mentor) in partners.iter().enumerate() {
        let [_, second, later @ ..] = mentor.recruits.as_slice() else {
            continue;
        };
        let group = format!("g-{}", mentor.id);
        let created_at = partners[*second].enrolled_at + TimeDelta::minutes(30);
        let pilot = leads_pilot(mentor_index);
        push(
            created_at,
            format!("create-{group}"),
            Action::CreateGroup {
                group: group.clone(),
                program: if pilot { "pilot" } else { "standard" }.into(),
                mentor: mentor.id.clone(),
                capacity: u32::try_from(GROUP_CAPACITY).expect("small"),
            },
        );
        // (joined at, mentee)
        let members: Vec<(DateTime<Utc>, &str)> = later
            .iter()
            .take(GROUP_CAPACITY)
            .map(|mentee| {
                let joined = (partners[*mentee].enrolled_at + TimeDelta::hours(1)).max(created_at);
                (
                    joined + TimeDelta::minutes(1),
                    partners[*mentee].id.as_str(),
                )
            })
            .filter(|(joined, _)| *joined < end)
            .collect();
        for (joined, mentee) in &members {
            push(
                *joined,
                format!("assign-{group}-{mentee}"),
                Action::AssignMentee {
                    group: group.clone(),
                    mentee: (*mentee).to_owned(),
                },
            );
        }
        let minutes = if pilot { 15 } else { 20 };
        let days: &[Weekday] = if pilot {
            &[Weekday::Tue, Weekday::Thu]
        } else {
            &[Weekday::Thu]
        };
        let mut day = (created_at + TimeDelta::days(2))
            .with_timezone(&TIME_ZONE)
            .date_naive();
        let mut number = 0;
        while local(day, SESSION_AT) + TimeDelta::minutes(minutes) < end {
            let starts_at = local(day, SESSION_AT);
            let scheduled_at =
                (starts_at - TimeDelta::days(2)).max(created_at + TimeDelta::minutes(5));
            let expected: Vec<&str> = members
                .iter()
                .filter(|(joined, _)| *joined < scheduled_at)
                .map(|(_, mentee)| *mentee)
                .collect();
            if days.contains(&day.weekday()) && !expected.is_empty() {
                number += 1;
                let session = format!("{group}-s{number}");
                push(
                    scheduled_at,
                    format!("schedule-{session}"),
                    Action::ScheduleSession {
                        session: session.clone(),
                        group: group.clone(),
                        mentees: expected.iter().map(|mentee| (*mentee).to_owned()).collect(),
                        starts_at,
                        minutes,
                        topic: format!("Week {} check-in", day.iso_week().week()),
                    },
                );
                let completed_at = starts_at + TimeDelta::minutes(minutes);
                if rng.random_bool(0.9) {
                    let attendees: Vec<String> = expected
                        .iter()
                        .filter(|_| rng.random_bool(0.8))
                        .map(|mentee| (*mentee).to_owned())
                        .collect();
                    for mentee in &attendees {
                        let at = completed_at + TimeDelta::minutes(rng.random_range(5..55));
                        if rng.random_bool(0.6) && at < end {
                            push(
                                at,
                                format!("feedback-{session}-{mentee}"),
                                Action::SubmitFeedback {
                                    session: session.clone(),
                                    mentee: mentee.clone(),
                                    rating: [3, 4, 4, 5, 5, 5][rng.random_range(0..6)],
                                },
                            );
                        }
                    }
                    push(
                        completed_at,
                        format!("complete-{session}"),
                        Action::CompleteSession { session, attendees },
                    );
                }
            }
            day = day.succ_opt().expect("a next day");
        }
    }
    // Time order; steps at the same moment keep the order they were made in (a group before
    // its assignment, a session before its feedback).
    steps.sort_by_key(|step| step.at);
    let ids: BTreeMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(index, step)| (step.id.as_str(), index))
        .collect();
    debug_assert_eq!(ids.len(), steps.len(), "step ids are unique");
    Scenario { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            partners: 200,
            days: 21,
            end: DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_scenario_and_another_seed_another() {
        assert_eq!(generate(&config(7)), generate(&config(7)));
        assert_ne!(generate(&config(7)), generate(&config(8)));
    }

    #[test]
    fn the_organisation_looks_like_one() {
        let scenario = generate(&config(7));
        let count = |kind: &str| {
            scenario
                .steps
                .iter()
                .filter(|step| serde_json::to_value(step).expect("json")["kind"] == kind)
                .count()
        };
        let enrolments = scenario
            .activity()
            .filter(|(_, activity)| matches!(activity.payload, Payload::Enrolled { .. }))
            .count();
        assert_eq!(enrolments, 200);
        assert_eq!(count("create_program"), 2);
        assert!(count("create_group") >= 10, "{}", count("create_group"));
        assert!(count("assign_mentee") >= 30);
        assert!(count("schedule_session") > count("complete_session"));
        assert!(count("submit_feedback") > 0);
        // Steps are in time order and inside the simulated weeks.
        assert!(
            scenario
                .steps
                .windows(2)
                .all(|pair| pair[0].at <= pair[1].at)
        );
        let end = config(7).end;
        assert!(scenario.steps.iter().all(|step| {
            step.at <= end - TimeDelta::hours(1) && step.at >= end - TimeDelta::days(21)
        }));
        // A deep enough tree: someone is at depth 4 or more.
        let sponsors: BTreeMap<String, String> = scenario
            .activity()
            .filter_map(|(_, activity)| match &activity.payload {
                Payload::Enrolled { sponsor_id, .. } => {
                    Some((activity.partner_id.clone(), sponsor_id.clone()))
                }
                _ => None,
            })
            .collect();
        let depth = |partner: &String| {
            let mut depth = 0;
            let mut current = partner;
            while let Some(sponsor) = sponsors.get(current).filter(|s| !s.is_empty()) {
                depth += 1;
                current = sponsor;
            }
            depth
        };
        assert!(sponsors.keys().map(depth).max() >= Some(4));
    }

    #[test]
    fn a_scenario_survives_its_file() {
        let scenario = generate(&SimConfig {
            partners: 30,
            ..config(3)
        });
        let file = std::env::temp_dir().join(format!("sim-{}.jsonl", std::process::id()));
        scenario.write(&file).expect("written");
        assert_eq!(crate::Scenario::read(&file).expect("read"), scenario);
        std::fs::remove_file(file).expect("removed");
    }

    #[test]
    fn pilot_mentees_sell_sooner_than_standard_ones() {
        let end = config(7).end;
        let scenario = generate(&SimConfig {
            seed: 2026,
            partners: 300,
            days: MAX_DAYS,
            end,
        });
        let mut programme_of_group = BTreeMap::new();
        let mut programme_of = BTreeMap::new();
        let mut enrolled = BTreeMap::new();
        let mut first_order = BTreeMap::new();
        for step in &scenario.steps {
            match &step.action {
                Action::CreateGroup { group, program, .. } => {
                    programme_of_group.insert(group.clone(), program.clone());
                }
                Action::AssignMentee { group, mentee } => {
                    programme_of.insert(mentee.clone(), programme_of_group[group].clone());
                }
                Action::Activity(activity) => match activity.payload {
                    Payload::Enrolled { .. } => {
                        enrolled.insert(activity.partner_id.clone(), step.at);
                    }
                    Payload::Order { .. } => {
                        first_order
                            .entry(activity.partner_id.clone())
                            .or_insert(step.at);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        // Among mentees enrolled at least 14 days before the end: the share with a first
        // order within 14 days.
        let share = |programme: &str| {
            let cohort: Vec<&String> = programme_of
                .iter()
                .filter(|(mentee, of)| {
                    *of == programme && enrolled[*mentee] + TimeDelta::days(14) <= end
                })
                .map(|(mentee, _)| mentee)
                .collect();
            let sold = cohort
                .iter()
                .filter(|mentee| {
                    first_order
                        .get(**mentee)
                        .is_some_and(|at| *at < enrolled[**mentee] + TimeDelta::days(14))
                })
                .count();
            (sold, cohort.len())
        };
        let (pilot, standard) = (share("pilot"), share("standard"));
        eprintln!("sold within 14 days: pilot {pilot:?}, standard {standard:?}");
        assert!(pilot.1 >= 10 && standard.1 >= 10, "{pilot:?} {standard:?}");
        assert!(
            pilot.0 * standard.1 > standard.0 * pilot.1,
            "pilot {pilot:?} should sell sooner than standard {standard:?}"
        );
    }
}
