//! `mentorstream-bench freshness`: ingest and the aggregator as their own processes on the
//! local stack, events sent at a sustained rate, and for a sample of them the time from the
//! ACCEPTED answer until GetScorecard shows them (docs/spec.md §6.9, "Freshness").

use std::time::{Duration, Instant};

use mentorstream_config::Config;
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, activity_event::Payload};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::{EventStatus, IngestRequest};
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetScorecardRequest, Metric, Subject, SubjectKind, Window, WindowKind, metric_value,
};
use serde::Serialize;
use tonic::transport::Channel;

/// Events go out in batches every this long, at the chosen rate.
const TICK: Duration = Duration::from_millis(10);
/// Events of every batch followed until they show (the first, and one in the middle): at
/// 100 batches a second, 12,000 samples a minute.
const SAMPLES_PER_BATCH: u64 = 2;
const POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Serialize)]
pub struct FreshnessReport {
    pub rate: u32,
    pub seconds: u32,
    pub events: u64,
    pub achieved_rate: f64,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn order(run: &str, n: u64) -> ActivityEvent {
    ActivityEvent {
        tenant_id: String::new(),
        source: "shop".into(),
        source_event_id: format!("{run}-{n}"),
        occurred_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 1,
            nanos: 0,
        }),
        // A partner per event: its lifetime orders turn 1 when the event is applied.
        partner_id: format!("f{n}"),
        accepted_at: None,
        payload: Some(Payload::OrderPlaced(OrderPlaced {
            order_id: format!("{run}-o{n}"),
            volume: Some(Decimal {
                value: "10.00".into(),
            }),
            amount: Some(Money {
                amount: Some(Decimal {
                    value: "20.00".into(),
                }),
                currency_code: "EUR".into(),
            }),
        })),
    }
}

/// Polls until partner `f<n>` has an order; how long that took.
async fn visible(mut kpi: KpiServiceClient<Channel>, key: String, n: u64) -> Duration {
    let started = Instant::now();
    loop {
        let answer = kpi
            .get_scorecard(super::authorized(
                &key,
                GetScorecardRequest {
                    subject: Some(Subject {
                        kind: SubjectKind::Partner.into(),
                        id: format!("f{n}"),
                        mentor_id: String::new(),
                    }),
                    window: Some(Window {
                        kind: WindowKind::Lifetime.into(),
                        anchor: None,
                    }),
                },
            ))
            .await;
        let counted = answer.is_ok_and(|answer| {
            answer.into_inner().values.iter().any(|value| {
                value.metric() == Metric::Orders
                    && value.value == Some(metric_value::Value::Count(1))
            })
        });
        if counted {
            return started.elapsed();
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(
    bin: &std::path::Path,
    rate: u32,
    seconds: u32,
) -> anyhow::Result<FreshnessReport> {
    let config = Config::load(None)?;
    let suffix = mentorstream_testkit::unique("bench-fresh");
    let (control, tenants, _) = super::bench_tenant(&config, "bench_fresh").await?;
    let key = tenants
        .create_key("bench", "ingest,read".parse()?)
        .await?
        .api_key;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        format!(
            "[kafka.topics]\nactivity = \"{suffix}.activity\"\nmentorship = \"{suffix}.mentorship\"\n\
             kpi_updates = \"{suffix}.updates\"\nkpi_signals = \"{suffix}.signals\"\n\
             [redis]\nkey_prefix = \"{suffix}\"\n[postgres]\nurl = \"{}\"\n\
             [telemetry]\nlog_filter = \"warn\"\n",
            control
        ),
    )?;
    let start = |binary: &str, section: &str| {
        mentorstream_testkit::ServiceProcess::start(
            &bin.join(binary).to_string_lossy(),
            file.path(),
            section,
            &[],
        )
    };
    let (aggregator, kpi_addr) = start("mentorstream-kpi-aggregator", "KPI");
    let (ingest_process, ingest_addr) = start("mentorstream-ingest", "INGEST");
    let ingest = IngestServiceClient::new(
        Channel::from_shared(format!("http://{ingest_addr}"))?
            .connect()
            .await?,
    );
    let kpi = KpiServiceClient::new(
        Channel::from_shared(format!("http://{kpi_addr}"))?
            .connect()
            .await?,
    );
    let per_tick = u64::from(rate) * TICK.as_millis() as u64 / 1000;
    anyhow::ensure!(
        per_tick > 0,
        "the rate must be at least 100 events per second"
    );
    let ticks = u64::from(seconds) * 1000 / TICK.as_millis() as u64;
    let started = tokio::time::Instant::now();
    let mut samples = Vec::new();
    let mut sends = Vec::new();
    for tick in 0..ticks {
        tokio::time::sleep_until(started + TICK * u32::try_from(tick)?).await;
        let first = tick * per_tick;
        let events: Vec<ActivityEvent> = (first..first + per_tick)
            .map(|n| order(&suffix, n))
            .collect();
        let mut client = ingest.clone();
        let request = super::authorized(&key, IngestRequest { events });
        let (kpi, key) = (kpi.clone(), key.clone());
        let followed: Vec<u64> = (0..SAMPLES_PER_BATCH)
            .map(|sample| first + sample * per_tick / SAMPLES_PER_BATCH)
            .collect();
        sends.push(tokio::spawn(async move {
            let answer = client.ingest(request).await?.into_inner();
            anyhow::ensure!(
                answer
                    .results
                    .iter()
                    .all(|result| result.status() == EventStatus::Accepted),
                "an event was not accepted"
            );
            let waits = followed
                .into_iter()
                .map(|n| visible(kpi.clone(), key.clone(), n));
            Ok(futures::future::join_all(waits).await)
        }));
    }
    let sent_in = started.elapsed();
    for send in sends {
        samples.extend(send.await??);
    }
    drop((aggregator, ingest_process));
    samples.sort();
    let at = |p: f64| {
        let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1000.0
    };
    let events = ticks * per_tick;
    Ok(FreshnessReport {
        rate,
        seconds,
        events,
        achieved_rate: events as f64 / sent_in.as_secs_f64(),
        samples: samples.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: samples.last().map_or(0.0, |max| max.as_secs_f64() * 1000.0),
    })
}
