//! The Redis connection the services share.
//!
//! [`connect`] builds a multiplexed, self-reconnecting connection from [`RedisConfig`]: it does
//! not need Redis to be up when the service starts, and every command fails within the response
//! timeout instead of hanging when Redis is down, so callers can answer UNAVAILABLE and let the
//! client retry. AUTH travels in the URL (`redis://user:password@host:port`).
//!
//! [`KeySpace`] builds keys under the configured prefix, so that several deployments or tests
//! share one Redis without seeing each other's keys.

use std::time::Duration;

use mentorstream_config::{ExposeSecret, RedisConfig};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use redis::{Cmd, ErrorKind, Pipeline, RedisError, Script, ServerErrorKind, Value, cmd, pipe};

/// Whether Redis answered that it does not know a script (restarted, or a new primary).
pub fn is_no_script(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A cheap-to-clone handle; clones share one multiplexed connection.
pub type Connection = ConnectionManager;

/// How long one command may wait for its answer before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid redis.url: {0}")]
    InvalidUrl(RedisError),
    #[error("cannot set up the Redis connection: {0}")]
    Setup(RedisError),
}

/// A connection to the configured Redis, established on first use.
pub fn connect(config: &RedisConfig) -> Result<Connection, ConnectError> {
    let client =
        redis::Client::open(config.url.expose_secret()).map_err(ConnectError::InvalidUrl)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, manager_config).map_err(ConnectError::Setup)
}

/// Keys of one component under the configured prefix: `<prefix>:<component>:<rest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    root: String,
}

impl KeySpace {
    pub fn new(prefix: &str, component: &str) -> Self {
        Self {
            root: format!("{prefix}:{component}:"),
        }
    }

    /// `<prefix>:<component>:<part>:<part>...`
    pub fn key(&self, parts: &[&str]) -> String {
        let length = self.root.len() + parts.iter().map(|part| part.len() + 1).sum::<usize>();
        let mut key = String::with_capacity(length);
        key.push_str(&self.root);
        for (position, part) in parts.iter().enumerate() {
            if position > 0 {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    /// A Redis Cluster hash tag `{<prefix>:<component>:<part>:<part>...}`: every key that starts
    /// with it lives in the same slot, so one Lua call may touch all of them.
    pub fn hash_tag(&self, parts: &[&str]) -> String {
        format!("{{{}}}", self.key(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix_and_component() {
        let keys = KeySpace::new("ms-test", "ingest");
        assert_eq!(
            keys.key(&["dedup", "t1", "ab"]),
            "ms-test:ingest:dedup:t1:ab"
        );
        assert_eq!(keys.key(&[]), "ms-test:ingest:");
        assert_eq!(
            keys.hash_tag(&["t1", "p", "alice"]),
            "{ms-test:ingest:t1:p:alice}"
        );
    }
}
