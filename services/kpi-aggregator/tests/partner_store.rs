//! Stage 1 of the KPI state (docs/kpi-state.md) against the real local Redis: personal counters
//! of a scripted scenario equal an independent computation of DESIGN.md §6 from the event set,
//! whatever the arrival order, the batching, duplicates and redeliveries.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Moscow;
use mentorstream_config::Config;
use mentorstream_kpi_aggregator::calendar::Calendar;
use mentorstream_kpi_aggregator::fold::partner_event;
use mentorstream_kpi_aggregator::store::{PartnerBatch, Store};
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
    vec![
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
    ]
}

/// (partner, bucket key, field) → value: DESIGN.md §6 computed directly from the event set.
fn expected(events: &[ActivityEvent]) -> BTreeMap<(String, String, String), i64> {
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
            _ => {}
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
            other => panic!("unexpected {other:?}"),
        }
    }
    counters.retain(|_, value| *value != 0);
    counters
}

/// Every non-zero personal counter under `prefix`, as (partner, bucket key, field) → value.
async fn stored(
    store: &Store,
    connection: &mut mentorstream_redis::Connection,
    prefix: &str,
) -> BTreeMap<(String, String, String), i64> {
    let keys: Vec<String> = cmd("KEYS")
        .arg(format!("{{{prefix}:kpi:{TENANT}:p:*:c:*"))
        .query_async(connection)
        .await
        .expect("keys");
    let mut counters = BTreeMap::new();
    for key in keys {
        let (shard, bucket) = key.split_once("}:c:").expect("counter key");
        let partner = shard.rsplit(':').next().expect("partner").to_owned();
        assert_eq!(format!("{shard}}}"), store.partner_shard(TENANT, &partner));
        let fields: BTreeMap<String, i64> = cmd("HGETALL")
            .arg(&key)
            .query_async(connection)
            .await
            .expect("hash");
        for (field, value) in fields {
            if value != 0 {
                counters.insert((partner.clone(), bucket.to_owned(), field), value);
            }
        }
    }
    counters
}

/// Feeds `events` in `arrival` order as one partition: random batch sizes, and every few
/// batches a redelivery of the previous two together (a crash before the offset commit).
async fn feed(store: &Store, arrival: &[ActivityEvent], rng: &mut StdRng) {
    let calendar = Calendar::new(Moscow);
    let offsets: Vec<(i64, &ActivityEvent)> = (0_i64..).zip(arrival).collect();
    let mut start = 0;
    let mut previous = 0;
    while start < offsets.len() {
        let end = (start + rng.random_range(1..=5)).min(offsets.len());
        let replay_from = if rng.random_bool(0.3) {
            previous
        } else {
            start
        };
        let mut by_partner: BTreeMap<&str, PartnerBatch> = BTreeMap::new();
        for (offset, event) in &offsets[replay_from..end] {
            by_partner
                .entry(&event.partner_id)
                .or_insert_with(|| PartnerBatch {
                    tenant_id: TENANT.into(),
                    partner_id: event.partner_id.clone(),
                    source: "activity/0".into(),
                    events: Vec::new(),
                })
                .events
                .push(partner_event(event, *offset, &calendar).expect("folds"));
        }
        let batches: Vec<PartnerBatch> = by_partner.into_values().collect();
        store.apply_partners(&batches).await.expect("applied");
        previous = start;
        start = end;
    }
}

#[tokio::test]
async fn personal_counters_equal_the_rules_applied_to_the_event_set_in_any_order() {
    let config = Config::load(None).expect("defaults");
    let events = scenario();
    let expected = expected(&events);
    // A few spot checks that the oracle reads the rules as intended.
    let key = |partner: &str, bucket: &str, field: &str| {
        (partner.to_owned(), bucket.to_owned(), field.to_owned())
    };
    assert_eq!(
        expected.get(&key("ann", "w:2026-W48", "pv")),
        Some(&(10_000 - 3_025))
    );
    assert_eq!(
        expected.get(&key("ann", "w:2026-W49", "pv")),
        None,
        "o-2 fully refunded"
    );
    assert_eq!(expected.get(&key("ann", "w:2026-W49", "ord")), Some(&1));
    assert_eq!(expected.get(&key("ann", "m:2026-11", "mod")), Some(&2));
    assert_eq!(expected.get(&key("ann", "m:2026-12", "mod")), None);
    assert_eq!(expected.get(&key("ann", "d:2026-11-21", "evt")), Some(&1));
    assert_eq!(expected.get(&key("ann", "life", "rank")), Some(&2));
    assert_eq!(expected.get(&key("ann", "life", "act")), Some(&10));
    assert_eq!(expected.get(&key("bob", "d:2026-11-27", "pv")), Some(&950));
    assert_eq!(expected.get(&key("bob", "life", "ord")), Some(&2));

    for seed in 0..6 {
        let mut rng = StdRng::seed_from_u64(seed);
        let prefix = unique("ms-test");
        let mut connection = mentorstream_redis::connect(&config.redis).expect("redis");
        let store = Store::new(connection.clone(), KeySpace::new(&prefix, "kpi"));
        // Arrival order: shuffled, and some events published twice (ingest's crash window).
        let mut arrival = events.clone();
        for _ in 0..4 {
            let copy = arrival[rng.random_range(0..events.len())].clone();
            arrival.push(copy);
        }
        if seed > 0 {
            arrival.shuffle(&mut rng);
        }
        feed(&store, &arrival, &mut rng).await;
        assert_eq!(
            stored(&store, &mut connection, &prefix).await,
            expected,
            "seed {seed}"
        );

        // Everything again, as a consumer that lost its committed offsets would: no change.
        feed(&store, &arrival, &mut rng).await;
        assert_eq!(
            stored(&store, &mut connection, &prefix).await,
            expected,
            "seed {seed}, replayed"
        );

        let partners: BTreeSet<&str> = events
            .iter()
            .map(|event| event.partner_id.as_str())
            .collect();
        assert_eq!(partners.len(), 2);
    }
}
