//! The KPI state (docs/kpi-state.md) against the real local Redis: the personal, team and tenant
//! counters of a scripted scenario equal an independent computation of DESIGN.md §6 from the
//! event set, whatever the arrival order across partitions (enrolments after the activity below
//! them included), the batching, duplicates, redeliveries and crashes between the two stages.

use crate::scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono_tz::Europe::Moscow;
use futures::future::BoxFuture;
use mentorstream_config::{Config, RedisConfig};
use mentorstream_kpi_aggregator::calendar::Calendar;
use mentorstream_kpi_aggregator::fold::{mentorship_event, partner_event};
use mentorstream_kpi_aggregator::signal::{Payload, Signal, SignalSink, signal_id};
use mentorstream_kpi_aggregator::store::{PartnerBatch, Store};
use mentorstream_kpi_aggregator::target::{Target, TargetSource};
use mentorstream_proto::kpi::v1::SubjectKind;
use mentorstream_proto::mentorship::v1::mentorship_event;
use mentorstream_redis::{KeySpace, cmd};
use mentorstream_testkit::{RedisCluster, unique};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use scenario::{Events, Key, Record, TENANT, expected_signals, local};

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
            match (shard.split_once(":p:"), shard.split_once(":g:")) {
                (Some((_, partner)), _) => ("c", partner, bucket),
                (None, Some((_, group))) => ("g", group, bucket),
                (None, None) => ("tenant", "", bucket),
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

/// Keeps every signal the store publishes.
#[derive(Debug, Default)]
struct Collected(Mutex<Vec<Signal>>);

impl SignalSink for Collected {
    fn publish<'a>(&'a self, signals: &'a [Signal]) -> BoxFuture<'a, Result<(), String>> {
        self.0.lock().expect("lock").extend(signals.iter().cloned());
        Box::pin(async { Ok(()) })
    }
}

impl Collected {
    /// The last published signal of each id, Inactive aside.
    fn latest(&self) -> BTreeMap<String, Signal> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|signal| {
                matches!(
                    signal.payload,
                    Payload::FirstSale { .. } | Payload::RankAchieved { .. }
                )
            })
            .map(|signal| (signal.signal_id.clone(), signal.clone()))
            .collect()
    }
}

/// Goals reached are announced as they are reached (the latest setting of a goal counts);
/// after their due time a sweep announces exactly the others as missed, once.
async fn assert_goals(store: &Store, signals: &Collected, events: &Events) {
    let outcomes = scenario::expected_goals(events);
    let achieved: BTreeMap<String, (String, String, String, &str, i64)> = signals
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|signal| match &signal.payload {
            Payload::GoalAchieved {
                plan_id,
                goal_id,
                counter,
                target,
                ..
            } => Some((
                signal.signal_id.clone(),
                (
                    signal.partner_id.clone(),
                    goal_id.clone(),
                    plan_id.clone(),
                    counter.field(),
                    *target,
                ),
            )),
            _ => None,
        })
        .collect();
    let expected_achieved: BTreeMap<String, (String, String, String, &str, i64)> = outcomes
        .iter()
        .filter(|(_, goal)| goal.progress >= goal.target)
        .map(|(goal_id, goal)| {
            (
                signal_id(TENANT, &goal.mentee, "goal_achieved", goal_id),
                (
                    goal.mentee.clone(),
                    goal_id.clone(),
                    goal.plan.clone(),
                    goal.field,
                    goal.target,
                ),
            )
        })
        .collect();
    assert_eq!(achieved, expected_achieved);
    assert_eq!(
        expected_achieved.len(),
        3,
        "ann-orders, ann-modules, bob-sessions"
    );

    let after_every_due = local("2027-01-15 00:00");
    let announced = store
        .sweep_goals(TENANT, after_every_due)
        .await
        .expect("swept");
    let missed: BTreeMap<String, Signal> = signals
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|signal| matches!(signal.payload, Payload::GoalMissed { .. }))
        .map(|signal| (signal.signal_id.clone(), signal.clone()))
        .collect();
    let expected_missed: BTreeMap<String, Signal> = outcomes
        .iter()
        .filter(|(_, goal)| goal.progress < goal.target)
        .map(|(goal_id, goal)| {
            let signal_id = signal_id(TENANT, &goal.mentee, "goal_missed", goal_id);
            let signal = Signal {
                tenant_id: TENANT.into(),
                partner_id: goal.mentee.clone(),
                signal_id: signal_id.clone(),
                occurred_at: goal.due,
                payload: Payload::GoalMissed {
                    plan_id: goal.plan.clone(),
                    goal_id: goal_id.clone(),
                    counter: mentorstream_kpi_aggregator::metric::Counter::from_field(goal.field)
                        .expect("counter"),
                    target: goal.target,
                    value: goal.progress,
                },
            };
            (signal_id, signal)
        })
        .collect();
    assert_eq!(announced, expected_missed.len());
    assert_eq!(missed, expected_missed);
    assert_eq!(
        store
            .sweep_goals(TENANT, after_every_due)
            .await
            .expect("swept"),
        0,
        "a goal is missed once"
    );
}

/// Sweeps for inactivity at two moments and after new activity: every partner idle for a week
/// is announced exactly once per episode, with the rules' last activity and whole days.
async fn assert_inactivity(store: &Store, signals: &Collected, events: &Events) {
    let week = chrono::Duration::days(7);
    let sweeps = [local("2026-12-20 00:00"), local("2027-01-10 00:00")];
    let mut last_active: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for event in &events.activity {
        let at = chrono::DateTime::from_timestamp(event.occurred_at.expect("time").seconds, 0)
            .expect("time");
        let last = last_active.entry(&event.partner_id).or_insert(at);
        *last = (*last).max(at);
    }
    let mut expected = BTreeMap::new();
    for (partner, last) in &last_active {
        if let Some(now) = sweeps.iter().find(|now| *last <= **now - week) {
            let signal = Signal::inactive(TENANT, partner, last.timestamp_micros(), week, *now)
                .expect("valid");
            expected.insert(signal.signal_id.clone(), signal);
        }
    }
    let announced_at_first = store
        .sweep_inactive(TENANT, sweeps[0], week)
        .await
        .expect("swept");
    assert!(announced_at_first > 0 && announced_at_first < last_active.len());
    assert_eq!(
        store
            .sweep_inactive(TENANT, sweeps[0], week)
            .await
            .expect("swept"),
        0,
        "once per episode"
    );
    let announced_later = store
        .sweep_inactive(TENANT, sweeps[1], week)
        .await
        .expect("swept");
    assert_eq!(announced_at_first + announced_later, last_active.len());
    assert_eq!(inactive(signals), expected);

    // ann is active again (a new episode); a late ping of bob's, older than his latest
    // activity, starts none.
    let calendar = Calendar::new(Moscow);
    let ping = |partner: &str, id: &str, at: &str, offset| PartnerBatch {
        tenant_id: TENANT.into(),
        partner_id: partner.into(),
        source: "late/0".into(),
        events: vec![
            partner_event(
                &scenario::event(partner, id, at, scenario::ping()),
                offset,
                &calendar,
            )
            .expect("folds"),
        ],
    };
    store
        .apply(&[
            ping("ann", "back", "2027-01-12 10:00", 0),
            ping("bob", "late", "2026-12-01 10:00", 1),
        ])
        .await
        .expect("applied");
    let now = local("2027-01-25 00:00");
    assert_eq!(
        store
            .sweep_inactive(TENANT, now, week)
            .await
            .expect("swept"),
        1
    );
    let episode = Signal::inactive(
        TENANT,
        "ann",
        local("2027-01-12 10:00").timestamp_micros(),
        week,
        now,
    )
    .expect("valid");
    expected.insert(episode.signal_id.clone(), episode);
    assert_eq!(inactive(signals), expected);
}

/// Every Inactive signal published, by id; each id published once.
fn inactive(signals: &Collected) -> BTreeMap<String, Signal> {
    let published: Vec<Signal> = signals
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|signal| matches!(signal.payload, Payload::Inactive { .. }))
        .cloned()
        .collect();
    let by_id: BTreeMap<String, Signal> = published
        .iter()
        .map(|signal| (signal.signal_id.clone(), signal.clone()))
        .collect();
    assert_eq!(by_id.len(), published.len(), "no Inactive twice");
    by_id
}

/// The scenario's targets, without a database.
#[derive(Debug)]
struct FixedTargets(Arc<Vec<Target>>);

impl TargetSource for FixedTargets {
    fn targets<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Arc<Vec<Target>>, String>> {
        let targets = self.0.clone();
        Box::pin(async move { Ok(targets) })
    }
}

/// The TargetCrossed signals published, by id, as (target, subject kind, subject, recipient).
fn crossings(signals: &Collected) -> BTreeMap<String, (String, SubjectKind, String, String)> {
    signals
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|signal| match &signal.payload {
            Payload::TargetCrossed {
                target_id,
                subject_kind,
                subject_id,
                ..
            } => Some((
                signal.signal_id.clone(),
                (
                    target_id.clone(),
                    *subject_kind,
                    subject_id.clone(),
                    signal.partner_id.clone(),
                ),
            )),
            _ => None,
        })
        .collect()
}

/// Fails with the counters that differ (stored, expected), not both whole maps.
fn assert_same(stored: &BTreeMap<Key, i64>, expected: &BTreeMap<Key, i64>, context: &str) {
    let differing: Vec<(&Key, Option<&i64>, Option<&i64>)> = stored
        .keys()
        .chain(expected.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|key| (key, stored.get(key), expected.get(key)))
        .filter(|(_, stored, expected)| stored != expected)
        .collect();
    assert!(
        differing.is_empty(),
        "{context}: {} counters differ (key, stored, expected): {differing:?}",
        differing.len()
    );
    assert!(!expected.is_empty());
}

/// Feeds `arrival` to the store as the consumers of three activity partitions (by partner)
/// and two mentorship partitions (by key) would: batches of random size from a random
/// partition at a time; sometimes the previous batch again with the next (a redelivery),
/// sometimes a crash after stage 1 and a few forwarding hops, after which the batch is
/// delivered again.
async fn feed(store: &Store, arrival: &[Record], rng: &mut StdRng) {
    let calendar = Calendar::new(Moscow);
    let mut partitions: Vec<(String, Vec<&Record>)> = (0..3)
        .map(|partition| (format!("activity/{partition}"), Vec::new()))
        .chain((0..2).map(|partition| (format!("mentorship/{partition}"), Vec::new())))
        .collect();
    for record in arrival {
        let hash = record.key().bytes().map(usize::from).sum::<usize>();
        let partition = match record {
            Record::Activity(_) => hash % 3,
            Record::Mentorship(_) => 3 + hash % 2,
        };
        partitions[partition].1.push(record);
    }
    let count = partitions.len();
    // Per partition: the next offset to read and the last committed one.
    let mut next = vec![0_usize; count];
    let mut committed = vec![0_usize; count];
    while (0..count).any(|partition| committed[partition] < partitions[partition].1.len()) {
        let partition = rng.random_range(0..count);
        let (source, records) = &partitions[partition];
        if committed[partition] >= records.len() {
            continue;
        }
        let from = if rng.random_bool(0.25) {
            committed[partition].saturating_sub(3)
        } else {
            next[partition].max(committed[partition])
        };
        let to = (from + rng.random_range(1..=6)).min(records.len());
        let mut by_partner: BTreeMap<String, PartnerBatch> = BTreeMap::new();
        for (offset, record) in records.iter().enumerate().take(to).skip(from) {
            let offset = i64::try_from(offset).expect("small");
            let shard_events = match record {
                Record::Activity(event) => vec![(
                    event.partner_id.clone(),
                    partner_event(event, offset, &calendar).expect("folds"),
                )],
                Record::Mentorship(event) => {
                    mentorship_event(event, offset, &calendar).expect("folds")
                }
            };
            for (partner_id, shard_event) in shard_events {
                by_partner
                    .entry(partner_id.clone())
                    .or_insert_with(|| PartnerBatch {
                        tenant_id: TENANT.into(),
                        partner_id,
                        source: source.clone(),
                        events: Vec::new(),
                    })
                    .events
                    .push(shard_event);
            }
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
    let events = Events::scenario();
    let expected = events.expected();
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

    let group = |subject: &str, bucket: &str, field: &str| {
        expected.get(&key("g", subject, bucket, field)).copied()
    };
    // ann's order at 23:50 on Sunday counts for g-1, the one at 00:10 on Monday for g-2; her
    // ping at 00:00 Monday is still g-1's (the transfer was at 00:05).
    assert_eq!(group("g-1", "d:2026-11-29", "ord"), Some(1));
    assert_eq!(group("g-2", "d:2026-11-30", "ord"), Some(1), "ann's o-2");
    assert_eq!(group("g-2", "d:2026-12-01", "ord"), Some(1), "bob's o-10");
    assert_eq!(group("g-1", "d:2026-11-30", "act"), Some(1));
    // bob's o-9 counts on 27 Nov (its earlier placement), before he joined g-2: no group's.
    assert_eq!(group("g-2", "d:2026-11-27", "pv"), None);
    assert_eq!(
        group("g-1", "life", "ses"),
        Some(1),
        "ann attended s-1; x1 missed it"
    );
    assert_eq!(group("g-1", "life", "mis"), Some(1));
    assert_eq!(
        group("g-2", "life", "ses"),
        Some(2),
        "s-3 once for ann and bob"
    );
    assert_eq!(group("g-2", "life", "mis"), Some(2), "s-2 for ann and bob");
    assert_eq!(
        group("g-1", "life", "fbs"),
        None,
        "feedback is the mentor's own"
    );
    assert_eq!(
        personal("n2", "life", "fbs"),
        Some(5),
        "the earlier rating counts"
    );
    assert_eq!(personal("n4", "life", "fbc"), Some(2));
    assert_eq!(personal("n4", "life", "ses"), Some(1));
    assert_eq!(
        scenario::members(&events.mentorship, "g-2"),
        (
            vec!["ann".to_owned(), "bob".to_owned()],
            Some("n4".to_owned())
        )
    );
    assert_eq!(
        scenario::members(&events.mentorship, "g-1"),
        (Vec::new(), Some("n2".to_owned()))
    );
}

/// Feeds the scenario with each seed's arrival order, batching, redeliveries and crashes, and
/// compares every counter with the oracle.
async fn agrees_with_the_rules(redis: &RedisConfig, seeds: std::ops::Range<u64>) {
    let events = Events::scenario();
    let expected = events.expected();
    let records = events.records();
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let prefix = unique("ms-test");
        let mut connection = mentorstream_redis::connect(redis).expect("redis");
        let signals = Arc::new(Collected::default());
        let store = Store::new(connection.clone(), KeySpace::new(&prefix, "kpi"))
            .with_signals(signals.clone())
            .with_targets(Arc::new(FixedTargets(Arc::new(scenario::targets()))));
        // Arrival order: shuffled (enrolments after the activity below them), and some events
        // published twice (ingest's crash window).
        let mut arrival = records.clone();
        for _ in 0..8 {
            let copy = arrival[rng.random_range(0..records.len())].clone();
            arrival.push(copy);
        }
        if seed > 0 {
            arrival.shuffle(&mut rng);
        }
        feed(&store, &arrival, &mut rng).await;
        assert_same(
            &stored(&mut connection, &prefix).await,
            &expected,
            &format!("seed {seed}"),
        );

        // Everything again, as a consumer that lost its committed offsets would: no change.
        feed(&store, &arrival, &mut rng).await;
        assert_same(
            &stored(&mut connection, &prefix).await,
            &expected,
            &format!("seed {seed}, replayed"),
        );

        assert_eq!(
            signals.latest(),
            expected_signals(&events.activity),
            "seed {seed}: the latest signal of each cause"
        );

        let crossed = crossings(&signals);
        assert_eq!(
            crossed,
            scenario::expected_crossings(TENANT, &expected),
            "seed {seed}: targets crossed"
        );
        assert!(crossed.len() > 3, "the scenario crosses targets");
        assert_goals(&store, &signals, &events).await;
        assert_inactivity(&store, &signals, &events).await;

        for group in ["g-1", "g-2"] {
            let (mentees, mentor) = scenario::members(&events.mentorship, group);
            let stored = store.group_members(TENANT, group).await.expect("members");
            assert_eq!(
                (stored.mentee_ids, stored.mentor_id),
                (mentees, mentor),
                "seed {seed}, {group}"
            ); // Whose contributions Explain looks at: every mentee ever assigned to the group,
            // also when a transfer out arrived before the assignment it ends.
            let mut ever: Vec<String> = events
                .mentorship
                .iter()
                .filter_map(|event| match event.payload.as_ref()? {
                    mentorship_event::Payload::MenteeAssigned(assigned)
                        if assigned.group_id == group =>
                    {
                        Some(assigned.mentee_id.clone())
                    }
                    _ => None,
                })
                .collect();
            ever.sort();
            ever.dedup();
            assert_eq!(
                store
                    .group_members_ever(TENANT, group)
                    .await
                    .expect("members ever"),
                ever,
                "seed {seed}, {group}: ever assigned"
            );
        }

        let partners: BTreeSet<&str> = events
            .activity
            .iter()
            .map(|event| event.partner_id.as_str())
            .collect();
        assert_eq!(partners.len(), 34);
    }
}
