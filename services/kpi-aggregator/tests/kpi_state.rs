//! The KPI state (docs/kpi-state.md) against the real local Redis: the personal, team and tenant
//! counters of a scripted scenario equal an independent computation of DESIGN.md §6 from the
//! event set, whatever the arrival order across partitions (enrolments after the activity below
//! them included), the batching, duplicates, redeliveries and crashes between the two stages.

mod scenario;

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Europe::Moscow;
use mentorstream_config::{Config, RedisConfig};
use mentorstream_kpi_aggregator::calendar::Calendar;
use mentorstream_kpi_aggregator::fold::partner_event;
use mentorstream_kpi_aggregator::store::{PartnerBatch, Store};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_redis::{KeySpace, cmd};
use mentorstream_testkit::{RedisCluster, unique};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use scenario::{Key, TENANT, expected, scenario};

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
    check_oracle();
    agrees_with_the_rules(&config.redis, 0..5).await;
}

/// The same on a Redis Cluster of three nodes: every script call stays within its hash slot.
#[tokio::test]
async fn a_redis_cluster_gives_the_same_counters() {
    let config = Config::load(None).expect("defaults");
    let cluster = RedisCluster::start().await;
    agrees_with_the_rules(&cluster.config(&config.redis), 0..3).await;
}

/// Spot checks that the oracle reads the rules as intended.
fn check_oracle() {
    let events = scenario();
    let expected = expected(&events);
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
}

/// Feeds the scenario with each seed's arrival order, batching, redeliveries and crashes, and
/// compares every counter with the oracle.
async fn agrees_with_the_rules(redis: &RedisConfig, seeds: std::ops::Range<u64>) {
    let events = scenario();
    let expected = expected(&events);
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let prefix = unique("ms-test");
        let mut connection = mentorstream_redis::connect(redis).expect("redis");
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
