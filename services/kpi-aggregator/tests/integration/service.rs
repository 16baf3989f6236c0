//! The KPI aggregator as a service against the real local stack: activity and mentorship
//! records on its topics (one of them poison) become exactly the scorecards, series,
//! leaderboards, journeys and signals docs/spec.md §6 defines, read through KpiService and the
//! signals topic; targets are managed through the API; a rebuild gives the same numbers.

use std::collections::BTreeMap;

use crate::scenario;

use mentorstream_config::Config;
use mentorstream_kpi_aggregator::expire::Sweeper;
use mentorstream_kpi_aggregator::signal::signal_id;
use mentorstream_proto::kpi::v1::{SubjectKind, WindowKind};
use mentorstream_runtime::{Context, Listeners};
use mentorstream_testkit::{RedisCluster, fresh_database, unique};
use scenario::live::{
    Reader, assert_explained, assert_journeys, assert_leaderboards, assert_scorecards,
    assert_series, assert_signals, assert_target_progress, assert_team_and_group_leaderboards,
    assert_updates_topic, assert_watched, create_tenant, delete_generation, expected_numbers,
    expected_watched, produce, produce_named_sentinels, produce_poison, produce_sentinels,
    put_targets, wait_for, wait_for_tenant_totals, watch, window,
};
use scenario::{Events, expected_crossings, expected_goals, expected_signals};
use tonic::Code;

/// The aggregator running in this process.
struct Aggregator {
    addr: std::net::SocketAddr,
    api_key: String,
    tenant_id: String,
    context: Context,
    served: tokio::task::JoinHandle<Result<(), mentorstream_kpi_aggregator::ServiceError>>,
}

impl Aggregator {
    /// An aggregator on the local stack's Redis, or on `cluster`.
    async fn start(cluster: Option<&RedisCluster>) -> Self {
        Self::start_with(cluster, |_| {}).await
    }

    async fn start_with(cluster: Option<&RedisCluster>, adjust: impl FnOnce(&mut Config)) -> Self {
        let telemetry = mentorstream_telemetry::init_for_tests();
        let mut config = Config::load(None).expect("defaults");
        config.kafka.partitions = 3;
        config.kafka.topics.activity = unique("t.activity");
        config.kafka.topics.mentorship = unique("t.mentorship");
        config.kafka.topics.kpi_signals = unique("t.signals");
        config.kafka.topics.kpi_updates = unique("t.updates");
        if let Some(cluster) = cluster {
            config.redis = cluster.config(&config.redis);
        }
        config.redis.key_prefix = unique("ms-test");
        config.postgres.url = fresh_database(&config, "kpi").await.into();
        adjust(&mut config);
        let context = Context::connect(config, telemetry).await.expect("context");
        let (tenant_id, api_key) = create_tenant(&context.tenants).await;
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_kpi_aggregator::run(context.clone(), listeners));
        Self {
            addr,
            api_key,
            tenant_id,
            context,
            served,
        }
    }

    /// Stops this process and starts another with the same configuration (same group, topics,
    /// Redis and tenant), as a deployment's restart does.
    async fn restart(self) -> Self {
        let config = Config::clone(&self.context.config);
        let (api_key, tenant_id) = (self.api_key.clone(), self.tenant_id.clone());
        self.stop().await;
        let telemetry = mentorstream_telemetry::init_for_tests();
        let context = Context::connect(config, telemetry).await.expect("context");
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_kpi_aggregator::run(context.clone(), listeners));
        Self {
            addr,
            api_key,
            tenant_id,
            context,
            served,
        }
    }

    async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

#[tokio::test]
async fn scorecards_equal_the_rules_applied_to_the_records_on_the_topic() {
    scorecards_equal_the_rules(None).await;
}

/// Waits until the service answers, which it does once its topics exist.
async fn wait_until_serving(reader: &mut Reader) {
    while reader
        .scorecard(SubjectKind::Tenant, "", window(WindowKind::Lifetime, None))
        .await
        .is_err()
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// With `kpi_updates_per_tenant`, each tenant's updates are on its own topic and only there,
/// and WatchKpis follows them.
#[tokio::test]
async fn per_tenant_updates_topics_carry_only_their_tenants_keys() {
    let aggregator = Aggregator::start_with(None, |config| {
        config.kafka.topics.kpi_updates_per_tenant = true;
    })
    .await;
    let kafka = &aggregator.context.config.kafka;
    let tenants = &aggregator.context.tenants;
    let globex = tenants
        .create_tenant(mentorstream_tenancy::NewTenant {
            name: "globex".into(),
            time_zone: "Europe/Berlin".into(),
            default_locale: "en-US".into(),
        })
        .await
        .expect("tenant")
        .tenant_id;
    let globex_key = tenants
        .create_key("globex", "read".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;
    let mut reader = Reader::connect(aggregator.addr, aggregator.api_key.clone()).await;
    wait_until_serving(&mut reader).await;
    let mut globex_reader = Reader::connect(aggregator.addr, globex_key).await;
    let lifetime = [window(WindowKind::Lifetime, None)];
    let mut watching = watch(&mut reader, &[(SubjectKind::Tenant, "")], &lifetime).await;
    let snapshot = watching.message().await.expect("stream").expect("snapshot");

    let acme_events = produce_named_sentinels(kafka, &aggregator.tenant_id, "acme").await;
    let globex_events = produce_named_sentinels(kafka, &globex, "globex").await;
    wait_for(&mut reader, &acme_events).await;
    wait_for(&mut globex_reader, &globex_events).await;
    let changed = tokio::time::timeout(scenario::live::WAIT, watching.message())
        .await
        .expect("an update within the wait")
        .expect("stream")
        .expect("an update");
    assert_ne!(
        changed.update.map(|update| update.values),
        snapshot.update.map(|update| update.values),
        "the watcher saw acme's events counted"
    );

    for tenant in [&aggregator.tenant_id, &globex] {
        let topic = kafka.topics.kpi_updates_of(tenant);
        let deadline = tokio::time::Instant::now() + scenario::live::WAIT;
        let keys = loop {
            let keys: Vec<String> = mentorstream_testkit::read_to_end(kafka, &topic)
                .await
                .iter()
                .map(|message| {
                    use mentorstream_kafka::Message as _;
                    String::from_utf8_lossy(message.key().expect("key")).into_owned()
                })
                .collect();
            if !keys.is_empty() || tokio::time::Instant::now() > deadline {
                break keys;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        assert!(!keys.is_empty(), "{topic} holds {tenant}'s updates");
        let prefix = format!("{tenant}/");
        assert!(
            keys.iter().all(|key| key.starts_with(&prefix)),
            "{topic} holds another tenant's keys: {keys:?}"
        );
    }
    assert_eq!(
        mentorstream_testkit::read_to_end(kafka, &kafka.topics.kpi_updates)
            .await
            .len(),
        0,
        "nothing on the shared topic"
    );
    let (kafka, tenants, acme) = (kafka.clone(), tenants.clone(), aggregator.tenant_id.clone());
    aggregator.stop().await;

    // The sweep finds every tenant's topic: 100 days on, their days are tombstoned.
    let kafka = &kafka;
    let days = |topic: String| async move {
        latest_keys(kafka, &topic)
            .await
            .into_iter()
            .filter(|(key, live)| *live && key.ends_with("/d:2026-12-20"))
            .count()
    };
    let topics = [&acme, &globex].map(|tenant| kafka.topics.kpi_updates_of(tenant));
    // (The sentinels' day, 2026-12-20, is live until the real clock passes 2027-03-30.)
    let live_days = days(topics[0].clone()).await + days(topics[1].clone()).await;
    let producer =
        mentorstream_kafka::Producer::new(kafka, scenario::live::WAIT).expect("producer");
    let later = chrono::DateTime::parse_from_rfc3339("2027-03-30T12:00:00Z").expect("time");
    let swept =
        mentorstream_kpi_aggregator::expire::sweep(kafka, &tenants, &producer, later.into())
            .await
            .expect("sweep");
    assert_eq!(swept.tombstoned, live_days as u64);
    let [acme_topic, globex_topic] = topics;
    assert_eq!(days(acme_topic).await + days(globex_topic).await, 0);
}

/// Whether each key of the updates topic is live (its latest record carries numbers) or gone
/// (its latest record is a tombstone).
async fn latest_keys(
    kafka: &mentorstream_config::KafkaConfig,
    topic: &str,
) -> BTreeMap<String, bool> {
    use mentorstream_kafka::Message as _;
    mentorstream_testkit::read_to_end(kafka, topic)
        .await
        .iter()
        .map(|message| {
            let key = String::from_utf8_lossy(message.key().expect("key")).into_owned();
            (key, message.payload().is_some())
        })
        .collect()
}

/// Expired keys of the updates topic get tombstones. A bucket changed when it has already
/// expired (history from long ago) is tombstoned by the publisher instead of published; each
/// sweep, at a manual clock, tombstones exactly the live keys whose bucket its local day has
/// expired (days 100 days on, weeks 400 days after their Sunday, months 1,200 days after their
/// last day), once; lifetime keys stay.
#[tokio::test]
async fn expired_update_keys_get_tombstones() {
    let aggregator = Aggregator::start(None).await;
    let kafka = aggregator.context.config.kafka.clone();
    let tenants = aggregator.context.tenants.clone();
    let mut reader = Reader::connect(aggregator.addr, aggregator.api_key.clone()).await;
    wait_until_serving(&mut reader).await;
    // Dated from today, so that what the publisher (on the real clock) finds expired stays
    // the same whenever the test runs: the ancient partner's day, and nothing else.
    let now =
        chrono::Utc::now().with_timezone(&chrono_tz::Europe::Moscow) - chrono::Duration::minutes(1);
    let recent = now.date_naive();
    let ancient = recent - chrono::Days::new(340);
    let mut events = vec![scenario::event(
        "ancient",
        "ancient-1",
        &format!("{ancient} 12:00"),
        scenario::ping(),
    )];
    for n in 0..kafka.partitions {
        let partner = format!("recent-{n}");
        events.push(scenario::event(
            &partner,
            &partner,
            &now.format("%Y-%m-%d %H:%M").to_string(),
            scenario::ping(),
        ));
    }
    let mut sentinels = scenario::Events::default();
    for event in &mut events {
        event.tenant_id.clone_from(&aggregator.tenant_id);
        sentinels.activity.push(event.clone());
    }
    let records: Vec<scenario::Record> =
        events.into_iter().map(scenario::Record::Activity).collect();
    produce(&kafka, &records).await;
    wait_for(&mut reader, &sentinels).await;

    let day = |date: chrono::NaiveDate| format!("d:{date}");
    let week = |date: chrono::NaiveDate| {
        use chrono::Datelike as _;
        format!(
            "w:{}-W{:02}",
            date.iso_week().year(),
            date.iso_week().week()
        )
    };
    let month = |date: chrono::NaiveDate| date.format("m:%Y-%m").to_string();
    let key = |kind: &str, id: &str, bucket: &str| {
        format!("{}/{kind}/{id}/{bucket}", aggregator.tenant_id)
    };
    let (ancient_day, ancient_month) = (
        key("p", "ancient", &day(ancient)),
        key("p", "ancient", &month(ancient)),
    );
    let deadline = tokio::time::Instant::now() + scenario::live::WAIT;
    let published = loop {
        let keys = latest_keys(&kafka, &kafka.topics.kpi_updates).await;
        let recent = (0..kafka.partitions).map(|n| key("p", &format!("recent-{n}"), &day(recent)));
        if [ancient_day.clone(), ancient_month.clone()]
            .into_iter()
            .chain(recent)
            .all(|key| keys.contains_key(&key))
        {
            break keys;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partners' keys were never published: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        !published[&ancient_day],
        "a day expired when it changed is a tombstone"
    );
    assert!(
        published[&ancient_month],
        "its month is not expired: it has numbers"
    );
    // Nothing publishes from here on: the sweeps alone change the topic.
    aggregator.stop().await;

    let producer =
        mentorstream_kafka::Producer::new(&kafka, scenario::live::WAIT).expect("producer");
    // Noon UTC is 15:00 in the tenant's Moscow: the same local day.
    let noon = |day: chrono::NaiveDate| day.and_hms_opt(12, 0, 0).expect("noon").and_utc();
    let after = |date: chrono::NaiveDate, days: u64| date + chrono::Days::new(days);
    let last_of_week = |date: chrono::NaiveDate| {
        use chrono::Datelike as _;
        date + chrono::Days::new(u64::from(6 - date.weekday().num_days_from_monday()))
    };
    let last_of_month = |date: chrono::NaiveDate| {
        use chrono::Datelike as _;
        let first = date.with_day(1).expect("first");
        first + chrono::Months::new(1) - chrono::Days::new(1)
    };
    // A day expires 100 days on, a week or month once its last day is more than 400 or 1,200
    // days old. The ancient week (340 days ago) ends well before 301 days ago.
    let sweeps = [
        (after(recent, 99), vec![week(ancient)]),
        (after(recent, 100), vec![day(recent)]),
        (after(recent, 100), vec![]),
        (after(last_of_week(recent), 400), vec![]),
        (after(last_of_week(recent), 401), vec![week(recent)]),
        (after(last_of_month(ancient), 1201), vec![month(ancient)]),
        (after(last_of_month(recent), 1200), vec![]),
        (after(last_of_month(recent), 1201), vec![month(recent)]),
    ];
    for (day, buckets) in sweeps {
        let before = latest_keys(&kafka, &kafka.topics.kpi_updates).await;
        let expected: Vec<&String> = before
            .iter()
            .filter(|(key, live)| {
                **live
                    && buckets
                        .iter()
                        .any(|bucket| key.ends_with(&format!("/{bucket}")))
            })
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            expected.is_empty(),
            buckets.is_empty(),
            "on {day}: keys of {buckets:?} to expire: {before:?}"
        );
        let swept =
            mentorstream_kpi_aggregator::expire::sweep(&kafka, &tenants, &producer, noon(day))
                .await
                .expect("sweep");
        let after = latest_keys(&kafka, &kafka.topics.kpi_updates).await;
        let gone: Vec<&String> = after
            .iter()
            .filter(|(key, live)| !**live && before.get(*key) == Some(&true))
            .map(|(key, _)| key)
            .collect();
        assert_eq!(gone, expected, "tombstoned on {day}");
        assert_eq!(swept.tombstoned, expected.len() as u64, "on {day}");
        assert_eq!(after.len(), before.len(), "no new keys on {day}");
    }
    let live: Vec<String> = latest_keys(&kafka, &kafka.topics.kpi_updates)
        .await
        .into_iter()
        .filter_map(|(key, live)| live.then_some(key))
        .collect();
    assert!(!live.is_empty());
    assert!(
        live.iter().all(|key| key.ends_with("/life")),
        "only lifetime keys stay: {live:?}"
    );
}

/// Of the replicas sharing a key prefix one sweeps each round: the first to ask takes the
/// round's lease, the others skip the round; replicas of another deployment (another prefix)
/// have their own.
#[tokio::test]
async fn one_replica_of_a_deployment_sweeps_a_round() {
    let config = Config::load(None).expect("defaults");
    let connection = mentorstream_redis::connect(&config.redis).expect("connection");
    let prefix = unique("ms-test");
    let replicas = [(); 3].map(|()| Sweeper::new(connection.clone(), &prefix));
    let interval = std::time::Duration::from_secs(3600);
    let mut sweeping = Vec::new();
    for replica in &replicas {
        sweeping.push(replica.takes_round(interval).await);
    }
    assert_eq!(sweeping, [true, false, false]);
    // A failed round is given back: the next replica to ask sweeps.
    replicas[0].gives_round_back().await;
    assert!(replicas[1].takes_round(interval).await);
    assert!(!replicas[0].takes_round(interval).await);
    let other = Sweeper::new(connection.clone(), &unique("ms-test"));
    assert!(other.takes_round(interval).await);
    for lease in [&replicas[0].lease, &other.lease] {
        let _: i64 = mentorstream_redis::cmd("DEL")
            .arg(lease)
            .query_async(&mut connection.clone())
            .await
            .expect("DEL");
    }
}

/// After a restart, a partition that delivers nothing new is still known to be read to its end
/// (its group committed it there), so `as_of` passes the restart without any new record.
#[tokio::test]
async fn as_of_passes_a_restart_that_brings_no_new_records() {
    let aggregator = Aggregator::start(None).await;
    let kafka = aggregator.context.config.kafka.clone();
    let mut reader = Reader::connect(aggregator.addr, aggregator.api_key.clone()).await;
    wait_until_serving(&mut reader).await;
    // The tenant's partition of the activity topic holds records; the others are empty.
    let sentinels = produce_sentinels(&kafka, &aggregator.tenant_id).await;
    wait_for(&mut reader, &sentinels).await;

    let aggregator = aggregator.restart().await;
    let restarted = chrono::Utc::now();
    let mut reader = Reader::connect(aggregator.addr, aggregator.api_key.clone()).await;
    let deadline = tokio::time::Instant::now() + scenario::live::WAIT;
    loop {
        let as_of = reader
            .scorecard(SubjectKind::Tenant, "", window(WindowKind::Lifetime, None))
            .await
            .ok()
            .and_then(|answer| answer.as_of)
            .and_then(|at| {
                chrono::DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
            });
        if as_of.is_some_and(|as_of| as_of >= restarted) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "as_of stayed at {as_of:?}, before the restart at {restarted}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    aggregator.stop().await;
}

#[tokio::test]
async fn on_a_redis_cluster_scorecards_equal_the_rules() {
    let cluster = RedisCluster::start().await;
    scorecards_equal_the_rules(Some(&cluster)).await;
}

async fn scorecards_equal_the_rules(cluster: Option<&RedisCluster>) {
    let aggregator = Aggregator::start(cluster).await;
    let config = &aggregator.context.config;
    let mut reader = Reader::connect(aggregator.addr, aggregator.api_key.clone()).await;
    let admin = aggregator
        .context
        .tenants
        .create_key(&aggregator.tenant_id, "admin".parse().expect("scopes"))
        .await
        .expect("admin key");
    put_targets(&mut reader, &admin.api_key).await;
    // Watching the tenant before anything happens: the current (empty) numbers first, then
    // changes. Partners, groups and teams can be watched once they exist (until then they
    // are NOT_FOUND).
    let watched_subjects = [
        (SubjectKind::Partner, "c", "ann"),
        (SubjectKind::Group, "g", "g-2"),
        (SubjectKind::Team, "t", "n3"),
        (SubjectKind::Tenant, "tenant", ""),
    ];
    let tenant_only = &watched_subjects[3..];
    let watched_windows = [
        (WindowKind::Lifetime, None),
        (WindowKind::Month, Some((2026, 11, 15))),
        (WindowKind::Rolling7d, Some((2026, 12, 2))),
    ];
    let windows: Vec<_> = watched_windows
        .iter()
        .map(|(kind, anchor)| window(*kind, *anchor))
        .collect();
    let mut watching_tenant = watch(&mut reader, &[(SubjectKind::Tenant, "")], &windows).await;
    assert_watched(
        &mut watching_tenant,
        &expected_watched(
            &Events::default(),
            &Default::default(),
            tenant_only,
            &watched_windows,
        ),
    )
    .await;
    let mut events = Events::scenario().for_tenant(&aggregator.tenant_id);
    let records = events.records();
    produce(&config.kafka, &records[..10]).await;
    // A record no one can decode: it goes to the dead letters and changes nothing.
    produce_poison(&config.kafka, &events.activity[10]).await;
    produce(&config.kafka, &records[10..]).await;
    let sentinels = produce_sentinels(&config.kafka, &aggregator.tenant_id).await;
    events.extend(sentinels.clone());
    wait_for(&mut reader, &sentinels).await;
    let mut watching = watch(
        &mut reader,
        &watched_subjects
            .iter()
            .map(|(kind, _, id)| (*kind, *id))
            .collect::<Vec<_>>(),
        &windows,
    )
    .await;
    assert_scorecards(&mut reader, &events).await;
    let expected = events.expected();
    assert_series(&mut reader, &expected).await;
    assert_leaderboards(&mut reader, &expected).await;
    assert_signals(
        &config.kafka,
        &expected_signals(&events.activity),
        &expected_crossings(&aggregator.tenant_id, &expected),
        &expected_goals(&events)
            .into_iter()
            .filter(|(_, goal)| goal.progress >= goal.target)
            .map(|(goal_id, goal)| {
                signal_id(
                    &aggregator.tenant_id,
                    &goal.mentee,
                    "goal_achieved",
                    &goal_id,
                )
            })
            .collect(),
    )
    .await;
    assert_target_progress(&mut reader, &expected).await;
    assert_watched(
        &mut watching,
        &expected_watched(&events, &expected, &watched_subjects, &watched_windows),
    )
    .await;
    assert_watched(
        &mut watching_tenant,
        &expected_watched(&events, &expected, tenant_only, &watched_windows),
    )
    .await;
    let tenant_id = &aggregator.tenant_id;
    let mut updates = std::collections::BTreeMap::new();
    for (key, oracle_kind, id, bucket) in [
        (format!("{tenant_id}/p/ann/life"), "c", "ann", "life"),
        (
            format!("{tenant_id}/p/ann/m:2026-11"),
            "c",
            "ann",
            "m:2026-11",
        ),
        (
            format!("{tenant_id}/t/root/w:2026-W49"),
            "t",
            "root",
            "w:2026-W49",
        ),
        (
            format!("{tenant_id}/n//d:2026-11-30"),
            "tenant",
            "",
            "d:2026-11-30",
        ),
        (format!("{tenant_id}/g/g-2/life"), "g", "g-2", "life"),
    ] {
        let kind = match oracle_kind {
            "c" => SubjectKind::Partner,
            "t" => SubjectKind::Team,
            "g" => SubjectKind::Group,
            _ => SubjectKind::Tenant,
        };
        updates.insert(
            key,
            expected_numbers(
                &events,
                &expected,
                kind,
                oracle_kind,
                id,
                &[bucket.to_owned()],
            ),
        );
    }
    assert_updates_topic(&config.kafka, &updates).await;
    assert_journeys(&mut reader, &events).await;
    assert_explained(&mut reader, &events).await;
    assert_team_and_group_leaderboards(&mut reader, &events).await;

    // Rebuild: the same numbers from the topics in a fresh generation. The old generation is
    // then deleted (as by a Redis that lost data), so the answers can only come from the new
    // one, and what arrives afterwards is counted there.
    let reported = std::sync::Mutex::new(Vec::new());
    let rebuilt = mentorstream_kpi_aggregator::rebuild::rebuild(
        config,
        &aggregator.context.tenants,
        tokio_util::sync::CancellationToken::new(),
        &|replayed| reported.lock().expect("not poisoned").push(replayed),
    )
    .await
    .expect("rebuilt");
    let reported = reported.into_inner().expect("not poisoned");
    assert!(
        reported
            .windows(2)
            .all(|pair| pair[0].applied <= pair[1].applied),
        "progress only advances: {reported:?}"
    );
    assert_eq!(
        reported.last().copied(),
        Some(mentorstream_kpi_aggregator::rebuild::Replayed {
            applied: rebuilt.records,
            records: rebuilt.records
        })
    );
    assert_eq!(rebuilt.previous, "kpi");
    assert_ne!(rebuilt.generation, rebuilt.previous);
    let produced = i64::try_from(records.len() + 1 + 2 * sentinels.activity.len()).expect("small");
    assert_eq!(
        rebuilt.records, produced,
        "every record, the poison one included"
    );
    delete_generation(&config.redis, &rebuilt.previous).await;
    wait_for_tenant_totals(&mut reader, &expected).await;
    let later = produce_named_sentinels(&config.kafka, &aggregator.tenant_id, "later").await;
    events.extend(later.clone());
    wait_for(&mut reader, &later).await;
    assert_scorecards(&mut reader, &events).await;
    let expected = events.expected();
    assert_series(&mut reader, &expected).await;
    assert_leaderboards(&mut reader, &expected).await;
    assert_journeys(&mut reader, &events).await;

    let refused = reader
        .scorecard(SubjectKind::Partner, "", window(WindowKind::Lifetime, None))
        .await
        .expect_err("no partner id");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "subject.id: is required for partner, group and team subjects"
    );
    aggregator.stop().await;
}
