//! A scripted KPI scenario and an independent computation of DESIGN.md §6 over it, shared by
//! the state and the service tests.

#![allow(dead_code)]

pub mod live;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use mentorstream_proto::activity::v1::PartnerEnrolled;
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, EventAttended, EventKind, ModuleCompleted, OrderPlaced,
    OrderRefunded, PingKind, RankAchieved, activity_event::Payload,
};
use mentorstream_proto::common::v1::Decimal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const TENANT: &str = "tenant-1";

/// A moment in Moscow local time.
pub fn local(text: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("time");
    Moscow
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

pub fn event(partner: &str, id: &str, at: &str, payload: Payload) -> ActivityEvent {
    let at = local(at);
    ActivityEvent {
        tenant_id: TENANT.into(),
        source: "src".into(),
        source_event_id: id.into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        partner_id: partner.into(),
        payload: Some(payload),
        ..ActivityEvent::default()
    }
}

pub fn decimal(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.into(),
    })
}

pub fn order(order_id: &str, volume: &str) -> Payload {
    Payload::OrderPlaced(OrderPlaced {
        order_id: order_id.into(),
        volume: decimal(volume),
        amount: None,
    })
}

pub fn refund(order_id: &str, volume: &str) -> Payload {
    Payload::OrderRefunded(OrderRefunded {
        order_id: order_id.into(),
        volume: decimal(volume),
    })
}

pub fn module(id: &str, minutes: u32) -> Payload {
    Payload::ModuleCompleted(ModuleCompleted {
        module_id: id.into(),
        minutes,
    })
}

pub fn attended(id: &str) -> Payload {
    Payload::EventAttended(EventAttended {
        event_id: id.into(),
        kind: EventKind::Webinar.into(),
    })
}

pub fn rank(level: u32) -> Payload {
    Payload::RankAchieved(RankAchieved {
        rank_level: level,
        rank_name: format!("rank {level}"),
    })
}

pub fn ping() -> Payload {
    Payload::ActivityPing(ActivityPing {
        kind: PingKind::App.into(),
    })
}

/// Orders and refunds across a week boundary (Sunday 2026-11-29 → Monday) and a month boundary
/// (November → December), near local midnight; repeated modules, events and ranks whose earlier
/// occurrence may arrive later; an order id placed twice; refunds larger than their order.
pub fn scenario() -> Vec<ActivityEvent> {
    let mut events = genealogy();
    events.extend(vec![
        event("ann", "a1", "2026-11-29 23:50", order("o-1", "100.00")),
        event("ann", "a2", "2026-11-30 00:10", order("o-2", "40.50")),
        event("ann", "a3", "2026-12-02 12:00", refund("o-1", "30.25")),
        event("ann", "a4", "2026-12-03 09:00", refund("o-2", "30.00")),
        event("ann", "a5", "2026-12-04 09:00", refund("o-2", "30.00")),
        event("ann", "a6", "2026-11-30 23:59", module("m-1", 20)),
        event("ann", "a7", "2026-12-01 00:01", module("m-1", 20)),
        event("ann", "a8", "2026-11-20 10:00", module("m-2", 45)),
        event("ann", "a9", "2026-11-21 18:00", attended("w-1")),
        event("ann", "a10", "2026-11-28 18:00", attended("w-1")),
        event("ann", "a11", "2026-11-25 08:00", rank(2)),
        event("ann", "a12", "2026-12-01 08:00", rank(2)),
        event("ann", "a13", "2026-12-01 08:30", rank(3)),
        event("ann", "a14", "2026-11-29 23:59", ping()),
        event("ann", "a15", "2026-11-30 00:00", ping()),
        event("bob", "b1", "2026-11-30 21:00", order("o-9", "10.00")),
        // The same order id placed again, earlier: the earlier one counts.
        event("bob", "b2", "2026-11-27 09:00", order("o-9", "12.00")),
        event("bob", "b3", "2026-12-05 11:00", refund("o-9", "2.50")),
        // A refund of an order that never arrives is held and counts nowhere.
        event("bob", "b4", "2026-12-05 11:30", refund("o-404", "5.00")),
        event("bob", "b5", "2026-12-01 00:00", order("o-10", "0.99")),
    ]);
    events.extend(activity_across_the_tree());
    events
}

pub fn enrolment(sponsor: &str) -> Payload {
    Payload::PartnerEnrolled(PartnerEnrolled {
        sponsor_id: sponsor.into(),
        display_name: String::new(),
        locale: "ru-RU".into(),
        time_zone: "Europe/Moscow".into(),
    })
}

/// A chain root → n1 → … → n7 (depth 8) with ann under n3 and bob under n7, and 24 more
/// partners hanging at seeded places. Every partner enrols once, except n5, enrolled a second
/// time later under another sponsor (the earlier edge counts).
pub fn genealogy() -> Vec<ActivityEvent> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut sponsors: Vec<(String, String)> = vec![("root".into(), String::new())];
    for n in 1..=7 {
        let parent = if n == 1 {
            "root".to_owned()
        } else {
            format!("n{}", n - 1)
        };
        sponsors.push((format!("n{n}"), parent));
    }
    sponsors.push(("ann".into(), "n3".into()));
    sponsors.push(("bob".into(), "n7".into()));
    for x in 0..24 {
        let parent = sponsors[rng.random_range(0..sponsors.len())].0.clone();
        sponsors.push((format!("x{x}"), parent));
    }
    let mut events: Vec<ActivityEvent> = sponsors
        .iter()
        .enumerate()
        .map(|(n, (partner, sponsor))| {
            let day = 1 + n % 25;
            event(
                partner,
                &format!("enrol-{partner}"),
                &format!("2026-11-{day:02} 23:{:02}", n % 60),
                enrolment(sponsor),
            )
        })
        .collect();
    events.push(event(
        "n5",
        "enrol-n5-again",
        "2026-11-28 10:00",
        enrolment("x3"),
    ));
    events
}

/// Seeded orders, refunds, modules, events and pings of partners all over the tree.
pub fn activity_across_the_tree() -> Vec<ActivityEvent> {
    let mut rng = StdRng::seed_from_u64(11);
    let partners: Vec<String> = (1..=7)
        .map(|n| format!("n{n}"))
        .chain((0..24).map(|x| format!("x{x}")))
        .chain(["root".to_owned()])
        .collect();
    (0..120)
        .map(|n| {
            let partner = &partners[rng.random_range(0..partners.len())];
            let at = format!(
                "2026-{}-{:02} {:02}:{:02}",
                if n % 3 == 0 { "12" } else { "11" },
                rng.random_range(1..=28),
                rng.random_range(0..24),
                rng.random_range(0..60)
            );
            let payload = match rng.random_range(0..6) {
                0 | 1 => order(
                    &format!("t-{}", n / 2),
                    &format!(
                        "{}.{:02}",
                        rng.random_range(0..90),
                        rng.random_range(0..100)
                    ),
                ),
                2 => refund(&format!("t-{}", rng.random_range(0..60)), "7.25"),
                3 => module(&format!("m-{}", rng.random_range(0..4)), 15),
                4 => attended(&format!("w-{}", rng.random_range(0..3))),
                _ => ping(),
            };
            event(partner, &format!("t{n}"), &at, payload)
        })
        .collect()
}

/// A counter: (kind: "c" personal, "t" team, "tenant"; subject; bucket key; field).
pub type Key = (String, String, String, String);

/// Personal, team and tenant counters: DESIGN.md §6 computed directly from the event set.
pub fn expected(events: &[ActivityEvent]) -> BTreeMap<Key, i64> {
    let personal = expected_personal(events);
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
    all.retain(|_, value| *value != 0);
    all
}

/// (partner, bucket key, field) → value of personal counters.
pub fn expected_personal(events: &[ActivityEvent]) -> BTreeMap<(String, String, String), i64> {
    let at = |event: &ActivityEvent| {
        let time = event.occurred_at.as_ref().expect("time");
        DateTime::from_timestamp(time.seconds, 0).expect("time")
    };
    let buckets = |time: DateTime<Utc>| {
        let day: NaiveDate = time.with_timezone(&Moscow).date_naive();
        let week = day.iso_week();
        vec![
            format!("d:{day}"),
            format!("w:{}-W{:02}", week.year(), week.week()),
            format!("m:{}-{:02}", day.year(), day.month()),
            "life".to_owned(),
        ]
    };
    let cents = |decimal: &Option<Decimal>| {
        let text = &decimal.as_ref().expect("decimal").value;
        let (integer, fraction) = text.split_once('.').unwrap_or((text, "0"));
        integer.parse::<i64>().expect("integer") * 100
            + format!("{fraction:0<2}").parse::<i64>().expect("fraction")
    };
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
        let day = at(event).with_timezone(&Moscow).date_naive();
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
    let mut counters: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut add = |partner: &str, time, field: &str, amount: i64| {
        for bucket in buckets(time) {
            *counters
                .entry((partner.to_owned(), bucket, field.to_owned()))
                .or_default() += amount;
        }
    };
    for ((partner, key), event) in &earliest {
        let time = at(event);
        match (key.split_once(' ').expect("kind").0, event.payload.as_ref()) {
            ("day", _) => add(partner, time, "act", 1),
            ("order", Some(Payload::OrderPlaced(placed))) => {
                let volume = cents(&placed.volume);
                let refunded = refunds
                    .get(&(partner.clone(), placed.order_id.clone()))
                    .copied()
                    .unwrap_or(0);
                add(partner, time, "ord", 1);
                add(partner, time, "pv", volume - refunded.min(volume));
            }
            ("module", Some(Payload::ModuleCompleted(module))) => {
                add(partner, time, "mod", 1);
                add(partner, time, "min", i64::from(module.minutes));
            }
            ("event", _) => add(partner, time, "evt", 1),
            ("rank", _) => add(partner, time, "rank", 1),
            ("enrol", Some(Payload::PartnerEnrolled(enrolled))) => {
                if !enrolled.sponsor_id.is_empty() {
                    add(&enrolled.sponsor_id, time, "rec", 1);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    counters.retain(|_, value| *value != 0);
    counters
}
