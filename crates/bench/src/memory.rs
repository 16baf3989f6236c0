//! `mentorstream-bench memory`: the aggregator binary as its own process over a pre-produced
//! genealogy of N partners (one enrolment each, each sponsored by a uniformly chosen earlier
//! one); its peak resident set size (VmHWM) once every enrolment is applied.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use mentorstream_config::Config;
use mentorstream_kafka::Producer;
use mentorstream_kafka::admin::{TopicSpec, ensure_topics};
use mentorstream_kpi_aggregator::store::Store;
use mentorstream_redis::KeySpace;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub partners: usize,
    pub genealogy_max_depth: usize,
    pub wall_seconds: f64,
    pub aggregator_peak_rss_mib: f64,
}

/// Peak resident set size of process `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/<pid>/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

pub async fn run(
    binary: &std::path::Path,
    partners: usize,
    seed: u64,
) -> anyhow::Result<MemoryReport> {
    let mut config = Config::load(None)?;
    // About 8 GB of KPI state: a Redis of the bench's own, without persistence, keeps it out
    // of the shared one (whose AOF rewrite would fork it).
    let redis = mentorstream_testkit::PrivateRedis::start().await;
    config.redis.url = redis.url().into();
    let suffix = mentorstream_testkit::unique("bench-memory");
    config.kafka.topics.activity = format!("{suffix}.activity");
    config.redis.key_prefix = suffix.clone();
    let (control, _, tenant) = super::bench_tenant(&config, "bench_memory").await?;
    let topic = config.kafka.topics.activity.clone();
    ensure_topics(&config.kafka, &[TopicSpec::new(&topic)]).await?;
    let workload =
        crate::workload::generate(&tenant.tenant_id, partners, 0, seed, chrono::Utc::now());
    let (events, depths) = (workload.genealogy, workload.depths);
    let producer = Producer::new(&config.kafka, Duration::from_secs(60))?;
    let mut pending = Vec::with_capacity(events.len());
    for event in &events {
        pending.push(producer.enqueue(&super::record(&topic, event)).await?);
    }
    for delivery in pending {
        delivery.await?;
    }
    drop(events);
    let sentinels = super::sentinels(&producer, &config, &topic, &tenant.tenant_id).await?;

    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!(
            "[kafka.topics]\nactivity = \"{topic}\"\nmentorship = \"{suffix}.mentorship\"\n\
             kpi_updates = \"{suffix}.updates\"\nkpi_signals = \"{suffix}.signals\"\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{suffix}\"\n[postgres]\nurl = \"{control}\"\n\
             [telemetry]\nlog_filter = \"warn\"\n",
            redis.url()
        ),
    )?;
    let started = Instant::now();
    let (process, _) = mentorstream_testkit::ServiceProcess::start(
        &binary.to_string_lossy(),
        file.path(),
        "KPI",
        &[],
    );
    // The service's generation is "kpi" until a rebuild.
    let connection = mentorstream_redis::connect(&config.redis)?;
    let store = Store::new(connection, KeySpace::new(&suffix, "kpi"));
    super::applied(
        &store,
        &tenant.tenant_id,
        &sentinels,
        Duration::from_millis(200),
    )
    .await?;
    let report = MemoryReport {
        partners,
        genealogy_max_depth: depths.iter().copied().max().unwrap_or(0),
        wall_seconds: started.elapsed().as_secs_f64(),
        aggregator_peak_rss_mib: peak_rss_mib(process.id())?,
    };
    drop(process);
    drop(redis);
    Ok(report)
}
