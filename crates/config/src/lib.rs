//! Configuration of every Mentorstream process, typed and validated at start.
//!
//! Layers, later ones winning: the embedded `defaults.toml` (the local stack), an optional
//! file, then environment variables `MENTORSTREAM__SECTION__KEY` (for example
//! `MENTORSTREAM__KAFKA__BROKERS=kafka:9092`). Secrets (database URLs, Redis URL, Kafka
//! passwords) are held in [`SecretString`] or redacted, so printing a config never shows them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("defaults.toml");
const ENV_PREFIX: &str = "MENTORSTREAM__";
/// `MENTORSTREAM_KAFKA_PROPERTY_SASL_PASSWORD=…` sets the librdkafka property `sasl.password`:
/// the `__` nesting of [`ENV_PREFIX`] cannot spell a dotted key, and secrets such as SASL
/// passwords come from the environment (a Kubernetes Secret), not from a file.
const KAFKA_PROPERTY_ENV_PREFIX: &str = "MENTORSTREAM_KAFKA_PROPERTY_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: `{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub telemetry: TelemetryConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub tls: TlsConfig,
    pub shutdown: ShutdownConfig,
    pub ingest: IngestConfig,
    pub mentorship: MentorshipConfig,
    pub kpi: KpiConfig,
    pub notifier: NotifierConfig,
    pub actions: ActionsConfig,
    pub secrets: SecretsConfig,
}

/// Keys that seal tenants' channel secrets at rest (mentorstream_tenancy::sealed):
/// `id:base64-of-32-bytes`, comma-separated, the first sealing, all opening. Empty: stored in
/// clear.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    pub keys: SecretString,
}

/// Chat-bot buttons: the key that signs their action tokens (the notifier issues them,
/// mentorship redeems them, so both need the same key), and how long they stay valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// At least 32 bytes; empty turns buttons off. Changing it invalidates every token
    /// already sent.
    pub signing_key: SecretString,
    /// How long a feedback request's rating buttons work. A reminder's buttons work until the
    /// session starts.
    #[serde(with = "humantime_serde")]
    pub rating_valid_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_filter: String,
    /// Empty: no trace export (trace context is still propagated).
    pub otlp_endpoint: String,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub topics: Topics,
    /// Extra librdkafka client properties.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let secret = ["password", "secret", "key.pem", "token"]
                    .iter()
                    .any(|word| key.contains(word));
                (key.as_str(), if secret { "[REDACTED]" } else { value })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("topics", &self.topics)
            .field("properties", &properties)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topics {
    pub activity: String,
    pub mentorship: String,
    pub kpi_updates: String,
    pub kpi_signals: String,
    /// KPI updates go to one topic per tenant, `<kpi_updates>.<tenant id>`, so that Kafka ACLs
    /// can give each tenant's subscribers its own topic (docs/kpi-topic.md).
    pub kpi_updates_per_tenant: bool,
}

impl Topics {
    /// The topic that carries `tenant_id`'s KPI updates.
    pub fn kpi_updates_of(&self, tenant_id: &str) -> String {
        if self.kpi_updates_per_tenant {
            format!("{}.{tenant_id}", self.kpi_updates)
        } else {
            self.kpi_updates.clone()
        }
    }

    /// Whether `topic` is one tenant's KPI updates topic (`<kpi_updates>.<tenant id>`; tenant
    /// ids are lowercase hex, so the shared topic's `.dlq` twin is not one).
    pub fn is_tenant_kpi_updates(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.kpi_updates.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|id| {
                !id.is_empty()
                    && id
                        .bytes()
                        .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
            })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: SecretString,
    /// Prefix of every key, so that tenants of one Redis (tests, rebuilds) stay apart.
    pub key_prefix: String,
    /// `url` names one node of a Redis Cluster; the others are discovered from it.
    pub cluster: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The control database (tenants, API keys).
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub enabled: bool,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    pub client_ca_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEndpoints {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// How long Kafka may take to acknowledge a record before the caller gets UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How long a request waits for an event that another request is publishing right now
    /// before it answers UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub claim_wait: Duration,
    /// Events of one IngestStream accepted from the client but not yet acknowledged to it;
    /// when reached, the stream stops reading (HTTP/2 flow control pushes back on the client).
    pub stream_max_in_flight: usize,
}

impl IngestConfig {
    pub fn endpoints(&self) -> ServiceEndpoints {
        ServiceEndpoints {
            grpc_listen: self.grpc_listen,
            admin_listen: self.admin_listen,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiConfig {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// How often the aggregator looks for partners who became inactive.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How often the aggregator tombstones the keys of kpi.updates.v1 whose bucket expired.
    #[serde(with = "humantime_serde")]
    pub tombstone_interval: Duration,
    /// Changes of one KPI key within this interval make one record on kpi.updates.v1.
    #[serde(with = "humantime_serde")]
    pub updates_interval: Duration,
}

impl KpiConfig {
    pub fn endpoints(&self) -> ServiceEndpoints {
        ServiceEndpoints {
            grpc_listen: self.grpc_listen,
            admin_listen: self.admin_listen,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MentorshipConfig {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The service's own database.
    pub database_url: SecretString,
    /// A session not completed by its end plus this becomes MISSED.
    #[serde(with = "humantime_serde")]
    pub missed_grace: Duration,
    /// How often sessions past their grace are looked for.
    #[serde(with = "humantime_serde")]
    pub missed_check_interval: Duration,
    /// How long a mutation's answer is kept for a retry with its `request_id`.
    #[serde(with = "humantime_serde")]
    pub request_retention: Duration,
    /// How long a relayed outbox event is kept after Kafka acknowledged it.
    #[serde(with = "humantime_serde")]
    pub outbox_retention: Duration,
    /// How often what outlived its retention is deleted.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// How often newcomers' milestones are checked for at-risk episodes (docs/impact.md).
    #[serde(with = "humantime_serde")]
    pub newcomer_check_interval: Duration,
    /// Where KpiService answers, for live goal progress and dashboards (`http://host:port`).
    pub kpi_endpoint: String,
    /// Where browsers reach the dashboard pages of this service (docs/dashboards.md).
    pub dashboard_url: String,
    /// How long a dashboard link works when its request does not say.
    #[serde(with = "humantime_serde")]
    pub dashboard_link_valid_for: Duration,
}

impl MentorshipConfig {
    pub fn endpoints(&self) -> ServiceEndpoints {
        ServiceEndpoints {
            grpc_listen: self.grpc_listen,
            admin_listen: self.admin_listen,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The service's own database.
    pub database_url: SecretString,
    /// Where KpiService answers, for the weekly digests (`http://host:port`).
    pub kpi_endpoint: String,
    /// How often due notifications and digests are looked for.
    #[serde(with = "humantime_serde")]
    pub dispatch_interval: Duration,
    /// Attempts of one notification before it is recorded as failed.
    pub max_attempts: u32,
    /// The first retry waits about this long; each next one twice as long (with jitter).
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// No retry waits longer than this.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long the gateway or the SMTP server may take to answer one attempt.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long a notification that reached its end (delivered, failed, suppressed,
    /// cancelled) is kept with its attempts; events older than this plan none.
    #[serde(with = "humantime_serde")]
    pub notification_retention: Duration,
    /// How long a mutation's answer is kept for a retry with its `request_id`.
    #[serde(with = "humantime_serde")]
    pub request_retention: Duration,
    /// How often what outlived its retention is deleted.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
}

impl NotifierConfig {
    pub fn endpoints(&self) -> ServiceEndpoints {
        ServiceEndpoints {
            grpc_listen: self.grpc_listen,
            admin_listen: self.admin_listen,
        }
    }
}

impl Config {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&Self::figment(file)?)
    }

    /// The layered sources, for callers (tests) that add their own overrides on top.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        Ok(figment
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(Serialized::default(
                "kafka.properties",
                kafka_properties_from_env(std::env::vars()),
            )))
    }

    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one broker"));
        }
        if !(1..=1024).contains(&self.kafka.partitions) {
            return Err(invalid(
                "kafka.partitions",
                format!("must be between 1 and 1024, got {}", self.kafka.partitions),
            ));
        }
        if self.kafka.replication_factor < 1 {
            return Err(invalid("kafka.replication_factor", "must be at least 1"));
        }
        let redis_url = self.redis.url.expose_secret();
        if !(redis_url.starts_with("redis://") || redis_url.starts_with("rediss://")) {
            return Err(invalid(
                "redis.url",
                "must start with redis:// or rediss://",
            ));
        }
        for (field, url) in [
            ("postgres.url", &self.postgres.url),
            ("mentorship.database_url", &self.mentorship.database_url),
            ("notifier.database_url", &self.notifier.database_url),
        ] {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(field, "must start with postgres://"));
            }
        }
        if self.notifier.max_attempts == 0 {
            return Err(invalid("notifier.max_attempts", "must be at least 1"));
        }
        if self.notifier.retry_base.is_zero() || self.notifier.retry_base > self.notifier.retry_max
        {
            return Err(invalid(
                "notifier.retry_base",
                "must be more than zero and at most notifier.retry_max",
            ));
        }
        if self.postgres.max_connections == 0 {
            return Err(invalid("postgres.max_connections", "must be at least 1"));
        }
        if self.tls.enabled {
            if self.tls.cert_path.as_os_str().is_empty() {
                return Err(invalid(
                    "tls.cert_path",
                    "is required when tls.enabled is true",
                ));
            }
            if self.tls.key_path.as_os_str().is_empty() {
                return Err(invalid(
                    "tls.key_path",
                    "is required when tls.enabled is true",
                ));
            }
        }
        if self.ingest.delivery_timeout < Duration::from_secs(1) {
            return Err(invalid("ingest.delivery_timeout", "must be at least 1s"));
        }
        if !(1..=1_000_000).contains(&self.ingest.stream_max_in_flight) {
            return Err(invalid(
                "ingest.stream_max_in_flight",
                format!(
                    "must be between 1 and 1000000, got {}",
                    self.ingest.stream_max_in_flight
                ),
            ));
        }
        if self.shutdown.grace_period.is_zero() {
            return Err(invalid("shutdown.grace_period", "must be longer than zero"));
        }
        for (field, interval) in [
            ("kpi.sweep_interval", self.kpi.sweep_interval),
            ("kpi.updates_interval", self.kpi.updates_interval),
            ("kpi.tombstone_interval", self.kpi.tombstone_interval),
        ] {
            if interval.is_zero() {
                return Err(invalid(field, "must be longer than zero"));
            }
        }
        Ok(())
    }
}

/// The librdkafka properties named by `MENTORSTREAM_KAFKA_PROPERTY_<NAME>` variables: NAME in
/// lower case with `_` for `.` (librdkafka's property names have no `_`).
fn kafka_properties_from_env(
    variables: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    variables
        .filter_map(|(name, value)| {
            let property = name.strip_prefix(KAFKA_PROPERTY_ENV_PREFIX)?;
            Some((property.to_ascii_lowercase().replace('_', "."), value))
        })
        .collect()
}

#[cfg(test)]
// figment's Jail fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        let path = file.map(|name| jail.directory().join(name));
        Config::load(path.as_deref())
    }

    #[test]
    fn defaults_describe_the_local_stack() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, None).expect("defaults are valid");
            assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
            assert_eq!(config.ingest.grpc_listen.port(), 50051);
            assert_eq!(config.notifier.admin_listen.port(), 9104);
            assert_eq!(config.shutdown.grace_period, Duration::from_secs(25));
            assert_eq!(config.telemetry.log_format, LogFormat::Human);
            assert_eq!(config.kpi.tombstone_interval, Duration::from_secs(3600));
            assert!(
                config
                    .kafka
                    .topics
                    .is_tenant_kpi_updates("mentorstream.kpi.updates.v1.0193c2ab")
            );
            for other in [
                "mentorstream.kpi.updates.v1",
                "mentorstream.kpi.updates.v1.",
                "mentorstream.kpi.updates.v1.dlq",
                "mentorstream.kpi.updates.v1.0193c2ab.dlq",
                "mentorstream.kpi.updates.v10193",
            ] {
                assert!(!config.kafka.topics.is_tenant_kpi_updates(other), "{other}");
            }
            Ok(())
        });
    }

    #[test]
    fn file_then_environment_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "ms.toml",
                "[kafka]\nbrokers = \"file:9092\"\npartitions = 3\n[telemetry]\nlog_format = \"json\"\n",
            )?;
            jail.set_env("MENTORSTREAM__KAFKA__BROKERS", "env:9092");
            jail.set_env("MENTORSTREAM__SHUTDOWN__GRACE_PERIOD", "3s");
            let config = load_in(jail, Some("ms.toml")).expect("valid");
            assert_eq!(config.kafka.brokers, "env:9092");
            assert_eq!(config.kafka.partitions, 3);
            assert_eq!(config.telemetry.log_format, LogFormat::Json);
            assert_eq!(config.shutdown.grace_period, Duration::from_secs(3));
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_field() {
        Jail::expect_with(|jail| {
            jail.set_env("MENTORSTREAM__KAFKA__PARTITIONS", "0");
            let err = load_in(jail, None).expect_err("zero partitions");
            assert_eq!(
                err.to_string(),
                "invalid configuration: `kafka.partitions` must be between 1 and 1024, got 0"
            );
            jail.set_env("MENTORSTREAM__KAFKA__PARTITIONS", "6");
            jail.set_env("MENTORSTREAM__KPI__TOMBSTONE_INTERVAL", "0s");
            let err = load_in(jail, None).expect_err("zero interval");
            assert_eq!(
                err.to_string(),
                "invalid configuration: `kpi.tombstone_interval` must be longer than zero"
            );
            jail.set_env("MENTORSTREAM__KPI__TOMBSTONE_INTERVAL", "1h");
            jail.set_env("MENTORSTREAM__TLS__ENABLED", "true");
            let err = load_in(jail, None).expect_err("tls without cert");
            assert_eq!(
                err.to_string(),
                "invalid configuration: `tls.cert_path` is required when tls.enabled is true"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("MENTORSTREAM__KAFKA__BROKRES", "typo:9092");
            let err = load_in(jail, None).expect_err("unknown key");
            assert!(err.to_string().contains("brokres"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            let err = load_in(jail, Some("absent.toml")).expect_err("missing file");
            assert!(matches!(err, ConfigError::MissingFile(_)), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_are_never_printed() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "MENTORSTREAM__POSTGRES__URL",
                "postgres://u:hunter2@db:5432/ms",
            );
            jail.create_file(
                "ms.toml",
                "[kafka.properties]\n\"sasl.password\" = \"hunter3\"\n\"sasl.username\" = \"svc\"\n",
            )?;
            jail.set_env("MENTORSTREAM_KAFKA_PROPERTY_SSL_KEY_PASSWORD", "hunter4");
            let config = load_in(jail, Some("ms.toml")).expect("valid");
            assert_eq!(
                config.kafka.properties.keys().collect::<Vec<_>>(),
                ["sasl.password", "sasl.username", "ssl.key.password"]
            );
            assert_eq!(config.kafka.properties["ssl.key.password"], "hunter4");
            let printed = format!("{config:?}");
            assert!(!printed.contains("hunter4"), "{printed}");
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(!printed.contains("hunter3"), "{printed}");
            assert!(printed.contains("svc"), "{printed}");
            Ok(())
        });
    }
}
