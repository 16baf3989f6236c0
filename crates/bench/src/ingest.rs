//! `mentorstream-bench ingest`: the ingest binary as its own process on the local stack (a
//! fresh topic, key prefix and control database), measured from outside: its CPU time from
//! /proc while this process sends, batched, then streamed, then unary calls at a fixed rate.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use mentorstream_config::{Config, ExposeSecret as _};
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, activity_event::Payload};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::{EventStatus, IngestRequest, IngestStreamRequest};
use serde::Serialize;
use tonic::transport::Channel;

const BATCH: usize = 1000;
const IN_FLIGHT: usize = 4;
const UNARY_SECONDS: u32 = 10;

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub events: usize,
    pub batched_cpu_seconds: f64,
    pub batched_wall_seconds: f64,
    pub batched_events_per_cpu_second: f64,
    pub streaming_cpu_seconds: f64,
    pub streaming_wall_seconds: f64,
    pub streaming_events_per_cpu_second: f64,
    pub unary_rate: u32,
    pub unary_calls: usize,
    pub unary_p50_ms: f64,
    pub unary_p99_ms: f64,
}

/// An order of one of 10,000 partners, `n` making its source id unique in the run.
fn order(run: &str, n: usize) -> ActivityEvent {
    ActivityEvent {
        tenant_id: String::new(),
        source: "shop".into(),
        source_event_id: format!("{run}-{n}"),
        occurred_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 60,
            nanos: 0,
        }),
        partner_id: format!("p{}", n % 10_000),
        accepted_at: None,
        payload: Some(Payload::OrderPlaced(OrderPlaced {
            order_id: format!("{run}-o{n}"),
            volume: Some(Decimal {
                value: "49.50".into(),
            }),
            amount: Some(Money {
                amount: Some(Decimal {
                    value: "99.00".into(),
                }),
                currency_code: "EUR".into(),
            }),
        })),
    }
}

pub async fn run(
    binary: &std::path::Path,
    events: usize,
    rate: u32,
) -> anyhow::Result<IngestReport> {
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: cargo build --release -p mentorstream-ingest",
        binary.display()
    );
    let mut config = Config::load(None)?;
    let suffix = mentorstream_testkit::unique("bench-ingest");
    let (control, tenants, _) = super::bench_tenant(&config, "bench_ingest").await?;
    config.postgres.url = control.into();
    let key = tenants
        .create_key("bench", "ingest".parse()?)
        .await?
        .api_key;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!(
            "[kafka.topics]\nactivity = \"{suffix}.activity\"\n[redis]\nkey_prefix = \"{suffix}\"\n\
             [postgres]\nurl = \"{}\"\n[telemetry]\nlog_filter = \"warn\"\n",
            config.postgres.url.expose_secret()
        ),
    )?;
    let (process, addr) = mentorstream_testkit::ServiceProcess::start(
        &binary.to_string_lossy(),
        file.path(),
        "INGEST",
        &[],
    );
    let pid = process.id().to_string();
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = IngestServiceClient::new(channel);

    // Batched: 1,000 events per call, 4 calls in flight.
    let batches: Vec<Vec<ActivityEvent>> = (0..events)
        .map(|n| order(&format!("{suffix}-b"), n))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[ActivityEvent]>::to_vec)
        .collect();
    let (cpu_before, started) = (super::cpu_of(&pid)?, Instant::now());
    let accepted: usize = futures::stream::iter(batches)
        .map(|events| {
            let mut client = client.clone();
            let request = super::authorized(&key, IngestRequest { events });
            async move { client.ingest(request).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .map_ok(|answer| {
            answer
                .into_inner()
                .results
                .iter()
                .filter(|result| result.status() == EventStatus::Accepted)
                .count()
        })
        .try_fold(0, |sum, accepted| async move { Ok(sum + accepted) })
        .await?;
    let batched_wall = started.elapsed().as_secs_f64();
    let batched_cpu = super::cpu_of(&pid)? - cpu_before;
    anyhow::ensure!(
        accepted == events,
        "{accepted} of {events} batched events accepted"
    );

    // Streamed: one IngestStream with every event, acknowledgements read as they come.
    let run = format!("{suffix}-s");
    let requests = futures::stream::iter((0..events).map(move |n| IngestStreamRequest {
        sequence: n as u64,
        event: Some(order(&run, n)),
    }));
    let (cpu_before, started) = (super::cpu_of(&pid)?, Instant::now());
    let mut acks = client
        .clone()
        .ingest_stream(super::authorized(&key, requests))
        .await?
        .into_inner();
    let mut accepted = 0;
    while let Some(ack) = acks.message().await? {
        if ack
            .result
            .is_some_and(|result| result.status() == EventStatus::Accepted)
        {
            accepted += 1;
        }
    }
    let streaming_wall = started.elapsed().as_secs_f64();
    let streaming_cpu = super::cpu_of(&pid)? - cpu_before;
    anyhow::ensure!(
        accepted == events,
        "{accepted} of {events} streamed events accepted"
    );

    // Unary, one event per call, at a fixed rate.
    let calls = usize::try_from(rate * UNARY_SECONDS)?;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = tokio::time::Instant::now();
    let mut pending = Vec::with_capacity(calls);
    for n in 0..calls {
        tokio::time::sleep_until(started + period * u32::try_from(n)?).await;
        let mut client = client.clone();
        let request = super::authorized(
            &key,
            IngestRequest {
                events: vec![order(&format!("{suffix}-u"), n)],
            },
        );
        pending.push(tokio::spawn(async move {
            let sent = Instant::now();
            client.ingest(request).await.map(|_| sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    for call in pending {
        latencies.push(call.await?.context("a unary call failed")?);
    }
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index].as_secs_f64() * 1000.0
    };
    drop(process);
    #[allow(clippy::cast_precision_loss)]
    let per = |cpu: f64| events as f64 / cpu;
    Ok(IngestReport {
        events,
        batched_cpu_seconds: batched_cpu,
        batched_wall_seconds: batched_wall,
        batched_events_per_cpu_second: per(batched_cpu),
        streaming_cpu_seconds: streaming_cpu,
        streaming_wall_seconds: streaming_wall,
        streaming_events_per_cpu_second: per(streaming_cpu),
        unary_rate: rate,
        unary_calls: calls,
        unary_p50_ms: percentile(0.50),
        unary_p99_ms: percentile(0.99),
    })
}
