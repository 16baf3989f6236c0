//! IngestService: what its gRPC API answers, checked against what the topic really holds.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_config::{Config, KafkaConfig};
use mentorstream_ingest::dedup::{ClaimToken, Dedup, Fingerprint};
use mentorstream_kafka::{InboundRecord, Message as _};
use mentorstream_proto::activity::v1::{
    ActivityEvent, ActivityPing, OrderPlaced, PartnerEnrolled, PersonalFields, PingKind,
    activity_event::Payload,
};
use mentorstream_proto::common::v1::{Decimal, FieldViolation, Money};
use mentorstream_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mentorstream_proto::ingest::v1::{
    EventResult, EventStatus, IngestRequest, IngestStreamRequest, RejectionReason,
};
use mentorstream_redis::KeySpace;
use mentorstream_runtime::Context;
use mentorstream_tenancy::NewTenant;
use mentorstream_testkit::KafkaCluster;
use prost::Message as _;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// The tests' "now", to the second: events built from it at different moments are equal.
static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now is a valid time")
});

/// One running ingest service and what a test needs to talk to it.
struct Ingest {
    client: IngestServiceClient<Channel>,
    api_key: String,
    tenant_id: String,
    context: Context,
    served: tokio::task::JoinHandle<Result<(), mentorstream_ingest::ServiceError>>,
}

impl Ingest {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let (context, addr, served) = crate::common::start("ingest", adjust).await;
        let (tenant_id, api_key) = create_tenant(&context, "acme").await;
        let client = IngestServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        Self {
            client,
            api_key,
            tenant_id,
            context,
            served,
        }
    }

    fn kafka(&self) -> &KafkaConfig {
        &self.context.config.kafka
    }

    fn topic(&self) -> &str {
        &self.context.config.kafka.topics.activity
    }

    fn request<T>(&self, message: T) -> Request<T> {
        authorized(message, &self.api_key)
    }

    async fn ingest(
        &mut self,
        events: Vec<ActivityEvent>,
    ) -> Result<Vec<EventResult>, tonic::Status> {
        let request = self.request(IngestRequest { events });
        Ok(self.client.ingest(request).await?.into_inner().results)
    }

    async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

async fn create_tenant(context: &Context, name: &str) -> (String, String) {
    let tenant = context
        .tenants
        .create_tenant(NewTenant {
            name: name.into(),
            time_zone: "Europe/Moscow".into(),
            default_locale: "ru-RU".into(),
        })
        .await
        .expect("tenant");
    let key = context
        .tenants
        .create_key(name, "ingest".parse().expect("scopes"))
        .await
        .expect("key");
    (tenant.tenant_id, key.api_key)
}

fn authorized<T>(message: T, api_key: &str) -> Request<T> {
    mentorstream_testkit::authorized(api_key, message)
}

fn timestamp(time: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    })
}

fn ping(id: &str, partner: &str) -> ActivityEvent {
    ActivityEvent {
        source: "app".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(*NOW - chrono::Duration::minutes(10)),
        partner_id: partner.into(),
        payload: Some(Payload::ActivityPing(ActivityPing {
            kind: PingKind::Login.into(),
        })),
        ..ActivityEvent::default()
    }
}

fn order(id: &str, partner: &str, volume: &str) -> ActivityEvent {
    ActivityEvent {
        source: "shop".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(*NOW - chrono::Duration::days(2)),
        partner_id: partner.into(),
        payload: Some(Payload::OrderPlaced(OrderPlaced {
            order_id: format!("order-{id}"),
            volume: Some(Decimal {
                value: volume.into(),
            }),
            amount: Some(Money {
                amount: Some(Decimal {
                    value: "49.90".into(),
                }),
                currency_code: "EUR".into(),
            }),
        })),
        ..ActivityEvent::default()
    }
}

fn enrolment(id: &str, partner: &str, sponsor: &str) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(*NOW - chrono::Duration::days(1)),
        partner_id: partner.into(),
        payload: Some(Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor.into(),
            display_name: "Мария".into(),
            locale: "ru-RU".into(),
            time_zone: "Asia/Novosibirsk".into(),
            ..PartnerEnrolled::default()
        })),
        ..ActivityEvent::default()
    }
}

fn accepted(index: u32) -> EventResult {
    EventResult {
        index,
        status: EventStatus::Accepted.into(),
        reason: RejectionReason::Unspecified.into(),
        violations: Vec::new(),
    }
}

fn duplicate(index: u32) -> EventResult {
    EventResult {
        status: EventStatus::Duplicate.into(),
        ..accepted(index)
    }
}

fn rejected(index: u32, reason: RejectionReason, violations: &[(&str, &str)]) -> EventResult {
    EventResult {
        index,
        status: EventStatus::Rejected.into(),
        reason: reason.into(),
        violations: violations
            .iter()
            .map(|(field, description)| FieldViolation {
                field: (*field).into(),
                description: (*description).into(),
            })
            .collect(),
    }
}

/// The trace id a test client sends in `traceparent`.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

const CONFLICT: &str = "an event with this source and source_event_id was already accepted with \
                        different content; a new event needs a new source_event_id";

/// A record on the activity topic.
#[derive(Debug)]
struct Record {
    key: String,
    ce_id: String,
    ce_source: String,
    traceparent: Option<String>,
    event: ActivityEvent,
}

/// Every record on `topic`, read to the partitions' ends.
async fn records(kafka: &KafkaConfig, topic: &str) -> Vec<Record> {
    mentorstream_testkit::read_to_end(kafka, topic)
        .await
        .iter()
        .map(|message| {
            let inbound = InboundRecord::new(message);
            let cloud_event = inbound.cloud_event().expect("CloudEvents headers");
            Record {
                key: String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key"),
                ce_id: cloud_event.id,
                ce_source: cloud_event.source,
                traceparent: inbound.header("traceparent").map(str::to_owned),
                event: inbound.decode().expect("an ActivityEvent"),
            }
        })
        .collect()
}

/// `(source, source_event_id)` of each record, counted.
fn identities(records: &[Record]) -> BTreeMap<(String, String), usize> {
    let mut counted = BTreeMap::new();
    for record in records {
        let identity = (
            record.event.source.clone(),
            record.event.source_event_id.clone(),
        );
        *counted.entry(identity).or_default() += 1;
    }
    counted
}

fn once_each(identities: &[(&str, &str)]) -> BTreeMap<(String, String), usize> {
    identities
        .iter()
        .map(|(source, id)| (((*source).to_owned(), (*id).to_owned()), 1))
        .collect()
}

#[tokio::test]
async fn a_mixed_batch_gets_exact_verdicts_and_the_topic_holds_the_accepted_events_once() {
    let mut ingest = Ingest::start(|_| {}).await;

    // The caller's trace continues into the records it caused.
    let mut request = ingest.request(IngestRequest {
        events: vec![order("o-1", "p-1", "10.5"), ping("ping-1", "p-1")],
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let first = ingest
        .client
        .ingest(request)
        .await
        .expect("first batch")
        .into_inner()
        .results;
    assert_eq!(first, [accepted(0), accepted(1)]);

    let mut spoofed = ping("ping-2", "p-2");
    spoofed.tenant_id = "someone-else".into();
    let mut future = ping("ping-future", "p-3");
    future.occurred_at = timestamp(*NOW + chrono::Duration::minutes(10));
    let mut late = ping("ping-late", "p-3");
    late.occurred_at = timestamp(*NOW - chrono::Duration::days(36));
    let mut malformed = order("o-bad", "", "1.005");
    if let Some(Payload::OrderPlaced(placed)) = malformed.payload.as_mut() {
        placed.amount = Some(Money {
            amount: Some(Decimal { value: "5".into() }),
            currency_code: "EURO".into(),
        });
    }
    let second = ingest
        .ingest(vec![
            // The same order written differently: same canonical content.
            order("o-1", "p-1", "10.50"),
            order("o-1", "p-1", "11.00"),
            enrolment("enrol-9", "p-9", "p-1"),
            enrolment("enrol-9", "p-9", "p-1"),
            future,
            late,
            malformed,
            spoofed,
            enrolment("enrol-9", "p-9", "p-2"),
        ])
        .await
        .expect("second batch");
    assert_eq!(
        second[..4],
        [
            duplicate(0),
            rejected(
                1,
                RejectionReason::Conflict,
                &[("events[1].source_event_id", CONFLICT)]
            ),
            accepted(2),
            duplicate(3)
        ]
    );
    assert_eq!(second[4].reason, i32::from(RejectionReason::InFuture));
    assert_eq!(second[4].violations.len(), 1);
    assert_eq!(second[4].violations[0].field, "events[4].occurred_at");
    assert!(
        second[4].violations[0]
            .description
            .contains("more than 5 minutes after the server time")
    );
    assert_eq!(second[5].reason, i32::from(RejectionReason::TooLate));
    assert!(
        second[5].violations[0]
            .description
            .contains("older than the tenant's allowed lateness of 35 days")
    );
    assert_eq!(
        second[6],
        rejected(
            6,
            RejectionReason::Invalid,
            &[
                ("events[6].partner_id", "is required"),
                (
                    "events[6].order_placed.volume",
                    "must have at most 2 decimal places, got `1.005`"
                ),
                (
                    "events[6].order_placed.amount.currency_code",
                    "must be an ISO-4217 currency code such as EUR, got `EURO`"
                ),
            ]
        )
    );
    assert_eq!(second[7], accepted(7));
    assert_eq!(
        second[8],
        rejected(
            8,
            RejectionReason::Conflict,
            &[("events[8].source_event_id", CONFLICT)]
        )
    );
    assert_eq!(second.len(), 9);

    // Another tenant's identities are its own.
    let (_, other_key) = create_tenant(&ingest.context, "globex").await;
    let other = ingest
        .client
        .ingest(authorized(
            IngestRequest {
                events: vec![order("o-1", "p-1", "99")],
            },
            &other_key,
        ))
        .await
        .expect("other tenant")
        .into_inner()
        .results;
    assert_eq!(other, [accepted(0)]);

    let records = records(ingest.kafka(), ingest.topic()).await;
    let mut expected = once_each(&[("app", "ping-1"), ("app", "ping-2"), ("crm", "enrol-9")]);
    // Once for acme, once for globex.
    expected.insert(("shop".into(), "o-1".into()), 2);
    assert_eq!(identities(&records), expected);
    let acme = &ingest.tenant_id;
    for record in &records {
        assert_eq!(
            record.key,
            format!("{}/{}", record.event.tenant_id, record.event.partner_id)
        );
        assert_eq!(record.ce_id, record.event.source_event_id);
        assert_eq!(
            record.ce_source,
            format!(
                "/tenants/{}/sources/{}",
                record.event.tenant_id, record.event.source
            )
        );
        let traceparent = record
            .traceparent
            .as_deref()
            .expect("every record carries its request's trace");
        let caused_by_first_request = &record.event.tenant_id == acme
            && ["o-1", "ping-1"].contains(&record.event.source_event_id.as_str());
        assert_eq!(
            traceparent.split('-').nth(1) == Some(CALLER_TRACE),
            caused_by_first_request,
            "{traceparent}"
        );
        assert!(record.event.accepted_at.is_some());
    }
    let acme_records: Vec<&Record> = records
        .iter()
        .filter(|record| &record.event.tenant_id == acme)
        .collect();
    assert_eq!(
        acme_records.len(),
        4,
        "the spoofed tenant id was replaced by the key's tenant"
    );
    let acme_order = acme_records
        .iter()
        .find(|record| record.event.source_event_id == "o-1")
        .expect("order");
    let Some(Payload::OrderPlaced(placed)) = &acme_order.event.payload else {
        panic!("an order");
    };
    assert_eq!(
        placed.volume.as_ref().map(|volume| volume.value.as_str()),
        Some("10.50")
    );
    // The enrolment's personal fields travel sealed with the partner's data key.
    let enrolled = acme_records
        .iter()
        .find(|record| record.event.source_event_id == "enrol-9")
        .expect("enrolment");
    let Some(Payload::PartnerEnrolled(enrolled)) = &enrolled.event.payload else {
        panic!("an enrolment");
    };
    assert_eq!(
        (
            enrolled.sponsor_id.as_str(),
            enrolled.display_name.as_str(),
            enrolled.locale.as_str(),
            enrolled.time_zone.as_str()
        ),
        ("p-1", "", "", "")
    );
    let key = ingest
        .context
        .tenants
        .find_partner_data_key(acme, "p-9")
        .await
        .expect("control database")
        .expect("p-9's key");
    let opened = key
        .open(&enrolled.sealed_personal, acme, "p-9")
        .expect("opens with p-9's key");
    assert_eq!(
        PersonalFields::decode(opened.as_slice()).expect("personal fields"),
        PersonalFields {
            display_name: "Мария".into(),
            locale: "ru-RU".into(),
            time_zone: "Asia/Novosibirsk".into(),
        }
    );

    // nextest runs each test in its own process, so these counters are this test's alone.
    let metrics = ingest.context.telemetry.render_metrics();
    for line in [
        r#"mentorstream_ingest_events_total{status="accepted",reason=""} 5"#,
        r#"mentorstream_ingest_events_total{status="duplicate",reason=""} 2"#,
        r#"mentorstream_ingest_events_total{status="rejected",reason="conflict"} 2"#,
        r#"mentorstream_ingest_events_total{status="rejected",reason="invalid"} 1"#,
        r#"mentorstream_ingest_events_total{status="rejected",reason="in_future"} 1"#,
        r#"mentorstream_ingest_events_total{status="rejected",reason="too_late"} 1"#,
        "mentorstream_ingest_publish_seconds_count 5",
    ] {
        assert!(
            metrics.lines().any(|metric| metric == line),
            "missing `{line}` in\n{metrics}"
        );
    }
    ingest.stop().await;
}

#[tokio::test]
async fn whole_requests_over_the_limits_or_without_the_scope_are_refused() {
    let mut ingest = Ingest::start(|_| {}).await;
    let too_many = (0..1001).map(|n| ping(&format!("e-{n}"), "p-1")).collect();
    let refused = ingest.ingest(too_many).await.expect_err("too many events");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "events: a batch holds at most 1000 events, got 1001; split it or use IngestStream"
    );
    let mut huge = ping("huge", "p-1");
    huge.partner_id = "p".repeat(4 * 1024 * 1024);
    let refused = ingest.ingest(vec![huge]).await.expect_err("too large");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("events: a batch is at most 4194304 bytes (4 MiB) encoded, got 419"),
        "{}",
        refused.message()
    );

    let read_key = ingest
        .context
        .tenants
        .create_key("acme", "read".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;
    let denied = ingest
        .client
        .ingest(authorized(
            IngestRequest {
                events: vec![ping("x", "p-1")],
            },
            &read_key,
        ))
        .await
        .expect_err("no ingest scope");
    assert_eq!(denied.code(), Code::PermissionDenied);

    assert_eq!(
        records(ingest.kafka(), ingest.topic()).await.len(),
        0,
        "nothing was published"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn with_the_broker_down_ingest_is_unavailable_and_the_retry_is_accepted_not_duplicate() {
    let mut broker = KafkaCluster::single().await;
    let brokers = broker.brokers();
    let mut ingest = Ingest::start(|config| {
        config.kafka.brokers = brokers;
        config.ingest.delivery_timeout = Duration::from_secs(3);
    })
    .await;
    let before = ingest
        .ingest(vec![ping("before", "p-1")])
        .await
        .expect("broker up");
    assert_eq!(before, [accepted(0)]);

    broker.kill(0);
    let batch = vec![
        order("o-1", "p-1", "5"),
        ping("during-1", "p-1"),
        enrolment("enrol-2", "p-2", "p-1"),
    ];
    let refused = ingest.ingest(batch.clone()).await.expect_err("broker down");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("Kafka did not acknowledge events[0]"),
        "{}",
        refused.message()
    );

    broker.resume(0).await;
    let mut retried = ingest.ingest(batch.clone()).await;
    for _ in 0..20 {
        match &retried {
            Err(status) if status.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                retried = ingest.ingest(batch.clone()).await;
            }
            _ => break,
        }
    }
    assert_eq!(
        retried.expect("broker back"),
        [accepted(0), accepted(1), accepted(2)]
    );
    assert_eq!(
        ingest.ingest(batch).await.expect("replay"),
        [duplicate(0), duplicate(1), duplicate(2)]
    );

    let records = records(ingest.kafka(), ingest.topic()).await;
    assert_eq!(
        identities(&records),
        once_each(&[
            ("app", "before"),
            ("app", "during-1"),
            ("crm", "enrol-2"),
            ("shop", "o-1")
        ])
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_claim_left_by_a_crashed_request_delays_the_retry_but_never_makes_it_a_duplicate() {
    let mut ingest =
        Ingest::start(|config| config.ingest.claim_wait = Duration::from_secs(20)).await;
    // What a process that died between its claim and its publish leaves behind: a claim of
    // another token with a (here short) lease.
    let config = &ingest.context.config;
    let crashed = Dedup::new(
        mentorstream_redis::connect(&config.redis).expect("redis"),
        KeySpace::new(&config.redis.key_prefix, mentorstream_ingest::SERVICE),
        Duration::from_secs(2),
    );
    let event = ping("orphaned", "p-1");
    let canonical = mentorstream_ingest::validate::validate(
        event.clone(),
        &ingest.tenant_id,
        mentorstream_ingest::validate::Window {
            now: Utc::now(),
            allowed_lateness: mentorstream_tenancy::DEFAULT_ALLOWED_LATENESS,
        },
        "event",
    )
    .expect("valid");
    let entry = crashed.entry(
        &ingest.tenant_id,
        &canonical.source,
        &canonical.source_event_id,
        Fingerprint::of(&canonical.encode_to_vec()),
        Utc::now(),
        mentorstream_tenancy::DEFAULT_ALLOWED_LATENESS,
    );
    let seen = crashed
        .claim(&ClaimToken::new(), &[&entry])
        .await
        .expect("claim");
    assert_eq!(seen, [mentorstream_ingest::dedup::Seen::Claimed]);

    assert_eq!(
        ingest.ingest(vec![event.clone()]).await.expect("retry"),
        [accepted(0)]
    );
    assert_eq!(
        ingest.ingest(vec![event]).await.expect("replay"),
        [duplicate(0)]
    );
    let records = records(ingest.kafka(), ingest.topic()).await;
    assert_eq!(identities(&records), once_each(&[("app", "orphaned")]));
    ingest.stop().await;
}

#[tokio::test]
async fn a_stream_answers_every_event_in_order_with_its_sequence() {
    let mut ingest = Ingest::start(|config| config.ingest.stream_max_in_flight = 2).await;
    let events = [
        Some(ping("s-1", "p-1")),
        Some(ping("s-1", "p-1")),
        None,
        Some(order("s-2", "p-1", "-3")),
        Some(order("s-3", "p-2", "3")),
    ];
    let requests: Vec<IngestStreamRequest> = events
        .into_iter()
        .zip([100, 101, 102, 103, 104])
        .map(|(event, sequence)| IngestStreamRequest { sequence, event })
        .collect();
    let responses = ingest
        .client
        .ingest_stream(ingest.request(tokio_stream::iter(requests)))
        .await
        .expect("stream opened")
        .into_inner();
    let answers: Vec<(u64, EventResult)> = futures::StreamExt::collect::<Vec<_>>(responses)
        .await
        .into_iter()
        .map(|response| {
            let response = response.expect("acknowledged");
            (response.sequence, response.result.expect("result"))
        })
        .collect();
    assert_eq!(
        answers,
        [
            (100, accepted(0)),
            (101, duplicate(0)),
            (
                102,
                rejected(0, RejectionReason::Invalid, &[("event", "is required")])
            ),
            (
                103,
                rejected(
                    0,
                    RejectionReason::Invalid,
                    &[(
                        "event.order_placed.volume",
                        "must not be negative, got `-3`"
                    )]
                )
            ),
            (104, accepted(0)),
        ]
    );
    let records = records(ingest.kafka(), ingest.topic()).await;
    assert_eq!(
        identities(&records),
        once_each(&[("app", "s-1"), ("shop", "s-3")])
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_stream_of_100_000_events_is_fully_acknowledged_and_the_topic_holds_each_once() {
    const EVENTS: u64 = 100_000;
    let mut ingest = Ingest::start(|config| config.ingest.stream_max_in_flight = 4096).await;
    let requests = tokio_stream::iter((0..EVENTS).map(|sequence| IngestStreamRequest {
        sequence,
        event: Some(ping(
            &format!("bulk-{sequence}"),
            &format!("p-{}", sequence % 997),
        )),
    }));
    let mut responses = ingest
        .client
        .ingest_stream(ingest.request(requests))
        .await
        .expect("stream opened")
        .into_inner();
    let mut expected_sequence = 0;
    while let Some(response) = responses.message().await.expect("acknowledged") {
        assert_eq!(
            response.sequence, expected_sequence,
            "acknowledgements come in order"
        );
        assert_eq!(response.result, Some(accepted(0)));
        expected_sequence += 1;
    }
    assert_eq!(expected_sequence, EVENTS);

    let records = records(ingest.kafka(), ingest.topic()).await;
    assert_eq!(records.len(), 100_000);
    let identities = identities(&records);
    assert_eq!(identities.len(), 100_000);
    assert!(identities.values().all(|count| *count == 1));
    ingest.stop().await;
}
