//! The KPI state (docs/kpi-state.md) against the real local Redis: the personal, team and tenant
//! counters of a scripted scenario equal an independent computation of DESIGN.md §6 from the
//! event set, whatever the arrival order across partitions (enrolments after the activity below
//! them included), the batching, duplicates, redeliveries and crashes between the two stages.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use mentorstream_config::Config;
use mentorstream_kpi_aggregator::calendar::Calendar;
use mentorstream_kpi_aggregator::fold::partner_event;
use mentorstream_kpi_aggregator::store::{PartnerBatch, Store};
use mentorstream_proto::activity::v1::PartnerEnrolled;
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, EventAttended, EventKind, ModuleCompleted, OrderPlaced,
    OrderRefunded, PingKind, RankAchieved, activity_event::Payload,
};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_redis::{KeySpace, cmd};
use mentorstream_testkit::unique;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const TENANT: &str = "tenant-1";

/// A moment in Moscow local time.
fn local(text: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("time");
    Moscow
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

fn event(partner: &str, id: &str, at: &str, payload: Payload) -> ActivityEvent {
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

fn decimal(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.into(),
    })
}

fn order(order_id: &str, volume: &str) -> Payload {
    Payload::OrderPlaced(OrderPlaced {
        order_id: order_id.into(),
        volume: decimal(volume),
        amount: None,
    })
}

fn refund(order_id: &str, volume: &str) -> Payload {
    Payload::OrderRefunded(OrderRefunded {
        order_id: order_id.into(),
        volume: decimal(volume),
    })
}

fn module(id: &str, minutes: u32) -> Payload {
    Payload::ModuleCompleted(ModuleCompleted {
        module_id: id.into(),
        minutes,
    })
}

fn attended(id: &str) -> Payload {
    Payload::EventAttended(EventAttended {
        event_id: id.into(),
        kind: EventKind::Webinar.into(),
    })
}

fn rank(level: u32) -> Payload {
    Payload::RankAchieved(RankAchieved {
        rank_level: level,
        rank_name: format!("rank {level}"),
    })
}

fn ping() -> Payload {
    Payload::ActivityPing(ActivityPing {
        kind: PingKind::App.into(),
    })
}

/// Orders and refunds across a week boundary (Sunday 2026-11-29 → Monday) and a month boundary
/// (November → December), near local midnight; repeated modules, events and ranks whose earlier
/// occurrence may arrive later; an order id placed twice; refunds larger than their order.
fn scenario() -> Vec<ActivityEvent> {
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

fn enrolment(sponsor: &str) -> Payload {
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
fn genealogy() -> Vec<ActivityEvent> {
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
fn activity_across_the_tree() -> Vec<ActivityEvent> {
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
type Key = (String, String, String, String);

/// Personal, team and tenant counters: DESIGN.md §6 computed directly from the event set.
fn expected(events: &[ActivityEvent]) -> BTreeMap<Key, i64> {
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
fn expected_personal(events: &[ActivityEvent]) -> BTreeMap<(String, String, String), i64> {
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

/// Every non-zero counter under `prefix`, keyed like [`expected`]; and that no outbox holds
/// anything any more.
async fn stored(
    connection: &mut mentorstream_redis::Connection,
    prefix: &str,
) -> BTreeMap<Key, i64> {
    let outboxes: Vec<String> = cmd("KEYS")
        .arg(format!("{{{prefix}:*:out"))
        .query_async(connection)
        .await
        .expect("keys");
    assert_eq!(
        outboxes,
        Vec::<String>::new(),
        "every outbox entry was forwarded and trimmed"
    );
    let keys: Vec<String> = cmd("KEYS")
        .arg(format!("{{{prefix}:kpi:{TENANT}*"))
        .query_async(connection)
        .await
        .expect("keys");
    let mut counters = BTreeMap::new();
    for key in keys {
        let (shard, rest) = key.split_once('}').expect("hash tag");
        let (kind, subject, bucket) = if let Some(bucket) = rest.strip_prefix(":c:") {
            match shard.split_once(":p:") {
                Some((_, partner)) => ("c", partner, bucket),
                None => ("tenant", "", bucket),
            }
        } else if let Some(bucket) = rest.strip_prefix(":t:") {
            (
                "t",
                shard.split_once(":p:").expect("a partner shard").1,
                bucket,
            )
        } else {
            continue;
        };
        let fields: BTreeMap<String, i64> = cmd("HGETALL")
            .arg(&key)
            .query_async(connection)
            .await
            .expect("hash");
        for (field, value) in fields {
            if value != 0 {
                counters.insert(
                    (
                        kind.to_owned(),
                        subject.to_owned(),
                        bucket.to_owned(),
                        field,
                    ),
                    value,
                );
            }
        }
    }
    counters
}

/// Feeds `arrival` to the store as a consumer of three partitions would (partition by
/// partner): batches of random size from a random partition at a time; sometimes the previous
/// batch again with the next (a redelivery), sometimes a crash after stage 1, after which the
/// batch is delivered again.
async fn feed(store: &Store, arrival: &[ActivityEvent], rng: &mut StdRng) {
    let calendar = Calendar::new(Moscow);
    let mut partitions: Vec<Vec<&ActivityEvent>> = vec![Vec::new(); 3];
    for event in arrival {
        let partition = event.partner_id.bytes().map(usize::from).sum::<usize>() % 3;
        partitions[partition].push(event);
    }
    // Per partition: the next offset to read and the last committed one.
    let mut next = [0_usize; 3];
    let mut committed = [0_usize; 3];
    while (0..3).any(|partition| committed[partition] < partitions[partition].len()) {
        let partition = rng.random_range(0..3);
        let records = &partitions[partition];
        if committed[partition] >= records.len() {
            continue;
        }
        let from = if rng.random_bool(0.25) {
            committed[partition].saturating_sub(3)
        } else {
            next[partition].max(committed[partition])
        };
        let to = (from + rng.random_range(1..=6)).min(records.len());
        let mut by_partner: BTreeMap<&str, PartnerBatch> = BTreeMap::new();
        for (offset, event) in records.iter().enumerate().take(to).skip(from) {
            by_partner
                .entry(&event.partner_id)
                .or_insert_with(|| PartnerBatch {
                    tenant_id: TENANT.into(),
                    partner_id: event.partner_id.clone(),
                    source: format!("activity/{partition}"),
                    events: Vec::new(),
                })
                .events
                .push(
                    partner_event(event, i64::try_from(offset).expect("small"), &calendar)
                        .expect("folds"),
                );
        }
        let batches: Vec<PartnerBatch> = by_partner.into_values().collect();
        if rng.random_bool(0.2) {
            // A crash after stage 1 and some forwarding hops, the last one applied but not
            // trimmed: nothing committed, the batch comes again.
            let hops = rng.random_range(0..4);
            store
                .apply_interrupted(&batches, hops)
                .await
                .expect("interrupted");
            next[partition] = committed[partition];
        } else {
            store.apply(&batches).await.expect("applied");
            committed[partition] = committed[partition].max(to);
            next[partition] = committed[partition];
        }
    }
}

#[tokio::test]
async fn counters_equal_the_rules_applied_to_the_event_set_in_any_order_and_after_crashes() {
    let config = Config::load(None).expect("defaults");
    let events = scenario();
    let expected = expected(&events);
    // Spot checks that the oracle reads the rules as intended.
    let key = |kind: &str, subject: &str, bucket: &str, field: &str| {
        (
            kind.to_owned(),
            subject.to_owned(),
            bucket.to_owned(),
            field.to_owned(),
        )
    };
    let personal = |subject: &str, bucket: &str, field: &str| {
        expected.get(&key("c", subject, bucket, field)).copied()
    };
    assert_eq!(personal("ann", "w:2026-W48", "pv"), Some(10_000 - 3_025));
    assert_eq!(
        personal("ann", "w:2026-W49", "pv"),
        None,
        "o-2 fully refunded"
    );
    assert_eq!(personal("ann", "w:2026-W49", "ord"), Some(1));
    assert_eq!(personal("ann", "m:2026-11", "mod"), Some(2));
    assert_eq!(personal("ann", "m:2026-12", "mod"), None);
    assert_eq!(personal("ann", "d:2026-11-21", "evt"), Some(1));
    assert_eq!(personal("ann", "life", "rank"), Some(2));
    assert_eq!(personal("bob", "d:2026-11-27", "pv"), Some(950));
    assert_eq!(
        personal("x3", "m:2026-12", "rec"),
        None,
        "n5's second enrolment is later than its first"
    );
    assert_eq!(
        personal("n4", "m:2026-11", "rec").map(|recruits| recruits >= 1),
        Some(true)
    );
    let team_orders = |subject: &str| {
        expected
            .get(&key("t", subject, "life", "ord"))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(
        team_orders("root"),
        expected[&key("tenant", "", "life", "ord")]
    );
    assert!(
        team_orders("n7") >= 2,
        "bob's orders reach the bottom of the chain"
    );
    assert!(team_orders("n3") > team_orders("n4"));

    for seed in 0..5 {
        let mut rng = StdRng::seed_from_u64(seed);
        let prefix = unique("ms-test");
        let mut connection = mentorstream_redis::connect(&config.redis).expect("redis");
        let store = Store::new(connection.clone(), KeySpace::new(&prefix, "kpi"));
        // Arrival order: shuffled (enrolments after the activity below them), and some events
        // published twice (ingest's crash window).
        let mut arrival = events.clone();
        for _ in 0..8 {
            let copy = arrival[rng.random_range(0..events.len())].clone();
            arrival.push(copy);
        }
        if seed > 0 {
            arrival.shuffle(&mut rng);
        }
        feed(&store, &arrival, &mut rng).await;
        assert_eq!(
            stored(&mut connection, &prefix).await,
            expected,
            "seed {seed}"
        );

        // Everything again, as a consumer that lost its committed offsets would: no change.
        feed(&store, &arrival, &mut rng).await;
        assert_eq!(
            stored(&mut connection, &prefix).await,
            expected,
            "seed {seed}, replayed"
        );

        let partners: BTreeSet<&str> = events
            .iter()
            .map(|event| event.partner_id.as_str())
            .collect();
        assert_eq!(partners.len(), 34);
    }
}
