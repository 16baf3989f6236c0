//! `mentorstream-bench rebuild`: `mentorstream kpi rebuild` over a large history (issue 16:
//! 1M partners and 10M activity events in ≤ 10 minutes). The workload of the aggregator bench
//! is produced to topics of its own, then the release `mentorstream` binary replays it into a
//! fresh generation, as an operator would after a Redis loss, and is timed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use mentorstream_config::{Config, ExposeSecret};
use mentorstream_kafka::Producer;
use serde::Serialize;

use crate::aggregator::{Cpu, create_topics, delete_keys, produce};

pub const TARGET_SECONDS: f64 = 600.0;

#[derive(Debug, Serialize)]
pub struct RebuildReport {
    pub partners: usize,
    pub records: usize,
    pub produce_seconds: f64,
    /// From starting `mentorstream kpi rebuild` until it exited, activated.
    pub rebuild_seconds: f64,
    pub records_per_second: f64,
    /// Redis's CPU over the rebuild (the replaying process's is not sampled: it is a child
    /// that has exited).
    pub redis_cpu_seconds: f64,
    pub broker_cpu_seconds: Option<f64>,
}

pub async fn run(
    binary: &std::path::Path,
    partners: usize,
    activity: usize,
    seed: u64,
) -> anyhow::Result<RebuildReport> {
    let mut config = Config::load(None)?;
    let suffix = mentorstream_testkit::unique("bench-rebuild");
    let topics = &mut config.kafka.topics;
    topics.activity = format!("{suffix}.activity");
    topics.mentorship = format!("{suffix}.mentorship");
    topics.kpi_updates = format!("{suffix}.updates");
    topics.kpi_signals = format!("{suffix}.signals");
    config.redis.key_prefix = suffix.clone();
    let (control, _, tenant) = crate::bench_tenant(&config, "bench_rebuild").await?;
    let topics = &config.kafka.topics;
    create_topics(&config).await?;
    let produced = Instant::now();
    let workload =
        crate::workload::generate(&tenant.tenant_id, partners, activity, seed, Utc::now());
    let records = workload.records();
    let producer = Producer::new(&config.kafka, Duration::from_secs(120))?;
    let mut ends = std::collections::HashMap::new();
    let activity_records = workload.genealogy.iter().chain(&workload.activity);
    produce(
        &producer,
        topics,
        activity_records,
        &workload.mentorship,
        &mut ends,
    )
    .await?;
    drop(workload);
    let produce_seconds = produced.elapsed().as_secs_f64();

    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!(
            "[kafka.topics]\nactivity = \"{}\"\nmentorship = \"{}\"\n\
             kpi_updates = \"{}\"\nkpi_signals = \"{}\"\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"{suffix}\"\n[postgres]\nurl = \"{control}\"\n\
             [telemetry]\nlog_filter = \"warn\"\n",
            topics.activity,
            topics.mentorship,
            topics.kpi_updates,
            topics.kpi_signals,
            config.redis.url.expose_secret(),
        ),
    )?;
    let redis = mentorstream_redis::connect(&config.redis)?;
    let before = Cpu::sample(&redis).await?;
    let started = Instant::now();
    let status = std::process::Command::new(binary)
        .arg("--config")
        .arg(file.path())
        .args(["kpi", "rebuild"])
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    anyhow::ensure!(
        status.success(),
        "mentorstream kpi rebuild failed: {status}"
    );
    let rebuild_seconds = started.elapsed().as_secs_f64();
    let cpu = Cpu::sample(&redis).await?.since(before);
    delete_keys(&redis, &suffix).await?;
    #[allow(clippy::cast_precision_loss)]
    let records_per_second = records as f64 / rebuild_seconds;
    Ok(RebuildReport {
        partners,
        records,
        produce_seconds,
        rebuild_seconds,
        records_per_second,
        redis_cpu_seconds: cpu.redis,
        broker_cpu_seconds: cpu.broker,
    })
}
