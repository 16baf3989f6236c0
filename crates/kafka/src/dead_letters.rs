use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::{Delivery, KafkaError, Producer, dlq_topic};

/// Header names a dead-lettered record carries besides its original headers.
pub mod headers {
    pub const ORIGIN_TOPIC: &str = "dlq-origin-topic";
    pub const ORIGIN_PARTITION: &str = "dlq-origin-partition";
    pub const ORIGIN_OFFSET: &str = "dlq-origin-offset";
    pub const ERROR: &str = "dlq-error";
}

/// Moves records that cannot be decoded or applied to the topic's `.dlq` twin, byte for byte,
/// with where they came from and why, so the stream can move on and nothing is lost.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    producer: Producer,
}

impl DeadLetters {
    pub fn new(producer: Producer) -> Self {
        Self { producer }
    }

    pub async fn send(
        &self,
        message: &BorrowedMessage<'_>,
        error: &str,
    ) -> Result<Delivery, KafkaError> {
        let topic = dlq_topic(message.topic());
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut out = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                out = out.insert(header);
            }
        }
        for (key, value) in [
            (headers::ORIGIN_TOPIC, message.topic()),
            (headers::ORIGIN_PARTITION, partition.as_str()),
            (headers::ORIGIN_OFFSET, offset.as_str()),
            (headers::ERROR, error),
        ] {
            out = out.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(out);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        tracing::warn!(
            origin_topic = message.topic(),
            origin_partition = message.partition(),
            origin_offset = message.offset(),
            error,
            "dead-lettering a record"
        );
        metrics::counter!("mentorstream_dead_letters_total", "topic" => message.topic().to_owned())
            .increment(1);
        match self.producer.client().send(record, Timeout::Never).await {
            Ok(delivered) => Ok(Delivery {
                partition: delivered.partition,
                offset: delivered.offset,
            }),
            Err((source, _)) => Err(KafkaError::Delivery { topic, source }),
        }
    }
}
