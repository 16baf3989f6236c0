//! Kafka plumbing shared by the services.
//!
//! - [`Producer`]: idempotent, `acks=all`; a send completes only when the broker acknowledged
//!   the record, so callers can answer "accepted" honestly.
//! - [`Consumer`]: offsets are stored by the application after it applied a record and
//!   committed from the store, so a crash redelivers rather than loses.
//! - [`envelope`]: protobuf payload with CloudEvents binary-mode headers and W3C trace context.
//! - [`DeadLetters`]: poison records go to `<topic>.dlq` with their origin and the error.
//! - [`admin::ensure_topics`]: creates the topics (and their dead-letter twins) when missing.
//! - [`snapshot::read_to_end`]: a whole topic as it is now, for bounded readers.

pub mod admin;
mod consumer;
mod dead_letters;
pub mod envelope;
mod partition;
mod producer;
pub mod snapshot;

use mentorstream_config::KafkaConfig;
use rdkafka::ClientConfig;

pub use consumer::{Consumer, HandleError, RecordHandler, run_consumer};
pub use dead_letters::{DeadLetters, headers as dlq_headers};
pub use envelope::{CloudEvent, InboundRecord, OutboundRecord};
pub use partition::tenant_partition;
pub use producer::{Delivery, PendingDelivery, Producer};
pub use rdkafka::message::{BorrowedMessage, Headers, Message};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka did not acknowledge the record for {topic}: {source}")]
    Delivery {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka consumer failed: {0}")]
    Consume(rdkafka::error::KafkaError),
    #[error("cannot commit offsets of group {group}: {source}")]
    Commit {
        group: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
}

/// The librdkafka client configuration of `config`: brokers plus the pass-through properties
/// (SASL, SSL, ...).
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
}

/// The dead-letter twin of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}
