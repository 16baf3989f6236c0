//! The shared Kafka plumbing against the real local broker (make stack-up).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use mentorstream_config::{Config, KafkaConfig};
use mentorstream_kafka::admin::{TopicSpec, ensure_topics};
use mentorstream_kafka::envelope::EnvelopeError;
use mentorstream_kafka::{
    CloudEvent, Consumer, DeadLetters, HandleError, InboundRecord, Message, OutboundRecord,
    Producer, RecordHandler, dlq_headers, dlq_topic, run_consumer,
};
use mentorstream_proto::activity::v1::{ActivityEvent, ActivityPing, PingKind, activity_event};
use mentorstream_testkit::unique;
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const WAIT: Duration = Duration::from_secs(60);

fn kafka_config() -> KafkaConfig {
    let mut kafka = Config::load(None).expect("defaults").kafka;
    kafka.partitions = 3;
    kafka
}

async fn topic(kafka: &KafkaConfig, name: &str) -> String {
    let topic = unique(&format!("t.{name}"));
    ensure_topics(kafka, &[TopicSpec::new(&topic)])
        .await
        .expect("create topic");
    topic
}

fn ping(partner: &str, source_event_id: &str) -> ActivityEvent {
    ActivityEvent {
        tenant_id: "tenant-1".into(),
        source: "app".into(),
        source_event_id: source_event_id.into(),
        partner_id: partner.into(),
        payload: Some(activity_event::Payload::ActivityPing(ActivityPing {
            kind: PingKind::App as i32,
        })),
        ..Default::default()
    }
}

fn record(topic: &str, key: &str, event: &ActivityEvent) -> OutboundRecord {
    OutboundRecord::protobuf(
        topic,
        key,
        event,
        CloudEvent {
            id: event.source_event_id.clone(),
            event_type: "mentorstream.activity.v1.ActivityEvent".into(),
            source: "/tests/kafka".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 26, 21, 0, 0).unwrap(),
        },
    )
}

#[tokio::test]
async fn a_record_keeps_its_key_cloud_event_headers_and_trace_context() {
    mentorstream_telemetry::init_for_tests();
    let kafka = kafka_config();
    let topic = topic(&kafka, "roundtrip").await;
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    let event = ping("partner-7", "evt-1");

    let span = tracing::info_span!("produce-test");
    let trace_id = mentorstream_telemetry::propagation::trace_id(&span).expect("span has a trace");
    let delivery = producer
        .send(&record(&topic, "tenant-1/partner-7", &event))
        .instrument(span)
        .await
        .expect("acknowledged");

    let consumer = Consumer::new(&kafka, &unique("g"), &[&topic]).expect("consumer");
    let message = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("a record within a minute")
        .expect("consumed");
    let inbound = InboundRecord::new(&message);
    assert_eq!(message.partition(), delivery.partition);
    assert_eq!(message.offset(), delivery.offset);
    assert_eq!(inbound.key(), Some(&b"tenant-1/partner-7"[..]));
    assert_eq!(
        inbound.cloud_event().expect("cloud event"),
        CloudEvent {
            id: "evt-1".into(),
            event_type: "mentorstream.activity.v1.ActivityEvent".into(),
            source: "/tests/kafka".into(),
            time: Utc.with_ymd_and_hms(2026, 11, 26, 21, 0, 0).unwrap(),
        }
    );
    assert_eq!(inbound.header("ce_specversion"), Some("1.0"));
    assert_eq!(inbound.header("content-type"), Some("application/protobuf"));
    let traceparent = inbound.header("traceparent").expect("traceparent header");
    assert_eq!(traceparent.split('-').nth(1), Some(trace_id.as_str()));
    assert_eq!(inbound.decode::<ActivityEvent>().expect("decodes"), event);

    // The consumer side continues the producer's trace.
    let consume_span = tracing::info_span!("consume-test");
    inbound.continue_trace(&consume_span);
    assert_eq!(
        mentorstream_telemetry::propagation::trace_id(&consume_span),
        Some(trace_id)
    );
}

/// Decodes activity events; anything else is poison.
struct Collect {
    seen: Vec<String>,
    stop_after: usize,
    shutdown: CancellationToken,
}

impl RecordHandler for Collect {
    async fn handle(&mut self, record: InboundRecord<'_>) -> Result<(), HandleError> {
        let event = record
            .decode::<ActivityEvent>()
            .map_err(|error: EnvelopeError| HandleError::Poison(error.to_string()))?;
        self.seen.push(event.source_event_id);
        if self.seen.len() == self.stop_after {
            self.shutdown.cancel();
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_poison_record_goes_to_the_dead_letter_topic_and_the_stream_moves_on() {
    mentorstream_telemetry::init_for_tests();
    let kafka = kafka_config();
    let topic = topic(&kafka, "poison").await;
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    let key = "tenant-1/partner-1";
    producer
        .send(&record(&topic, key, &ping("partner-1", "good-1")))
        .await
        .expect("sent");
    let mut poison = record(&topic, key, &ping("partner-1", "poison"));
    poison.payload = Some(vec![0xff, 0xff, 0xff, 0x01]);
    let poisoned_at = producer.send(&poison).await.expect("sent");
    producer
        .send(&record(&topic, key, &ping("partner-1", "good-2")))
        .await
        .expect("sent");

    let consumer = Consumer::new(&kafka, &unique("g"), &[&topic]).expect("consumer");
    let shutdown = CancellationToken::new();
    let mut handler = Collect {
        seen: Vec::new(),
        stop_after: 2,
        shutdown: shutdown.clone(),
    };
    let dead_letters = DeadLetters::new(producer.clone());
    tokio::time::timeout(
        WAIT,
        run_consumer(&consumer, &dead_letters, &mut handler, shutdown),
    )
    .await
    .expect("consumes within a minute")
    .expect("consumer ends cleanly");
    assert_eq!(handler.seen, ["good-1", "good-2"]);

    let dlq = dlq_topic(&topic);
    let reader = Consumer::new(&kafka, &unique("g"), &[&dlq]).expect("dlq consumer");
    let message = tokio::time::timeout(WAIT, reader.recv())
        .await
        .expect("dead letter within a minute")
        .expect("consumed");
    let dead = InboundRecord::new(&message);
    assert_eq!(dead.key(), Some(key.as_bytes()));
    assert_eq!(message.payload(), Some(&[0xff, 0xff, 0xff, 0x01][..]));
    assert_eq!(dead.header(dlq_headers::ORIGIN_TOPIC), Some(topic.as_str()));
    assert_eq!(
        dead.header(dlq_headers::ORIGIN_PARTITION),
        Some(poisoned_at.partition.to_string().as_str())
    );
    assert_eq!(
        dead.header(dlq_headers::ORIGIN_OFFSET),
        Some(poisoned_at.offset.to_string().as_str())
    );
    let error = dead.header(dlq_headers::ERROR).expect("error header");
    assert!(
        error.starts_with("payload is not a valid mentorstream_proto::activity::v1::ActivityEvent"),
        "{error}"
    );
    // The original CloudEvents headers travel with it.
    assert_eq!(dead.header("ce_id"), Some("poison"));
}

#[tokio::test]
async fn shutdown_commits_the_offsets_of_what_was_processed() {
    mentorstream_telemetry::init_for_tests();
    let kafka = kafka_config();
    let topic = topic(&kafka, "commit").await;
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    for n in 1..=5 {
        producer
            .send(&record(&topic, "one-key", &ping("p", &format!("e{n}"))))
            .await
            .expect("sent");
    }
    let group = unique("g");
    let dead_letters = DeadLetters::new(producer.clone());

    let first = Consumer::new(&kafka, &group, &[&topic]).expect("consumer");
    let shutdown = CancellationToken::new();
    let mut handler = Collect {
        seen: Vec::new(),
        stop_after: 3,
        shutdown: shutdown.clone(),
    };
    tokio::time::timeout(
        WAIT,
        run_consumer(&first, &dead_letters, &mut handler, shutdown),
    )
    .await
    .expect("consumes within a minute")
    .expect("clean shutdown");
    assert_eq!(handler.seen, ["e1", "e2", "e3"]);
    drop(first);

    // The next member of the group starts right after the last processed record.
    let second = Consumer::new(&kafka, &group, &[&topic]).expect("consumer");
    let shutdown = CancellationToken::new();
    let mut handler = Collect {
        seen: Vec::new(),
        stop_after: 2,
        shutdown: shutdown.clone(),
    };
    tokio::time::timeout(
        WAIT,
        run_consumer(&second, &dead_letters, &mut handler, shutdown),
    )
    .await
    .expect("consumes within a minute")
    .expect("clean shutdown");
    assert_eq!(handler.seen, ["e4", "e5"]);
}

#[tokio::test]
async fn a_producer_fails_while_its_broker_is_down_and_works_again_after_a_crash_restart() {
    mentorstream_telemetry::init_for_tests();
    let mut broker = mentorstream_testkit::KafkaCluster::single().await;
    let mut kafka = kafka_config();
    kafka.brokers = broker.brokers();
    let topic = topic(&kafka, "crash").await;
    let producer = Producer::new(&kafka, Duration::from_secs(2)).expect("producer");
    let send = async |id: &str| {
        producer
            .send(&record(
                &topic,
                "tenant-1/partner-1",
                &ping("partner-1", id),
            ))
            .await
    };
    send("before").await.expect("broker up");

    broker.kill(0);
    let failed = send("during").await.expect_err("broker down");
    assert!(failed.to_string().contains("Message timed out"), "{failed}");

    broker.resume(0).await;
    let mut after = send("after").await;
    for _ in 0..20 {
        if after.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = send("after").await;
    }
    after.expect("the producer recovers once the broker is back");
}

/// A rebalance that moves partitions away from a member commits what it applied of them
/// first: the new owner starts right after it, even with no periodic commit in between.
#[tokio::test]
async fn partitions_revoked_in_a_rebalance_move_with_the_offsets_of_what_was_applied() {
    mentorstream_telemetry::init_for_tests();
    let mut kafka = kafka_config();
    // Only the rebalance (or a shutdown) can commit within this test.
    kafka
        .properties
        .insert("auto.commit.interval.ms".into(), "3600000".into());
    let topic = topic(&kafka, "revoke").await;
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    let send = async |id: String, partition: i32| {
        producer
            .send(&record(&topic, "k", &ping("p", &id)).to_partition(partition))
            .await
            .expect("sent");
    };
    for partition in 0..kafka.partitions {
        send(format!("before-{partition}"), partition).await;
    }
    let group = unique("g");
    let first = Consumer::new(&kafka, &group, &[&topic]).expect("first member");
    for _ in 0..kafka.partitions {
        let message = tokio::time::timeout(WAIT, first.recv())
            .await
            .expect("every record within a minute")
            .expect("consumed");
        first.store(&message).expect("stored");
    }

    // A second member joins; the first keeps polling, which runs its part of the rebalance.
    // Once the second has partitions, a new record goes to every partition.
    let second = Consumer::new(&kafka, &group, &[&topic]).expect("second member");
    let mut sent_after = false;
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let first_seen_by_second = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                message = first.recv() => {
                    let message = message.expect("consumed");
                    first.store(&message).expect("stored");
                }
                message = second.recv() => {
                    let message = message.expect("consumed");
                    let event: ActivityEvent =
                        InboundRecord::new(&message).decode().expect("event");
                    return event.source_event_id;
                }
                _ = check.tick(), if !sent_after => {
                    let assigned = second.inner().assignment().expect("assignment").count();
                    if assigned > 0 {
                        for partition in 0..kafka.partitions {
                            send(format!("after-{partition}"), partition).await;
                        }
                        sent_after = true;
                    }
                }
            }
        }
    })
    .await
    .expect("the second member gets partitions and a record within a minute");
    assert!(
        first_seen_by_second.starts_with("after-"),
        "the second member read {first_seen_by_second}, which the first had applied"
    );
}

/// A consumer knows the partitions it has read to their end, empty ones included: the KPI
/// aggregator's `as_of` moves only once every partition is applied or read to its end, and a
/// tenant's records fill one partition of many.
#[tokio::test]
async fn a_consumer_knows_which_partitions_it_has_read_to_their_end() {
    let kafka = kafka_config();
    let topic = topic(&kafka, "drained").await;
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    for n in 1..=2 {
        let mut first_partition = record(&topic, "k", &ping("p", &format!("e{n}")));
        first_partition.partition = Some(0);
        producer.send(&first_partition).await.expect("sent");
    }
    let consumer = Consumer::with_properties(
        &kafka,
        &unique("g"),
        &[&topic],
        &[("enable.partition.eof", "true")],
    )
    .expect("consumer");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut read = 0;
    let mut drained = Vec::new();
    while drained.len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {read} records, drained {drained:?} after a minute"
        );
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            read += 1;
        }
        if read == 2 {
            drained = consumer.drained().await;
            drained.sort();
        }
    }
    let every: Vec<(String, i32)> = (0..3).map(|partition| (topic.clone(), partition)).collect();
    assert_eq!(drained, every);
}
