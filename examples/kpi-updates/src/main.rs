//! A subscriber of `mentorstream.kpi.updates.v1`, as an application outside Mentorstream would
//! write one (docs/kpi-topic.md): it reads the topic from the start with a consumer group of
//! its own, decodes each `KpiUpdate`, keeps the latest record per key, and once the topic has
//! been quiet for `--idle-ms` after its last record prints one line per key:
//!
//! `{key} as_of={unix seconds} METRIC_…={value} …` (counts as integers, decimals as written,
//! fractions as `numerator/denominator=value`, `null` when nothing is divided).
//!
//! `examples/python/kpi_updates.py` prints the same lines; `make test` runs both.

// Printing is what it is for.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use mentorstream_proto::kpi::v1::{KpiUpdate, Metric, metric_value};
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "mentorstream.kpi.updates.v1")]
    topic: String,
    /// A consumer group of this subscriber's own.
    #[arg(long)]
    group: String,
    /// Stop once no record came for this long after the last one.
    #[arg(long, default_value_t = 3000)]
    idle_ms: u64,
    /// Stop if no record at all came for this long.
    #[arg(long, default_value_t = 60_000)]
    wait_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribe")?;
    let (idle, wait) = (
        Duration::from_millis(args.idle_ms),
        Duration::from_millis(args.wait_ms),
    );
    let mut latest: BTreeMap<String, KpiUpdate> = BTreeMap::new();
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    while last_record.map_or(started.elapsed() < wait, |last| last.elapsed() < idle) {
        let Some(received) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = received.context("consume")?;
        last_record = Some(Instant::now());
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        match message.payload() {
            // A tombstone: the key is gone.
            None => {
                latest.remove(&key);
            }
            Some(payload) => {
                let update = KpiUpdate::decode(payload).with_context(|| format!("record {key}"))?;
                latest.insert(key, update);
            }
        }
    }
    for (key, update) in &latest {
        println!("{}", line(key, update));
    }
    Ok(())
}

/// One key's numbers as one line.
fn line(key: &str, update: &KpiUpdate) -> String {
    let mut values: Vec<_> = update.values.iter().collect();
    values.sort_by_key(|value| value.metric);
    let mut line = format!(
        "{key} as_of={}",
        update.as_of.as_ref().map_or(0, |as_of| as_of.seconds)
    );
    for value in values {
        let name =
            Metric::try_from(value.metric).map_or("METRIC_UNKNOWN", |metric| metric.as_str_name());
        let shown = match &value.value {
            Some(metric_value::Value::Count(count)) => count.to_string(),
            Some(metric_value::Value::Decimal(decimal)) => decimal.value.clone(),
            Some(metric_value::Value::Fraction(fraction)) => format!(
                "{}/{}={}",
                fraction.numerator,
                fraction.denominator,
                fraction
                    .value
                    .as_ref()
                    .map_or("null", |decimal| decimal.value.as_str())
            ),
            _ => "?".to_owned(),
        };
        line.push_str(&format!(" {name}={shown}"));
    }
    line
}
