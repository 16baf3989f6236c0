//! Topic provisioning: services create the topics they use when missing, so a fresh broker
//! works without a separate step. Production clusters provision them declaratively instead
//! (Strimzi KafkaTopic); creation then finds them present.

use mentorstream_config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, client_config, dlq_topic};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// Compacted topics keep the latest record per key (KPI updates).
    pub compacted: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            compacted: false,
        }
    }

    pub fn compacted(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            compacted: true,
        }
    }
}

/// Creates every topic of `specs` and its `.dlq` twin that does not exist yet.
pub async fn ensure_topics(config: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(config)
            .create()
            .map_err(|source| KafkaError::Client {
                what: "admin client",
                source,
            })?;
    let dead_letter_names: Vec<String> = specs.iter().map(|spec| dlq_topic(&spec.name)).collect();
    let mut topics = Vec::with_capacity(specs.len() * 2);
    for (spec, dlq) in specs.iter().zip(&dead_letter_names) {
        let replication = || TopicReplication::Fixed(config.replication_factor);
        let topic = NewTopic::new(&spec.name, config.partitions, replication());
        topics.push(if spec.compacted {
            topic.set("cleanup.policy", "compact")
        } else {
            topic
        });
        topics.push(NewTopic::new(dlq, config.partitions, replication()));
    }
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(|source| KafkaError::Client {
            what: "topics",
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
