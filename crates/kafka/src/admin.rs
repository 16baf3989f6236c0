//! Topic provisioning: services create the topics they use when missing, so a fresh broker
//! works without a separate step. Production clusters provision them declaratively instead
//! (Strimzi KafkaTopic, `mentorstream admin create-topics`); creation then finds them present.
//!
//! Every topic's policy is decided here, once: the activity and mentorship topics are the
//! record KPIs are rebuilt from (`mentorstream kpi rebuild` replays them from the start), so
//! they keep everything; KPI updates keep the latest record per key; signals and dead letters
//! age out.

use mentorstream_config::{KafkaConfig, Topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, client_config, dlq_topic};

/// How long signals and dead letters are kept: long enough for a consumer that was down
/// for a long weekend, or for an operator to look at a poison record.
pub const AGING_RETENTION_MS: i64 = 14 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub retention: Retention,
}

/// What a topic keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Every record, forever (`retention.ms=-1`): the topics KPIs are rebuilt from.
    Everything,
    /// The latest record per key (`cleanup.policy=compact`).
    LatestPerKey,
    /// Records younger than this many milliseconds.
    Milliseconds(i64),
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Everything => f.write_str("keeps every record"),
            Self::LatestPerKey => f.write_str("compacted"),
            Self::Milliseconds(ms) => write!(f, "keeps {} h", ms / 3_600_000),
        }
    }
}

impl TopicSpec {
    /// A topic of records kept [`AGING_RETENTION_MS`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            retention: Retention::Milliseconds(AGING_RETENTION_MS),
        }
    }

    /// A topic KPIs are rebuilt from: it keeps every record.
    pub fn source_of_truth(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            retention: Retention::Everything,
        }
    }

    pub fn compacted(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            retention: Retention::LatestPerKey,
        }
    }

    /// The topic configuration that gives this retention.
    pub fn configs(&self) -> Vec<(&'static str, String)> {
        match self.retention {
            Retention::Everything => vec![("retention.ms", "-1".into())],
            Retention::LatestPerKey => vec![("cleanup.policy", "compact".into())],
            Retention::Milliseconds(ms) => vec![("retention.ms", ms.to_string())],
        }
    }
}

/// Every topic of the system, with its policy (their `.dlq` twins come with them).
pub fn all_topics(topics: &Topics) -> Vec<TopicSpec> {
    vec![
        TopicSpec::source_of_truth(&topics.activity),
        TopicSpec::source_of_truth(&topics.mentorship),
        TopicSpec::compacted(&topics.kpi_updates),
        TopicSpec::new(&topics.kpi_signals),
    ]
}

/// Creates every topic of `specs` and its `.dlq` twin that does not exist yet.
pub async fn ensure_topics(config: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let with_dead_letters: Vec<TopicSpec> = specs
        .iter()
        .flat_map(|spec| [spec.clone(), TopicSpec::new(dlq_topic(&spec.name))])
        .collect();
    create_topics(config, &with_dead_letters).await
}

/// Creates every topic of `specs` that does not exist yet, without dead-letter twins (for
/// topics nobody consumes as a service: a tenant's KPI updates).
pub async fn create_topics(config: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(config)
            .create()
            .map_err(|source| KafkaError::Client {
                what: "admin client",
                source,
            })?;
    let with_configs: Vec<(TopicSpec, Vec<(&str, String)>)> = specs
        .iter()
        .cloned()
        .map(|spec| {
            let configs = spec.configs();
            (spec, configs)
        })
        .collect();
    let topics: Vec<NewTopic<'_>> = with_configs
        .iter()
        .map(|(spec, configs)| {
            let replication = TopicReplication::Fixed(config.replication_factor);
            configs.iter().fold(
                NewTopic::new(&spec.name, config.partitions, replication),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topics_kpis_are_rebuilt_from_keep_every_record() {
        let topics = Topics {
            activity: "a".into(),
            mentorship: "m".into(),
            kpi_updates: "u".into(),
            kpi_signals: "s".into(),
            kpi_updates_per_tenant: false,
        };
        let configs: Vec<(String, Vec<(&str, String)>)> = all_topics(&topics)
            .into_iter()
            .map(|spec| (spec.name.clone(), spec.configs()))
            .collect();
        assert_eq!(
            configs,
            [
                ("a".into(), vec![("retention.ms", "-1".into())]),
                ("m".into(), vec![("retention.ms", "-1".into())]),
                ("u".into(), vec![("cleanup.policy", "compact".into())]),
                ("s".into(), vec![("retention.ms", "1209600000".into())]),
            ]
        );
    }
}
