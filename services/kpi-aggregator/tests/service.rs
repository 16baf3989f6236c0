//! The KPI aggregator as a service against the real local stack: activity records on its topic
//! (one of them poison) become exactly the scorecards DESIGN.md §6 defines, read through
//! KpiService.

mod scenario;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use mentorstream_config::Config;
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::activity::v1::ActivityEvent;
use mentorstream_proto::common::v1::LocalDate;
use mentorstream_proto::kpi::v1::kpi_service_client::KpiServiceClient;
use mentorstream_proto::kpi::v1::{
    GetScorecardRequest, GetScorecardResponse, Metric, Subject, SubjectKind, Window, WindowKind,
    metric_value,
};
use mentorstream_runtime::{Context, Listeners};
use mentorstream_tenancy::NewTenant;
use mentorstream_testkit::{fresh_database, unique};
use prost::Message as _;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scenario::{Key, expected, scenario};
use tonic::transport::Channel;
use tonic::{Code, Request};

const WAIT: Duration = Duration::from_secs(60);

struct Aggregator {
    client: KpiServiceClient<Channel>,
    api_key: String,
    tenant_id: String,
    context: Context,
    served: tokio::task::JoinHandle<Result<(), mentorstream_kpi_aggregator::ServiceError>>,
}

impl Aggregator {
    async fn start() -> Self {
        let telemetry = mentorstream_telemetry::init_for_tests();
        let mut config = Config::load(None).expect("defaults");
        config.kafka.partitions = 3;
        config.kafka.topics.activity = unique("t.activity");
        config.redis.key_prefix = unique("ms-test");
        config.postgres.url = fresh_database(&config, "kpi").await.into();
        let context = Context::connect(config, telemetry).await.expect("context");
        context.tenants.migrate().await.expect("migrate");
        let tenant = context
            .tenants
            .create_tenant(NewTenant {
                name: "acme".into(),
                time_zone: "Europe/Moscow".into(),
                default_locale: "ru-RU".into(),
            })
            .await
            .expect("tenant");
        let api_key = context
            .tenants
            .create_key("acme", "read".parse().expect("scopes"))
            .await
            .expect("key")
            .api_key;
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_kpi_aggregator::run(context.clone(), listeners));
        let client = KpiServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Self {
            client,
            api_key,
            tenant_id: tenant.tenant_id,
            context,
            served,
        }
    }

    async fn scorecard(
        &mut self,
        kind: SubjectKind,
        id: &str,
        window: Window,
    ) -> Result<GetScorecardResponse, tonic::Status> {
        let mut request = Request::new(GetScorecardRequest {
            subject: Some(Subject {
                kind: kind.into(),
                id: id.into(),
            }),
            window: Some(window),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.api_key).parse().expect("ascii"),
        );
        Ok(self.client.get_scorecard(request).await?.into_inner())
    }

    async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

fn window(kind: WindowKind, anchor: Option<(i32, i32, i32)>) -> Window {
    Window {
        kind: kind.into(),
        anchor: anchor.map(|(year, month, day)| LocalDate { year, month, day }),
    }
}

/// The bucket keys a window sums, computed here from the rules (not from the service).
fn buckets(kind: WindowKind, anchor: (i32, i32, i32)) -> Vec<String> {
    use chrono::{Datelike, Days, NaiveDate};
    let day = NaiveDate::from_ymd_opt(
        anchor.0,
        anchor.1.try_into().expect("month"),
        anchor.2.try_into().expect("day"),
    )
    .expect("date");
    let rolling = |days: u64| {
        (0..days)
            .map(|back| format!("d:{}", day - Days::new(back)))
            .collect()
    };
    match kind {
        WindowKind::Day => vec![format!("d:{day}")],
        WindowKind::Week => vec![format!(
            "w:{}-W{:02}",
            day.iso_week().year(),
            day.iso_week().week()
        )],
        WindowKind::Month => vec![format!("m:{}-{:02}", day.year(), day.month())],
        WindowKind::Rolling7d => rolling(7),
        WindowKind::Rolling30d => rolling(30),
        WindowKind::Rolling90d => rolling(90),
        WindowKind::Lifetime => vec!["life".into()],
        WindowKind::Unspecified => panic!("no kind"),
    }
}

/// The scorecard's values as field → number (volumes in hundredths), to compare with the oracle.
fn numbers(scorecard: &GetScorecardResponse) -> BTreeMap<String, i64> {
    let field = |metric: Metric| match metric {
        Metric::Recruits => "rec",
        Metric::SalesVolume => "pv",
        Metric::Orders => "ord",
        Metric::ModulesCompleted => "mod",
        Metric::LearningMinutes => "min",
        Metric::EventsAttended => "evt",
        Metric::SessionsCompleted => "ses",
        Metric::SessionsMissed => "mis",
        Metric::FeedbackCount => "fbc",
        Metric::RankAdvancements => "rank",
        Metric::ActiveDays => "act",
        other => panic!("unexpected metric {other:?}"),
    };
    scorecard
        .values
        .iter()
        .map(|value| {
            let metric = Metric::try_from(value.metric).expect("known metric");
            let number = match value.value.as_ref().expect("value") {
                metric_value::Value::Count(count) => *count,
                metric_value::Value::Decimal(decimal) => {
                    decimal.value.replace('.', "").parse().expect("hundredths")
                }
                metric_value::Value::Ratio(_) => panic!("no ratios without feedback"),
            };
            (field(metric).to_owned(), number)
        })
        .filter(|(_, number)| *number != 0)
        .collect()
}

fn oracle(
    expected: &BTreeMap<Key, i64>,
    kind: &str,
    subject: &str,
    buckets: &[String],
) -> BTreeMap<String, i64> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for ((k, s, bucket, field), value) in expected {
        if k == kind && s == subject && buckets.contains(bucket) {
            *sums.entry(field.clone()).or_default() += value;
        }
    }
    sums.retain(|_, value| *value != 0);
    sums
}

#[tokio::test]
async fn scorecards_equal_the_rules_applied_to_the_records_on_the_topic() {
    let mut aggregator = Aggregator::start().await;
    let config = &aggregator.context.config;
    let producer = Producer::new(&config.kafka, WAIT).expect("producer");
    let topic = config.kafka.topics.activity.clone();
    let mut events = scenario();
    for event in &mut events {
        event.tenant_id = aggregator.tenant_id.clone();
    }
    for (n, event) in events.iter().enumerate() {
        let record = OutboundRecord::protobuf(
            topic.clone(),
            format!("{}/{}", event.tenant_id, event.partner_id),
            event,
            CloudEvent {
                id: event.source_event_id.clone(),
                event_type: "mentorstream.activity.v1.ActivityEvent".into(),
                source: "/tests/kpi".into(),
                time: Utc::now(),
            },
        );
        producer.send(&record).await.expect("produced");
        if n == 10 {
            // A record no one can decode: it goes to the dead letters and changes nothing.
            let mut poison = record.clone();
            poison.payload = vec![0xff, 0xff, 0xff];
            producer.send(&poison).await.expect("produced");
        }
    }
    // A sentinel per partition, after everything else: once a sentinel counts, every record
    // before it in its partition is applied (records of a partition are applied in order).
    // (`as_of` cannot tell on Tansu: its high watermarks lag behind acknowledged records.)
    let sentinels: Vec<ActivityEvent> = (0..config.kafka.partitions)
        .map(|partition| {
            let mut sentinel = scenario::event(
                &format!("sentinel-{partition}"),
                &format!("sentinel-{partition}"),
                "2026-12-20 12:00",
                scenario::ping(),
            );
            sentinel.tenant_id = aggregator.tenant_id.clone();
            sentinel
        })
        .collect();
    let raw: FutureProducer = mentorstream_kafka::client_config(&config.kafka)
        .create()
        .expect("producer");
    for (partition, sentinel) in (0..).zip(&sentinels) {
        let payload = sentinel.encode_to_vec();
        let key = format!("{}/{}", sentinel.tenant_id, sentinel.partner_id);
        let record = FutureRecord::to(&topic)
            .partition(partition)
            .key(&key)
            .payload(&payload)
            .headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "ce_specversion",
                        value: Some("1.0"),
                    })
                    .insert(Header {
                        key: "ce_id",
                        value: Some(sentinel.source_event_id.as_str()),
                    })
                    .insert(Header {
                        key: "ce_type",
                        value: Some("mentorstream.activity.v1.ActivityEvent"),
                    })
                    .insert(Header {
                        key: "ce_source",
                        value: Some("/tests/kpi"),
                    })
                    .insert(Header {
                        key: "ce_time",
                        value: Some("2026-12-20T09:00:00Z"),
                    })
                    .insert(Header {
                        key: "content-type",
                        value: Some("application/protobuf"),
                    }),
            );
        raw.send(record, WAIT).await.expect("sentinel produced");
    }
    events.extend(sentinels.iter().cloned());
    let expected = expected(&events);
    let lifetime = window(WindowKind::Lifetime, None);
    let deadline = tokio::time::Instant::now() + WAIT;
    for sentinel in &sentinels {
        loop {
            let answer = aggregator
                .scorecard(SubjectKind::Partner, &sentinel.partner_id, lifetime)
                .await
                .expect("sentinel scorecard");
            if numbers(&answer).get("act") == Some(&1) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never counted",
                sentinel.partner_id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let windows = [
        (WindowKind::Day, (2026, 11, 29)),
        (WindowKind::Week, (2026, 11, 26)),
        (WindowKind::Week, (2026, 11, 30)),
        (WindowKind::Month, (2026, 11, 1)),
        (WindowKind::Month, (2026, 12, 31)),
        (WindowKind::Rolling7d, (2026, 12, 2)),
        (WindowKind::Rolling30d, (2026, 12, 15)),
        (WindowKind::Lifetime, (2026, 12, 31)),
    ];
    let subjects = [
        (SubjectKind::Partner, "ann", "c"),
        (SubjectKind::Partner, "bob", "c"),
        (SubjectKind::Partner, "n4", "c"),
        (SubjectKind::Team, "root", "t"),
        (SubjectKind::Team, "n3", "t"),
        (SubjectKind::Team, "n7", "t"),
        (SubjectKind::Tenant, "", "tenant"),
    ];
    for (kind, id, oracle_kind) in subjects {
        for (window_kind, anchor) in windows {
            let answer = aggregator
                .scorecard(kind, id, window(window_kind, Some(anchor)))
                .await
                .expect("scorecard");
            assert!(answer.as_of.is_some());
            assert_eq!(
                numbers(&answer),
                oracle(&expected, oracle_kind, id, &buckets(window_kind, anchor)),
                "{kind:?} {id} {window_kind:?} {anchor:?}"
            );
        }
    }
    // Sanity: the scenario is not empty where it matters.
    assert!(
        oracle(&expected, "tenant", "", &["life".into()])
            .get("pv")
            .is_some_and(|pv| *pv > 0)
    );

    let refused = aggregator
        .scorecard(SubjectKind::Partner, "", lifetime)
        .await
        .expect_err("no partner id");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "subject.id: is required for partner and team subjects"
    );
    aggregator.stop().await;
}
