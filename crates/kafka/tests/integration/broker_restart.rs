//! Acknowledged records survive a crash of the broker: SIGKILL, then a restart on the same
//! storage. A private single-node Kafka, so the shared one is not disturbed.

use std::time::Duration;

use chrono::Utc;
use mentorstream_config::Config;
use mentorstream_kafka::admin::{TopicSpec, ensure_topics};
use mentorstream_kafka::{CloudEvent, Consumer, Message, OutboundRecord, Producer};
use mentorstream_testkit::{KafkaCluster, unique};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn acknowledged_records_survive_a_broker_crash() {
    mentorstream_telemetry::init_for_tests();
    let mut broker = KafkaCluster::single().await;
    let mut kafka = Config::load(None).expect("defaults").kafka;
    kafka.brokers = broker.brokers();
    kafka.partitions = 3;
    let topic = unique("t.restart");
    ensure_topics(&kafka, &[TopicSpec::new(&topic)])
        .await
        .expect("topic");
    let producer = Producer::new(&kafka, WAIT).expect("producer");
    let mut sent = Vec::new();
    for n in 0..20 {
        let payload = format!("record-{n}");
        let record = OutboundRecord {
            topic: topic.clone(),
            partition: None,
            key: format!("key-{}", n % 4).into_bytes(),
            payload: Some(payload.clone().into_bytes()),
            event: CloudEvent {
                id: payload.clone(),
                event_type: "test".into(),
                source: "/tests".into(),
                time: Utc::now(),
            },
        };
        producer.send(&record).await.expect("acknowledged");
        sent.push(payload);
    }
    drop(producer);

    broker.kill(0);
    broker.resume(0).await;

    let consumer = Consumer::new(&kafka, &unique("g"), &[&topic]).expect("consumer");
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records after the restart")
            .expect("consumed");
        let payload = message.payload().expect("payload");
        received.push(String::from_utf8(payload.to_vec()).expect("utf-8"));
    }
    received.sort();
    sent.sort();
    assert_eq!(received, sent);
}
