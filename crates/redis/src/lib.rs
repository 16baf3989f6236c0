//! The Redis connection the services share.
//!
//! [`connect`] builds a multiplexed, self-reconnecting connection from [`RedisConfig`], to one
//! Redis or to a Redis Cluster (`redis.cluster`): it does not need Redis to be up when the
//! service starts, and every command fails within the response timeout instead of hanging when
//! Redis is down, so callers can answer UNAVAILABLE and let the client retry. AUTH travels in
//! the URL (`redis://user:password@host:port`).
//!
//! On a cluster a pipeline must stay within one hash slot; [`Connection::each`] runs commands
//! for many slots in one round trip on a single Redis and concurrently, one per slot's node, on
//! a cluster.
//!
//! [`KeySpace`] builds keys under the configured prefix, so that several deployments or tests
//! share one Redis without seeing each other's keys.

use std::sync::Arc;
use std::time::Duration;

use mentorstream_config::{ExposeSecret, RedisConfig};
use redis::RedisFuture;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

pub use redis::{Cmd, ErrorKind, Pipeline, RedisError, Script, ServerErrorKind, Value, cmd, pipe};

/// A value of [`Connection::each`] as a Rust type.
pub fn from_value<T: redis::FromRedisValue>(value: Value) -> Result<T, RedisError> {
    redis::from_redis_value(value).map_err(RedisError::from)
}

/// Whether Redis answered that it does not know a script (restarted, or a new primary).
pub fn is_no_script(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

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

/// A cheap-to-clone handle; clones share one multiplexed connection (per node on a cluster).
#[derive(Clone)]
pub struct Connection {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Single(ConnectionManager),
    /// Connected on first use, and again after a failed attempt; the cluster connection
    /// itself follows slot moves and reconnects to nodes.
    Cluster(Arc<LazyCluster>),
}

struct LazyCluster {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
        };
        f.debug_struct("Connection").field("kind", &kind).finish()
    }
}

/// A connection to the configured Redis, established on first use.
pub fn connect(config: &RedisConfig) -> Result<Connection, ConnectError> {
    let url = config.url.expose_secret();
    let target = if config.cluster {
        let client = ClusterClient::builder([url])
            .response_timeout(RESPONSE_TIMEOUT)
            .connection_timeout(CONNECTION_TIMEOUT)
            .retries(2)
            .build()
            .map_err(ConnectError::InvalidUrl)?;
        Target::Cluster(Arc::new(LazyCluster {
            client,
            connection: OnceCell::new(),
        }))
    } else {
        let client = redis::Client::open(url).map_err(ConnectError::InvalidUrl)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        Target::Single(
            ConnectionManager::new_lazy_with_config(client, manager_config)
                .map_err(ConnectError::Setup)?,
        )
    };
    Ok(Connection { target })
}

impl Connection {
    /// Takes the lease `key` for `ttl` unless someone holds it (`SET key holder NX PX`):
    /// replicas that share a periodic job each ask every round, and only the one that gets the
    /// lease does the round. A holder that dies frees it when `ttl` runs out.
    pub async fn take_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut self.clone())
            .await?;
        Ok(taken.is_some())
    }

    /// Gives the lease `key` back if `holder` still holds it (compare and delete, in one
    /// script): after a failed round, so another replica may try the next one at once.
    pub async fn release_lease(&self, key: &str, holder: &str) -> Result<bool, RedisError> {
        let released: i64 = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end \
             return 0",
        )
        .key(key)
        .arg(holder)
        .invoke_async(&mut self.clone())
        .await?;
        Ok(released == 1)
    }

    /// Runs `commands`, each of which touches one hash slot, and answers in their order: one
    /// pipeline on a single Redis; on a cluster every command goes to its slot's node, all at
    /// once. Fails with the first error.
    pub async fn each(&self, commands: Vec<Cmd>) -> Result<Vec<Value>, RedisError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        match &self.target {
            Target::Single(_) => {
                let mut pipeline = pipe();
                for command in commands {
                    pipeline.add_command(command);
                }
                pipeline.query_async(&mut self.clone()).await
            }
            Target::Cluster(_) => {
                let calls = commands.iter().map(|command| {
                    let mut connection = self.clone();
                    async move { command.query_async::<Value>(&mut connection).await }
                });
                futures::future::try_join_all(calls).await
            }
        }
    }
}

impl LazyCluster {
    async fn connection(&self) -> Result<ClusterConnection, RedisError> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

/// Every call is measured on `/metrics`: `mentorstream_redis_call_seconds{kind}` (a histogram;
/// `kind` is `command` or `pipeline`, a script call being a command) and
/// `mentorstream_redis_unanswered_total{kind}` (calls Redis did not answer: down, a timeout,
/// the connection lost; not the error replies callers handle).
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, command: &'a Cmd) -> RedisFuture<'a, Value> {
        let call = match &mut self.target {
            Target::Single(connection) => connection.req_packed_command(command),
            Target::Cluster(cluster) => Box::pin(async move {
                cluster
                    .connection()
                    .await?
                    .req_packed_command(command)
                    .await
            }),
        };
        timed("command", call)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let call = match &mut self.target {
            Target::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Target::Cluster(cluster) => Box::pin(async move {
                cluster
                    .connection()
                    .await?
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        };
        timed("pipeline", call)
    }

    fn get_db(&self) -> i64 {
        match &self.target {
            Target::Single(connection) => connection.get_db(),
            Target::Cluster(_) => 0,
        }
    }
}

/// Whether Redis gave no answer (down, unreachable, too slow, the connection lost, a cluster
/// without a node for the slot), rather
/// than an answer the caller handles (an unknown script, a fenced write refused).
fn unanswered(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                )
        )
}

/// `call`, its duration and whether Redis failed to answer recorded under `kind`.
fn timed<'a, T: Send + 'a>(kind: &'static str, call: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::histogram!("mentorstream_redis_call_seconds", "kind" => kind)
            .record(started.elapsed().as_secs_f64());
        if result.as_ref().is_err_and(unanswered) {
            metrics::counter!("mentorstream_redis_unanswered_total", "kind" => kind).increment(1);
        }
        result
    })
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
