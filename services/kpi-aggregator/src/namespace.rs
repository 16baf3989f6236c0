//! Generations of the KPI state: each is a key namespace of its own, with its own consumer
//! group, and one Redis key names the generation every aggregator reads and writes.
//!
//! A rebuild ([`crate::rebuild`]) replays the topics from the start into a fresh generation and
//! then activates it; running aggregators notice within [`POLL`], stop their consumers, and
//! continue in the new generation from where the rebuild committed, so no record is skipped and
//! the offset watermarks of the new generation keep every effect exactly once.

use std::time::Duration;

use mentorstream_config::Config;
use mentorstream_redis::{Connection, KeySpace, RedisError, cmd};

use crate::progress::Progress;
use crate::store::Store;

/// The generation of a deployment that was never rebuilt.
pub const INITIAL: &str = "kpi";

/// How often a running aggregator checks which generation is active.
pub const POLL: Duration = Duration::from_secs(2);

/// The KPI state of one generation: where counters are, and how far they are applied.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub generation: String,
    pub store: Store,
    pub progress: Progress,
}

impl Namespace {
    /// The namespace of `generation` (its store publishes no signals and watches no targets
    /// until given a sink and a source).
    pub fn new(config: &Config, connection: &Connection, generation: &str) -> Self {
        let keys = KeySpace::new(&config.redis.key_prefix, generation);
        Self {
            generation: generation.to_owned(),
            store: Store::new(connection.clone(), keys.clone()),
            progress: Progress::new(
                connection.clone(),
                keys.key(&["progress"]),
                vec![
                    config.kafka.topics.activity.clone(),
                    config.kafka.topics.mentorship.clone(),
                ],
                config.kafka.partitions,
            ),
        }
    }

    /// The consumer group of this generation: a fresh generation reads from the start.
    pub fn consumer_group(&self, config: &Config) -> String {
        format!("{}-{}", config.redis.key_prefix, self.generation)
    }
}

/// Which generation is active.
#[derive(Debug, Clone)]
pub struct Generations {
    connection: Connection,
    key: String,
}

impl Generations {
    pub fn new(config: &Config, connection: Connection) -> Self {
        Self {
            connection,
            key: format!("{}:kpi-active", config.redis.key_prefix),
        }
    }

    pub async fn active(&self) -> Result<String, RedisError> {
        let active: Option<String> = cmd("GET")
            .arg(&self.key)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(active.unwrap_or_else(|| INITIAL.to_owned()))
    }

    pub async fn activate(&self, generation: &str) -> Result<(), RedisError> {
        cmd("SET")
            .arg(&self.key)
            .arg(generation)
            .query_async(&mut self.connection.clone())
            .await
    }
}

/// A name for a new generation, distinct from every earlier one.
pub fn next_generation() -> String {
    format!("{INITIAL}.{}", chrono::Utc::now().timestamp_millis())
}
