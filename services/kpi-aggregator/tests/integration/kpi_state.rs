//! The KPI engine (docs/kpi-engine.md) against the real local Redis: the personal, team, group
//! and tenant counters of a scripted scenario equal an independent computation of docs/spec.md
//! §6 from the event set, whatever the arrival order across partitions (enrolments after the
//! activity below them, assignments after the activity they govern), the batching,
//! duplicates, redeliveries, writers that crash before their offsets are committed, and two
//! writers fighting over the tenant.

use crate::scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono_tz::Europe::Moscow;
use futures::future::BoxFuture;
use mentorstream_config::{Config, RedisConfig};
use mentorstream_kpi_aggregator::calendar::Calendar;
use mentorstream_kpi_aggregator::engine::{Engine, Input};
use mentorstream_kpi_aggregator::signal::{Payload, Signal, SignalSink, signal_id};
use mentorstream_kpi_aggregator::state::input;
use mentorstream_kpi_aggregator::store::{OwnedSubject, Store};
use mentorstream_kpi_aggregator::target::{Target, TargetSource};
use mentorstream_proto::kpi::v1::SubjectKind;
use mentorstream_proto::mentorship::v1::mentorship_event;
use mentorstream_redis::KeySpace;
use mentorstream_testkit::{RedisCluster, unique};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use scenario::{Events, Key, Record, TENANT, expected_signals, local};

/// Every non-zero counter of the tenant, keyed like the oracle.
async fn stored(store: &Store) -> BTreeMap<Key, i64> {
    let mut counters = BTreeMap::new();
    for (subject, numbers) in store.all_counters(TENANT).await.expect("records") {
        let (kind, id) = match subject {
            OwnedSubject::Partner(id) => ("c", id),
            OwnedSubject::Team(id) => ("t", id),
            OwnedSubject::Group(id) => ("g", id),
            OwnedSubject::Tenant => ("tenant", String::new()),
        };
        for (bucket, counts) in numbers.buckets() {
            for (counter, value) in counts.iter() {
                if value != 0 {
                    let key = (
                        kind.to_owned(),
                        id.clone(),
                        bucket.to_string(),
                        counter.field().to_owned(),
                    );
                    counters.insert(key, value);
                }
            }
        }
    }
    counters
}

/// Keeps every signal published.
#[derive(Debug, Default)]
struct Collected(Mutex<Vec<Signal>>);

impl SignalSink for Collected {
    fn publish<'a>(&'a self, signals: &'a [Signal]) -> BoxFuture<'a, Result<(), String>> {
        self.0.lock().expect("lock").extend(signals.iter().cloned());
        Box::pin(async { Ok(()) })
    }
}

impl Collected {
    /// The last published signal of each id, FirstSale and RankAchieved.
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

    fn of_kind(&self, kind: fn(&Payload) -> bool) -> Vec<Signal> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|signal| kind(&signal.payload))
            .cloned()
            .collect()
    }
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

/// A writer as a process would make it.
fn engine(
    redis: &mentorstream_redis::Connection,
    keys: &KeySpace,
    signals: &Arc<Collected>,
) -> Engine {
    Engine::new(redis.clone(), keys.clone())
        .with_signals(signals.clone())
        .with_targets(Arc::new(FixedTargets(Arc::new(scenario::targets()))))
}

/// A record as the consumer hands it to the engine.
fn as_input(record: &Record, source: &str, offset: usize) -> Input {
    let calendar = Calendar::new(Moscow);
    let events = match record {
        Record::Activity(event) => vec![input::activity(event, &calendar).expect("folds")],
        Record::Mentorship(event) => input::mentorship(event, &calendar).expect("folds"),
    };
    Input {
        source: source.to_owned(),
        offset: i64::try_from(offset).expect("small"),
        events,
    }
}

/// Feeds `arrival` as consumers of three activity and two mentorship partitions would (by
/// key, so the tenant's records come from five sources): batches of random size from a random
/// partition; sometimes the last batches again (a redelivery); sometimes a crash after a batch
/// was applied and before its offsets were committed (a new writer takes over and the batch
/// comes again); and two writers taking turns, each fencing the other.
async fn feed(
    engines: &mut [Engine; 2],
    fresh: &dyn Fn() -> Engine,
    arrival: &[Record],
    rng: &mut StdRng,
) {
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
            committed[partition]
        };
        let to = (from + rng.random_range(1..=6)).min(records.len());
        let inputs: Vec<Input> = (from..to)
            .map(|offset| as_input(records[offset], source, offset))
            .collect();
        let writer = rng.random_range(0..2);
        let applied = engines[writer]
            .apply(TENANT, calendar, &inputs)
            .await
            .expect("applied");
        assert!(applied.refused.is_empty(), "{:?}", applied.refused);
        if rng.random_bool(0.2) {
            // A crash before the commit: the batch comes again, to a new writer.
            engines[writer] = fresh();
        } else {
            committed[partition] = committed[partition].max(to);
        }
    }
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
}

#[tokio::test]
async fn counters_equal_the_rules_applied_to_the_event_set_in_any_order_and_after_crashes() {
    let config = Config::load(None).expect("defaults");
    check_oracle();
    agrees_with_the_rules(&config.redis, 0..6).await;
}

/// The same on a Redis Cluster of three nodes: a tenant's keys share one hash slot.
#[tokio::test]
async fn a_redis_cluster_gives_the_same_counters() {
    let config = Config::load(None).expect("defaults");
    let cluster = RedisCluster::start().await;
    agrees_with_the_rules(&cluster.config(&config.redis), 0..3).await;
}

/// An enrolment that would close a cycle in the genealogy can never be applied: it is refused
/// with its cause, and nothing of it counts.
#[tokio::test]
async fn an_enrolment_that_makes_a_cycle_is_refused_with_its_cause() {
    let config = Config::load(None).expect("defaults");
    let connection = mentorstream_redis::connect(&config.redis).expect("redis");
    let keys = KeySpace::new(&unique("ms-test"), "kpi");
    let signals = Arc::new(Collected::default());
    let mut engine = engine(&connection, &keys, &signals);
    let enrol = |partner: &str, sponsor: &str, at: &str| {
        Record::Activity(scenario::event(
            partner,
            &format!("enrol-{partner}-{at}"),
            at,
            scenario::enrolment(sponsor),
        ))
    };
    let records = [
        enrol("a", "", "2026-11-01 10:00"),
        enrol("b", "a", "2026-11-01 11:00"),
        enrol("c", "b", "2026-11-01 12:00"),
        // a's own earlier enrolment names c, its grandchild.
        enrol("a", "c", "2026-10-31 10:00"),
    ];
    let inputs: Vec<Input> = records
        .iter()
        .enumerate()
        .map(|(offset, record)| as_input(record, "activity/0", offset))
        .collect();
    let applied = engine
        .apply(TENANT, Calendar::new(Moscow), &inputs)
        .await
        .expect("applied");
    assert_eq!(
        applied.refused,
        vec![(
            3,
            "sponsoring `a` by `c` makes a cycle: `c` is in `a`'s downline".to_owned()
        )]
    );
    let store = Store::new(connection, keys);
    let journey = store.journey_facts(TENANT, "a").await.expect("journey");
    assert_eq!(
        journey.enrolment.map(|(_, sponsor)| sponsor),
        Some(String::new())
    );
    assert_eq!(
        store.downline(TENANT, "a", 10).await.expect("downline"),
        vec!["a", "b", "c"]
    );
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
    // The transfer day is an active day of both groups: ann was active in each (and bob, in
    // g-2 since the 28th, too).
    assert_eq!(group("g-1", "d:2026-11-30", "act"), Some(1));
    assert_eq!(group("g-2", "d:2026-11-30", "act"), Some(2));
    assert_eq!(group("g-2", "d:2026-11-27", "pv"), None);
    assert_eq!(
        group("g-1", "life", "ses"),
        Some(1),
        "ann attended s-1; x1 missed it"
    );
    assert_eq!(
        group("g-2", "life", "ses"),
        Some(2),
        "s-3 once for ann and bob"
    );
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
}

/// Feeds the scenario with each seed's arrival order, batching, redeliveries, crashes and
/// rival writers, and compares every counter with the oracle; then signals, goals,
/// inactivity, membership.
async fn agrees_with_the_rules(redis: &RedisConfig, seeds: std::ops::Range<u64>) {
    let events = Events::scenario();
    let expected = events.expected();
    let records = events.records();
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = KeySpace::new(&unique("ms-test"), "kpi");
        let connection = mentorstream_redis::connect(redis).expect("redis");
        let signals = Arc::new(Collected::default());
        let fresh = || engine(&connection, &keys, &signals);
        let mut engines = [fresh(), fresh()];
        let store = Store::new(connection.clone(), keys.clone()).with_signals(signals.clone());
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
        feed(&mut engines, &fresh, &arrival, &mut rng).await;
        assert_same(&stored(&store).await, &expected, &format!("seed {seed}"));

        // Everything again, as a consumer that lost its committed offsets would: no change.
        feed(&mut engines, &fresh, &arrival, &mut rng).await;
        assert_same(
            &stored(&store).await,
            &expected,
            &format!("seed {seed}, replayed"),
        );

        assert_eq!(
            signals.latest(),
            expected_signals(&events.activity),
            "seed {seed}: the latest signal of each cause"
        );
        let crossed: BTreeMap<String, (String, SubjectKind, String, String)> = signals
            .of_kind(|payload| matches!(payload, Payload::TargetCrossed { .. }))
            .into_iter()
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
            .collect();
        assert_eq!(
            crossed,
            scenario::expected_crossings(TENANT, &expected),
            "seed {seed}: targets crossed"
        );
        assert!(crossed.len() > 3, "the scenario crosses targets");
        assert_goals(&store, &signals, &events).await;
        assert_inactivity(&store, &mut engines[0], &signals, &events).await;
        for group in ["g-1", "g-2"] {
            let (mentees, mentor) = scenario::members(&events.mentorship, group);
            let stored = store.group_members(TENANT, group).await.expect("members");
            assert_eq!(
                (stored.mentee_ids, stored.mentor_id),
                (mentees, mentor),
                "seed {seed}, {group}"
            );
            // Whose contributions Explain looks at: every mentee ever assigned to the group,
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
    }
}

/// Goals reached are announced as they are reached (the latest setting of a goal counts);
/// after their due time a sweep announces exactly the others as missed, once.
async fn assert_goals(store: &Store, signals: &Collected, events: &Events) {
    let outcomes = scenario::expected_goals(events);
    let achieved: BTreeMap<String, (String, String, String, &str, i64)> = signals
        .of_kind(|payload| matches!(payload, Payload::GoalAchieved { .. }))
        .into_iter()
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
        .of_kind(|payload| matches!(payload, Payload::GoalMissed { .. }))
        .into_iter()
        .map(|signal| (signal.signal_id.clone(), signal))
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
async fn assert_inactivity(
    store: &Store,
    engine: &mut Engine,
    signals: &Collected,
    events: &Events,
) {
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
    let ping = |partner: &str, id: &str, at: &str, offset| {
        let record = Record::Activity(scenario::event(partner, id, at, scenario::ping()));
        as_input(&record, "late/0", offset)
    };
    engine
        .apply(
            TENANT,
            Calendar::new(Moscow),
            &[
                ping("ann", "back", "2027-01-12 10:00", 0),
                ping("bob", "late", "2026-12-01 10:00", 1),
            ],
        )
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
    let published = signals.of_kind(|payload| matches!(payload, Payload::Inactive { .. }));
    let by_id: BTreeMap<String, Signal> = published
        .iter()
        .map(|signal| (signal.signal_id.clone(), signal.clone()))
        .collect();
    assert_eq!(by_id.len(), published.len(), "no Inactive twice");
    by_id
}
