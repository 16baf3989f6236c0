//! `mentorstream-bench aggregator`: the KPI engine over a pre-produced workload
//! ([`crate::workload`]), in this process, with every CPU it costs counted (issue 16).
//!
//! Each run reads both topics from the start into a fresh key prefix with a fresh consumer
//! group. The genealogy phase ends when every enrolment of the genealogy is applied; then the
//! mentorship topic is read too, and the activity phase ends when everything is applied. CPU is
//! this process's (`/proc/self/stat`: production is over before the clock starts), Redis's
//! (`INFO cpu`, its forks for AOF rewrites included) and the broker's (the `kafka.Kafka` JVM,
//! reported apart). After each run a sample of subjects is compared with the independent
//! oracle of `mentorstream-sim`, and the run's keys are deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use mentorstream_config::Config;
use mentorstream_kafka::admin::{TopicSpec, ensure_topics};
use mentorstream_kafka::{CloudEvent, Consumer, DeadLetters, OutboundRecord, Producer};
use mentorstream_kpi_aggregator::consume::{self, Aggregator, AppliedOffsets};
use mentorstream_kpi_aggregator::engine::Engine;
use mentorstream_kpi_aggregator::progress::Progress;
use mentorstream_kpi_aggregator::store::{Store, Subject};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::mentorship::v1::MentorshipEvent;
use mentorstream_proto::mentorship::v1::mentorship_event::Payload as Mentorship;
use mentorstream_redis::{Connection, KeySpace, cmd};
use mentorstream_sim::oracle::{self, Key};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::workload::{self, Workload};

/// docs/spec.md §11 and issue 16.
pub const TARGET_EVENTS_PER_CPU_SECOND: f64 = 100_000.0;
pub const TARGET_WALL_EVENTS_PER_SECOND: f64 = 40_000.0;

/// Subjects of each kind compared with the oracle after each run.
const SAMPLE_PARTNERS: usize = 1_000;
const SAMPLE_TEAMS: usize = 200;
const SAMPLE_GROUPS: usize = 100;

/// (topic, partition) → the last offset produced.
pub type Ends = HashMap<(String, i32), i64>;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cpu {
    pub aggregator: f64,
    /// Redis, its forks included.
    pub redis: f64,
    /// Of which its forks (AOF rewrites).
    pub redis_forks: f64,
    /// `None` when no `kafka.Kafka` process of this machine can be read.
    pub broker: Option<f64>,
}

impl Cpu {
    pub async fn sample(redis: &Connection) -> anyhow::Result<Self> {
        let (redis, redis_forks) = redis_cpu_parts(redis).await?;
        Ok(Self {
            aggregator: crate::process_cpu()?,
            redis: redis + redis_forks,
            redis_forks,
            broker: broker_pid().and_then(|pid| crate::cpu_of(&pid).ok()),
        })
    }

    pub fn since(self, earlier: Self) -> Self {
        Self {
            aggregator: self.aggregator - earlier.aggregator,
            redis: self.redis - earlier.redis,
            redis_forks: self.redis_forks - earlier.redis_forks,
            broker: self
                .broker
                .zip(earlier.broker)
                .map(|(now, then)| now - then),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            aggregator: self.aggregator + other.aggregator,
            redis: self.redis + other.redis,
            redis_forks: self.redis_forks + other.redis_forks,
            broker: self.broker.zip(other.broker).map(|(one, two)| one + two),
        }
    }

    /// Aggregator and Redis: the cost of the work (the broker's is reported apart).
    pub fn total(&self) -> f64 {
        self.aggregator + self.redis
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub records: usize,
    pub wall_seconds: f64,
    pub cpu: Cpu,
    pub events_per_total_cpu_second: f64,
    pub events_per_wall_second: f64,
}

impl Phase {
    fn new(records: usize, wall: Duration, cpu: Cpu) -> Self {
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let records_f = records as f64;
        Self {
            records,
            wall_seconds: wall.as_secs_f64(),
            cpu,
            events_per_total_cpu_second: records_f / cpu.total(),
            events_per_wall_second: records_f / wall.as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub genealogy: Phase,
    pub activity: Phase,
    pub whole: Phase,
    /// Redis commands per record, from `INFO commandstats` (commands inside scripts counted).
    pub redis_commands_per_event: f64,
    pub redis_commands: BTreeMap<String, u64>,
    /// Growth of Redis's `used_memory` over the run.
    pub redis_memory_bytes: i64,
    pub redis_bytes_per_partner: f64,
    pub redis_bytes_per_event: f64,
    /// Subjects compared with the oracle, every bucket and counter of each.
    pub subjects_checked: usize,
    pub values_checked: usize,
    /// The run's activity topic (for the peers).
    #[serde(skip)]
    pub topic: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub partners: usize,
    pub records: usize,
    pub mentorship_records: usize,
    pub genealogy_max_depth: usize,
    pub genealogy_mean_depth: f64,
    pub runs: Vec<Run>,
    pub median_events_per_total_cpu_second: f64,
    pub min_events_per_total_cpu_second: f64,
    pub max_events_per_total_cpu_second: f64,
    pub median_events_per_wall_second: f64,
    pub min_events_per_wall_second: f64,
    pub max_events_per_wall_second: f64,
    /// The last run's activity topic and the records on it, for the peers.
    pub topic: String,
    pub activity_records: usize,
    pub recruits: usize,
}

/// The workload, produced once, run `runs` times.
pub async fn run(
    partners: usize,
    activity: usize,
    seed: u64,
    runs: usize,
) -> anyhow::Result<Report> {
    let mut config = Config::load(None)?;
    let suffix = mentorstream_testkit::unique("bench");
    config.kafka.topics.activity = format!("{suffix}.activity");
    config.kafka.topics.mentorship = format!("{suffix}.mentorship");
    let (_, tenants, tenant) = crate::bench_tenant(&config, "bench").await?;
    let workload = workload::generate(&tenant.tenant_id, partners, activity, seed, Utc::now());
    let bench = Bench {
        config,
        tenants,
        tenant_id: tenant.tenant_id,
        workload,
        expected: std::sync::OnceLock::new(),
    };
    let mut all = Vec::with_capacity(runs);
    for number in 1..=runs {
        let run = bench.once().await?;
        print_run(number, &run);
        all.push(run);
    }
    Ok(bench.report(all))
}

struct Bench {
    config: Config,
    tenants: mentorstream_tenancy::Tenants,
    tenant_id: String,
    workload: Workload,
    /// The oracle's numbers, computed when the first run is checked (it takes minutes).
    expected: std::sync::OnceLock<BTreeMap<Key, i64>>,
}

impl Bench {
    async fn once(&self) -> anyhow::Result<Run> {
        let prefix = mentorstream_testkit::unique("bench");
        let mut config = self.config.clone();
        config.redis.key_prefix = prefix.clone();
        config.kafka.topics.activity = format!("{prefix}.activity");
        config.kafka.topics.mentorship = format!("{prefix}.mentorship");
        let topics = &config.kafka.topics;
        create_topics(&config).await?;
        let producer = Producer::new(&config.kafka, Duration::from_secs(60))?;
        let connection = mentorstream_redis::connect(&config.redis)?;
        let keys = KeySpace::new(&prefix, "kpi");
        let aggregator = aggregator(&config, &connection, &keys, self.tenants.clone())?;
        let group = format!("{prefix}-kpi");
        let partitions: Vec<i32> = (0..config.kafka.partitions).collect();
        let eof = [("enable.partition.eof", "true")];
        let activity =
            Consumer::assigned(&config.kafka, &group, &topics.activity, &partitions, &eof)?;
        let mentorship =
            Consumer::assigned(&config.kafka, &group, &topics.mentorship, &partitions, &eof)?;
        let memory_before = redis_memory(&connection).await?;
        let commands_before = redis_commands(&connection).await?;
        // The genealogy alone, then everything else: produced while nothing is measured.
        let mut ends = Ends::new();
        let genealogy = self.workload.genealogy.iter();
        produce(&producer, topics, genealogy, &[], &mut ends).await?;
        let genealogy = phase(&aggregator, &[&activity], &ends, &connection).await?;
        let (activity_records, mentorship_records) =
            (&self.workload.activity, &self.workload.mentorship);
        produce(
            &producer,
            topics,
            activity_records.iter(),
            mentorship_records,
            &mut ends,
        )
        .await?;
        let activity = phase(&aggregator, &[&activity, &mentorship], &ends, &connection).await?;
        let memory = redis_memory(&connection).await? - memory_before;
        let commands = difference(&redis_commands(&connection).await?, &commands_before);
        let store = Store::new(connection.clone(), keys);
        let (subjects_checked, values_checked) = self.check(&store).await?;
        delete_keys(&connection, &prefix).await?;
        let records = self.workload.records();
        #[allow(clippy::cast_precision_loss)]
        let per = |value: f64, count: usize| value / count as f64;
        #[allow(clippy::cast_precision_loss)]
        let total_commands = commands.values().sum::<u64>() as f64;
        #[allow(clippy::cast_precision_loss)]
        let memory_f = memory as f64;
        let genealogy = Phase::new(self.workload.genealogy.len(), genealogy.0, genealogy.1);
        let activity = Phase::new(records - genealogy.records, activity.0, activity.1);
        let whole = Phase::new(
            records,
            Duration::from_secs_f64(genealogy.wall_seconds + activity.wall_seconds),
            genealogy.cpu.plus(activity.cpu),
        );
        Ok(Run {
            topic: config.kafka.topics.activity.clone(),
            genealogy,
            activity,
            whole,
            redis_commands_per_event: per(total_commands, records),
            redis_commands: commands,
            redis_memory_bytes: memory,
            redis_bytes_per_partner: per(memory_f, self.workload.depths.len()),
            redis_bytes_per_event: per(memory_f, records),
            subjects_checked,
            values_checked,
        })
    }

    /// Compares a seeded sample of partners, teams and groups, and the tenant, with the
    /// oracle: every bucket and counter of each. Answers (subjects, values) compared.
    async fn check(&self, store: &Store) -> anyhow::Result<(usize, usize)> {
        let subjects = self.sample();
        let mut values = 0;
        for (kind, id) in &subjects {
            let subject = match *kind {
                "c" => Subject::Partner(id),
                "t" => Subject::Team(id),
                "g" => Subject::Group(id),
                _ => Subject::Tenant,
            };
            let counters = store.subject_counters(&self.tenant_id, subject).await?;
            let mut stored = BTreeMap::new();
            for (bucket, counts) in counters.buckets() {
                for (counter, value) in counts.iter().filter(|(_, value)| *value != 0) {
                    stored.insert((bucket.to_string(), counter.field().to_owned()), value);
                }
            }
            let expected = self.expected_of(kind, id);
            anyhow::ensure!(
                stored == expected,
                "{kind} {id}: stored {stored:?}, the oracle says {expected:?}"
            );
            values += expected.len();
        }
        Ok((subjects.len(), values))
    }

    /// The subjects checked after each run, in the oracle's kinds: the same seeded choice of
    /// partners, teams and groups every run, and the tenant.
    fn sample(&self) -> Vec<(&'static str, String)> {
        let mut rng = StdRng::seed_from_u64(7);
        let partners: Vec<String> = (0..self.workload.depths.len())
            .map(|p| format!("p{p}"))
            .collect();
        let groups: Vec<String> = self
            .workload
            .mentorship
            .iter()
            .filter_map(|event| match &event.payload {
                Some(Mentorship::GroupCreated(created)) => Some(created.group_id.clone()),
                _ => None,
            })
            .collect();
        let mut sample = |kind: &'static str, ids: &[String], count: usize| {
            ids.choose_multiple(&mut rng, count)
                .map(|id| (kind, id.clone()))
                .collect::<Vec<_>>()
        };
        let mut chosen = sample("c", &partners, SAMPLE_PARTNERS);
        chosen.extend(sample("t", &partners, SAMPLE_TEAMS));
        chosen.extend(sample("g", &groups, SAMPLE_GROUPS));
        chosen.push(("tenant", String::new()));
        chosen
    }

    /// The oracle's numbers of one subject: (bucket, counter field) → value.
    fn expected_of(&self, kind: &str, id: &str) -> BTreeMap<(String, String), i64> {
        let from = (kind.to_owned(), id.to_owned(), String::new(), String::new());
        self.expected()
            .range(from..)
            .take_while(|((k, subject, _, _), _)| k == kind && subject == id)
            .map(|((_, _, bucket, field), value)| ((bucket.clone(), field.clone()), *value))
            .collect()
    }

    fn expected(&self) -> &BTreeMap<Key, i64> {
        self.expected.get_or_init(|| {
            oracle::expected(
                &self.workload.all_activity(),
                &self.workload.mentorship,
                chrono_tz::Europe::Moscow,
            )
        })
    }

    fn report(&self, runs: Vec<Run>) -> Report {
        let spread = |value: fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(value).collect();
            values.sort_by(f64::total_cmp);
            (
                values.get(values.len() / 2).copied().unwrap_or_default(),
                values.first().copied().unwrap_or_default(),
                values.last().copied().unwrap_or_default(),
            )
        };
        let (cpu_median, cpu_min, cpu_max) = spread(|run| run.whole.events_per_total_cpu_second);
        let (wall_median, wall_min, wall_max) = spread(|run| run.whole.events_per_wall_second);
        let topic = runs.last().map(|run| run.topic.clone()).unwrap_or_default();
        let depths = &self.workload.depths;
        #[allow(clippy::cast_precision_loss)]
        let mean_depth = depths.iter().sum::<usize>() as f64 / depths.len().max(1) as f64;
        Report {
            partners: depths.len(),
            records: self.workload.records(),
            mentorship_records: self.workload.mentorship.len(),
            genealogy_max_depth: depths.iter().copied().max().unwrap_or(0),
            genealogy_mean_depth: mean_depth,
            runs,
            median_events_per_total_cpu_second: cpu_median,
            min_events_per_total_cpu_second: cpu_min,
            max_events_per_total_cpu_second: cpu_max,
            median_events_per_wall_second: wall_median,
            min_events_per_wall_second: wall_min,
            max_events_per_wall_second: wall_max,
            topic,
            activity_records: self.workload.genealogy.len() + self.workload.activity.len(),
            recruits: depths.len().saturating_sub(1),
        }
    }
}

fn aggregator(
    config: &Config,
    connection: &Connection,
    keys: &KeySpace,
    tenants: mentorstream_tenancy::Tenants,
) -> anyhow::Result<Aggregator> {
    let topics = &config.kafka.topics;
    Ok(Aggregator {
        activity_topic: topics.activity.clone(),
        engine: Arc::new(tokio::sync::Mutex::new(Engine::new(
            connection.clone(),
            keys.clone(),
        ))),
        tenants,
        dead_letters: DeadLetters::new(Producer::new(&config.kafka, Duration::from_secs(60))?),
        progress: Progress::new(
            connection.clone(),
            keys.key(&["progress"]),
            vec![topics.activity.clone(), topics.mentorship.clone()],
            config.kafka.partitions,
        ),
        applied: AppliedOffsets::default(),
    })
}

/// Reads `consumers` until every partition is applied up to `ends`: the wall time and CPU
/// that took.
async fn phase(
    aggregator: &Aggregator,
    consumers: &[&Consumer],
    ends: &Ends,
    redis: &Connection,
) -> anyhow::Result<(Duration, Cpu)> {
    let started = Cpu::sample(redis).await?;
    let clock = Instant::now();
    let shutdown = CancellationToken::new();
    let consuming = futures::future::try_join_all(
        consumers
            .iter()
            .map(|consumer| consume::run(consumer, aggregator, shutdown.clone())),
    );
    let watching = async {
        caught_up(&aggregator.applied, ends).await;
        let measured = (clock.elapsed(), Cpu::sample(redis).await?.since(started));
        shutdown.cancel();
        anyhow::Ok(measured)
    };
    let (consumed, measured) = tokio::join!(consuming, watching);
    consumed?;
    measured
}

/// Creates the workload's activity and mentorship topics.
pub async fn create_topics(config: &Config) -> anyhow::Result<()> {
    let topics = &config.kafka.topics;
    let specs = [
        TopicSpec::new(&topics.activity),
        TopicSpec::new(&topics.mentorship),
    ];
    Ok(ensure_topics(&config.kafka, &specs).await?)
}

/// Produces `activity` to the activity topic, then `mentorship` to theirs, and moves `ends`
/// to the last offsets written.
pub async fn produce<'a>(
    producer: &Producer,
    topics: &mentorstream_config::Topics,
    activity: impl Iterator<Item = &'a ActivityEvent>,
    mentorship: &[MentorshipEvent],
    ends: &mut Ends,
) -> anyhow::Result<()> {
    let activity = activity.map(|event| crate::record(&topics.activity, event));
    send(producer, activity, ends).await?;
    let mentorship = mentorship
        .iter()
        .map(|event| mentorship_record(&topics.mentorship, event));
    send(producer, mentorship, ends).await
}

async fn send(
    producer: &Producer,
    records: impl Iterator<Item = OutboundRecord>,
    ends: &mut Ends,
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for record in records {
        pending.push((record.topic.clone(), producer.enqueue(&record).await?));
    }
    for (topic, delivery) in pending {
        let delivery = delivery.await?;
        let end = ends
            .entry((topic, delivery.partition))
            .or_insert(delivery.offset);
        *end = (*end).max(delivery.offset);
    }
    Ok(())
}

fn mentorship_record(topic: &str, event: &MentorshipEvent) -> OutboundRecord {
    OutboundRecord::protobuf(
        topic,
        event.tenant_id.clone(),
        event,
        CloudEvent {
            id: event.event_id.clone(),
            event_type: "mentorstream.mentorship.v1.MentorshipEvent".into(),
            source: "/bench".into(),
            time: Utc::now(),
        },
    )
}

/// Waits until every partition is applied up to its end.
async fn caught_up(applied: &AppliedOffsets, ends: &Ends) {
    while !ends.iter().all(|((topic, partition), end)| {
        applied.get(topic, *partition).is_some_and(|at| at >= *end)
    }) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pid of this machine's `kafka.Kafka` JVM, if one runs.
fn broker_pid() -> Option<String> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            (name.bytes().all(|byte| byte.is_ascii_digit())
                && cmdline
                    .split(|byte| *byte == 0)
                    .any(|word| word == b"kafka.Kafka"))
            .then_some(name)
        })
}

async fn info(connection: &Connection, section: &str) -> anyhow::Result<String> {
    Ok(cmd("INFO")
        .arg(section)
        .query_async(&mut connection.clone())
        .await?)
}

/// `name:value` lines of an INFO section.
fn field(info: &str, name: &str) -> Option<f64> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
}

/// CPU seconds Redis has used so far, its forks (AOF rewrites) included.
pub async fn redis_cpu(connection: &Connection) -> anyhow::Result<f64> {
    let (main, forks) = redis_cpu_parts(connection).await?;
    Ok(main + forks)
}

/// CPU seconds of Redis itself and of its forks so far.
async fn redis_cpu_parts(connection: &Connection) -> anyhow::Result<(f64, f64)> {
    let info = info(connection, "cpu").await?;
    let sum = |names: [&str; 2]| names.iter().filter_map(|name| field(&info, name)).sum();
    Ok((
        sum(["used_cpu_user", "used_cpu_sys"]),
        sum(["used_cpu_user_children", "used_cpu_sys_children"]),
    ))
}

async fn redis_memory(connection: &Connection) -> anyhow::Result<i64> {
    let info = info(connection, "memory").await?;
    #[allow(clippy::cast_possible_truncation)]
    field(&info, "used_memory")
        .map(|bytes| bytes as i64)
        .context("INFO memory has no used_memory")
}

/// Calls per command so far (`cmdstat_hset:calls=12,...` → hset: 12).
async fn redis_commands(connection: &Connection) -> anyhow::Result<BTreeMap<String, u64>> {
    let info = info(connection, "commandstats").await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|stat| stat.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect())
}

/// Calls made between two `INFO commandstats`, the bench's own INFO calls left out.
fn difference(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(name, calls)| *calls > 0 && name != "info")
        .collect()
}

/// Deletes every key of a run's prefix, so the next run's AOF rewrites do not carry it.
pub async fn delete_keys(connection: &Connection, prefix: &str) -> anyhow::Result<()> {
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("*{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut connection.clone())
            .await?;
        if !keys.is_empty() {
            let _: i64 = cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection.clone())
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[allow(clippy::cast_precision_loss)] // memory far below 2^52 bytes
fn print_run(number: usize, run: &Run) {
    for (name, phase) in [
        ("genealogy", &run.genealogy),
        ("activity", &run.activity),
        ("whole", &run.whole),
    ] {
        let broker = phase.cpu.broker.map_or_else(
            || "not measured".to_owned(),
            |cpu| format!("{cpu:.2} CPU-s"),
        );
        println!(
            "  run {number} {name:<9} {:>7} records: {:>7.0} per total CPU-s (aggregator {:.2} + Redis {:.2} CPU-s, {:.2} of it AOF rewrites), {:>6.0} per wall s ({:.2} s); broker {broker}",
            phase.records,
            phase.events_per_total_cpu_second,
            phase.cpu.aggregator,
            phase.cpu.redis,
            phase.cpu.redis_forks,
            phase.events_per_wall_second,
            phase.wall_seconds,
        );
    }
    let top: Vec<String> = {
        let mut commands: Vec<(&String, &u64)> = run.redis_commands.iter().collect();
        commands.sort_by(|a, b| b.1.cmp(a.1));
        commands
            .iter()
            .take(5)
            .map(|(name, calls)| format!("{name} {calls}"))
            .collect()
    };
    println!(
        "  run {number} Redis: {:.2} commands per record ({}); memory {:.1} MiB: {:.0} bytes per partner, {:.0} per record; checked {} subjects, {} values, against the oracle: equal",
        run.redis_commands_per_event,
        top.join(", "),
        run.redis_memory_bytes as f64 / (1024.0 * 1024.0),
        run.redis_bytes_per_partner,
        run.redis_bytes_per_event,
        run.subjects_checked,
        run.values_checked,
    );
}

/// One target line: what, measured, target, met or missed.
pub fn verdict(what: &str, measured: &str, target: &str, met: bool) {
    let verdict = if met { "met" } else { "MISSED" };
    println!("  target {what}: {measured} (target {target}): {verdict}");
}
