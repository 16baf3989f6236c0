//! Apache Kafka brokers of one test's own: a single node for tests that stop the broker, and a
//! three-node KRaft cluster (replication factor 3, `min.insync.replicas` 2) for the fault
//! tests, on a reserved loopback address ([`Host`]), with their state in a temporary
//! directory. Every node runs through `deploy/local/kafka/node.sh`, from the jars
//! `deploy/local/stack.sh up` fetched, as the local stack's broker does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use crate::host::{Host, listening_within};

const BROKER_PORT: u16 = 19_092;
/// Node `i` listens on `BROKER_PORT + 10 i` (clients) and the next port (controllers).
const PORT_STEP: u16 = 10;

/// A Kafka cluster of one test's own. Its nodes are killed when it is dropped.
#[derive(Debug)]
pub struct KafkaCluster {
    host: Host,
    directory: tempfile::TempDir,
    nodes: Vec<Option<Child>>,
}

impl KafkaCluster {
    /// One combined broker and controller.
    pub async fn single() -> Self {
        Self::start(1).await
    }

    /// Three combined brokers and controllers; topics get 3 replicas and need 2 in sync.
    pub async fn three() -> Self {
        Self::start(3).await
    }

    async fn start(size: u16) -> Self {
        let host = Host::reserve();
        let directory = tempfile::tempdir().expect("temporary directory");
        let cluster_id = random_cluster_id();
        for node in 0..size {
            let dir = directory.path().join(format!("node{}", node + 1));
            std::fs::create_dir(&dir).expect("node directory");
            std::fs::write(dir.join("cluster.id"), &cluster_id).expect("cluster.id");
            std::fs::write(
                dir.join("server.properties"),
                properties(&host, &dir, node, size),
            )
            .expect("server.properties");
        }
        let mut cluster = Self {
            host,
            directory,
            nodes: (0..size).map(|_| None).collect(),
        };
        for node in 0..cluster.nodes.len() {
            cluster.spawn(node);
        }
        cluster.wait_until_serving().await;
        cluster
    }

    /// `bootstrap.servers` of the cluster.
    pub fn brokers(&self) -> String {
        (0..self.nodes.len())
            .map(|node| self.address(node).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `base` pointed at this cluster, with its replication factor.
    pub fn config(
        &self,
        base: &mentorstream_config::KafkaConfig,
    ) -> mentorstream_config::KafkaConfig {
        mentorstream_config::KafkaConfig {
            brokers: self.brokers(),
            replication_factor: i32::try_from(self.nodes.len()).expect("small"),
            ..base.clone()
        }
    }

    /// The log of node `node` (0-based), for a failing test to show.
    pub fn log_path(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("server.log")
    }

    /// The node (0-based) that leads `partition` of `topic` now.
    pub fn leader_of(&self, topic: &str, partition: i32) -> usize {
        let consumer = metadata_client(&self.brokers());
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("topic metadata");
        let leader = metadata.topics()[0]
            .partitions()
            .iter()
            .find(|candidate| candidate.id() == partition)
            .unwrap_or_else(|| panic!("{topic} has no partition {partition}"))
            .leader();
        usize::try_from(leader - 1).expect("node ids start at 1")
    }

    /// SIGKILL to node `node` (0-based), and wait until it is gone.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut process) = self.nodes[node].take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts node `node` again on its address and data, and waits until the cluster has all
    /// its brokers again.
    pub async fn resume(&mut self, node: usize) {
        assert!(self.nodes[node].is_none(), "node {node} is running");
        self.spawn(node);
        self.wait_until_serving().await;
    }

    fn spawn(&mut self, node: usize) {
        let dir = self.node_dir(node);
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stdout.log"))
            .expect("stdout log");
        let process = Command::new(node_script())
            .arg(&dir)
            .env("MENTORSTREAM_KAFKA_HEAP", "256m")
            // Short-lived JVMs: quick compilation over peak speed.
            .env("MENTORSTREAM_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")
            .stdout(stdout.try_clone().expect("log"))
            .stderr(stdout)
            .spawn()
            .expect("start a Kafka node (make stack-up fetches Kafka)");
        self.nodes[node] = Some(process);
    }

    /// Every node's client port accepts connections, and the metadata lists every broker.
    async fn wait_until_serving(&mut self) {
        for node in 0..self.nodes.len() {
            let address = self.address(node);
            if !listening_within(address, Duration::from_secs(90)).await {
                let exited = self.nodes[node]
                    .as_mut()
                    .and_then(|process| process.try_wait().ok().flatten());
                panic!(
                    "Kafka node {node} did not listen on {address} within 90 s (exited: \
                     {exited:?})\n{}",
                    self.logs(node)
                );
            }
        }
        let brokers = self.brokers();
        let expected = self.nodes.len();
        let listed = tokio::task::spawn_blocking(move || {
            let consumer = metadata_client(&brokers);
            for _ in 0..300 {
                if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(2))
                    && metadata.brokers().len() == expected
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
        .await
        .expect("metadata task");
        assert!(
            listed,
            "the cluster did not list {expected} brokers within 30 s"
        );
    }

    /// The end of node `node`'s logs, for a failure message (its directory is deleted with the
    /// cluster).
    fn logs(&self, node: usize) -> String {
        ["stdout.log", "server.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.node_dir(node).join(name))
                    .unwrap_or_else(|error| format!("({error})"));
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                format!("--- {name} (last 40 lines)\n{tail}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn address(&self, node: usize) -> std::net::SocketAddr {
        let step = PORT_STEP * u16::try_from(node).expect("small");
        self.host.addr(BROKER_PORT + step)
    }

    fn node_dir(&self, node: usize) -> PathBuf {
        self.directory.path().join(format!("node{}", node + 1))
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.kill(node);
        }
    }
}

/// A client of `brokers` for metadata requests only.
fn metadata_client(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata client")
}

/// Every record of every partition of `topic`, read from the beginning to the partitions'
/// ends as they are when it is called (records are acknowledged only once replicated, so the
/// ends cover every acknowledged record), in partition order.
pub async fn read_to_end(
    kafka: &mentorstream_config::KafkaConfig,
    topic: &str,
) -> Vec<OwnedMessage> {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.properties {
        client.set(key, value);
    }
    let consumer: StreamConsumer = client
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    let mut open = 0;
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("partition");
            open += 1;
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    while open > 0 {
        match tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{topic} was not read to its end within 60 s"))
        {
            Ok(message) => records.push(message.detach()),
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => open -= 1,
            Err(error) => panic!("reading {topic}: {error}"),
        }
    }
    records.sort_by_key(|record| (record.partition(), record.offset()));
    records
}

/// The configuration of node `node` (0-based) of a `size`-node cluster whose data is in
/// `dir`: combined broker and controller, static voters, fast failure detection.
fn properties(host: &Host, dir: &Path, node: u16, size: u16) -> String {
    let port = |n: u16| BROKER_PORT + PORT_STEP * n;
    let ip = host.ip();
    let voters = (0..size)
        .map(|n| format!("{}@{ip}:{}", n + 1, port(n) + 1))
        .collect::<Vec<_>>()
        .join(",");
    let in_sync = size.min(2);
    format!(
        "process.roles=broker,controller\n\
         node.id={id}\n\
         controller.quorum.voters={voters}\n\
         listeners=PLAINTEXT://{ip}:{client},CONTROLLER://{ip}:{controller}\n\
         advertised.listeners=PLAINTEXT://{ip}:{client}\n\
         controller.listener.names=CONTROLLER\n\
         inter.broker.listener.name=PLAINTEXT\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         log.dirs={data}\n\
         default.replication.factor={size}\n\
         min.insync.replicas={in_sync}\n\
         offsets.topic.replication.factor={size}\n\
         offsets.topic.num.partitions=3\n\
         transaction.state.log.replication.factor={size}\n\
         transaction.state.log.min.isr={in_sync}\n\
         transaction.state.log.num.partitions=3\n\
         group.initial.rebalance.delay.ms=0\n\
         broker.heartbeat.interval.ms=500\n\
         broker.session.timeout.ms=3000\n",
        id = node + 1,
        client = port(node),
        controller = port(node) + 1,
        data = dir.join("data").display(),
    )
}

/// A KRaft cluster id: 16 random bytes, base64url without padding, never starting with `-`
/// (which the storage tool would read as an option; Kafka's own `Uuid.randomUuid` skips those
/// too, as `kafka-storage random-uuid` prints).
fn random_cluster_id() -> String {
    loop {
        let id = base64url_uuid();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// 16 random bytes, base64url without padding.
fn base64url_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22_i32)
        .map(|i| {
            // 22 sextets cover 132 bits: the last holds the lowest 2 bits and 4 zero bits.
            let shift = 128 - 6 * (i + 1);
            let sextet = if shift >= 0 {
                (bits >> shift) & 0x3f
            } else {
                (bits << -shift) & 0x3f
            };
            char::from(ALPHABET[usize::try_from(sextet).expect("6 bits")])
        })
        .collect()
}

/// deploy/local/kafka/node.sh of this checkout.
fn node_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/kafka/node.sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_id_is_22_base64url_characters_and_no_option() {
        for _ in 0..1_000 {
            assert!(!random_cluster_id().starts_with('-'));
        }
        let id = random_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, random_cluster_id());
    }

    #[test]
    fn nodes_know_every_voter_and_their_own_ports() {
        let host = Host::reserve();
        let text = properties(&host, Path::new("/d"), 1, 3);
        let ip = host.ip();
        assert!(text.contains(&format!(
            "controller.quorum.voters=1@{ip}:19093,2@{ip}:19103,3@{ip}:19113\n"
        )));
        assert!(text.contains(&format!(
            "listeners=PLAINTEXT://{ip}:19102,CONTROLLER://{ip}:19103\n"
        )));
        assert!(text.contains("node.id=2\n"));
        assert!(text.contains("min.insync.replicas=2\n"));
        let single = properties(&host, Path::new("/d"), 0, 1);
        assert!(single.contains("min.insync.replicas=1\n"));
        assert!(single.contains("default.replication.factor=1\n"));
    }
}
