//! Isolation for integration tests that run against the real local stack (deploy/local).
//!
//! Every test gets its own PostgreSQL database ([`fresh_database`]) and its own names for
//! topics, consumer groups and Redis key prefixes ([`unique`]), so tests run in parallel and
//! never see each other's data. The stack's addresses come from the same defaults as the
//! services, overridable with the usual `MENTORSTREAM__...` variables. A test that must stop
//! the broker starts a [`KafkaCluster`] of its own (one node, or three for the fault tests);
//! one that needs Redis Cluster starts a [`RedisCluster`]. Servers a test starts listen on a
//! loopback address the test reserved ([`Host`]), so no port is released and hoped for. The
//! notifier's tests talk to a local chat-bot gateway ([`WebhookReceiver`]) and mail server
//! ([`SmtpSink`]).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod host;
mod kafka;
mod receivers;

pub use host::{Host, wait_for_listener};
pub use kafka::{KafkaCluster, read_to_end};
pub use receivers::{ReceivedEmail, ReceivedWebhook, SmtpSink, WebhookReceiver};

use mentorstream_config::{Config, ExposeSecret};
use sqlx::Connection;

/// A configuration-file table (TOML) for services a test kills and restarts: consumer-group
/// sessions of 6 s (the broker's minimum) instead of 45, so the partitions of a killed member
/// move, and a restarted member's join completes, within seconds.
pub const SHORT_CONSUMER_SESSIONS: &str =
    "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n";

/// A short unique name: `<prefix>-<12 hex>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// `message` as a gRPC request carrying `api_key` the way clients send it.
pub fn authorized<T>(api_key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {api_key}")
            .parse()
            .expect("an API key is ASCII"),
    );
    request
}

/// Creates an empty database next to the control database and returns its URL.
pub async fn fresh_database(base: &Config, purpose: &str) -> String {
    let url = base.postgres.url.expose_secret();
    let (server, _) = url.rsplit_once('/').expect("database url has a path");
    let name = unique(&format!("test_{purpose}")).replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("the local PostgreSQL is up (make stack-up)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    format!("{server}/{name}")
}

/// A Redis of one test's own on its reserved address, without persistence: a test can kill
/// it and start it again empty (as after losing its data) without disturbing the shared one.
#[derive(Debug)]
pub struct PrivateRedis {
    host: Host,
    process: Option<std::process::Child>,
}

impl PrivateRedis {
    const PORT: u16 = 6379;

    pub async fn start() -> Self {
        let mut redis = Self {
            host: Host::reserve(),
            process: None,
        };
        redis.resume().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.host.addr(Self::PORT))
    }

    /// SIGKILL: everything in it is gone.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn resume(&mut self) {
        assert!(self.process.is_none(), "redis is running");
        let process = std::process::Command::new("redis-server")
            .args(["--port", &Self::PORT.to_string()])
            .args(["--bind", &self.host.ip().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server (make stack-up installs it)");
        self.process = Some(process);
        wait_for_listener(self.host.addr(Self::PORT)).await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three primaries of one test's own: local `redis-server` processes in
/// cluster mode on its reserved address (ports 7000–7002, and 17000–17002 for the cluster
/// bus), in a temporary directory, without persistence. Stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    _directory: tempfile::TempDir,
    host: Host,
    processes: Vec<std::process::Child>,
}

impl RedisCluster {
    const PORTS: [u16; 3] = [7000, 7001, 7002];

    /// Starts three nodes, assigns the slots among them and waits until the cluster is ok.
    pub async fn start() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let host = Host::reserve();
        let ip = host.ip().to_string();
        let mut processes = Vec::new();
        for port in &Self::PORTS {
            let node = directory.path().join(port.to_string());
            std::fs::create_dir(&node).expect("node directory");
            let log = std::fs::File::create(node.join("redis.log")).expect("log");
            let process = std::process::Command::new("redis-server")
                .current_dir(&node)
                .args(["--port", &port.to_string(), "--bind", &ip])
                // Connections between nodes come from 127.0.0.1 (the route's source address);
                // without this a node would tell clients to find its peers there.
                .args(["--cluster-announce-ip", &ip])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start redis-server (make stack-up installs it)");
            processes.push(process);
        }
        let cluster = Self {
            _directory: directory,
            host,
            processes,
        };
        let nodes: Vec<String> = Self::PORTS
            .iter()
            .map(|port| cluster.host.addr(*port).to_string())
            .collect();
        for node in &nodes {
            wait_for_listener(node.parse().expect("address")).await;
        }
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &Self::PORTS {
            let mut ok = false;
            for _ in 0..200 {
                let info = std::process::Command::new("redis-cli")
                    .args(["-h", &ip, "-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("run redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(
                ok,
                "the cluster node on {port} did not become ok within 10 s"
            );
        }
        cluster
    }

    /// The URL of one node; clients discover the others from it.
    pub fn url(&self) -> String {
        format!("redis://{}", self.host.addr(Self::PORTS[0]))
    }

    /// `base`'s Redis settings pointed at this cluster.
    pub fn config(
        &self,
        base: &mentorstream_config::RedisConfig,
    ) -> mentorstream_config::RedisConfig {
        mentorstream_config::RedisConfig {
            url: self.url().into(),
            key_prefix: base.key_prefix.clone(),
            cluster: true,
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A service binary running as its own process (as on Kubernetes), on ports the OS chooses,
/// its logs passed on to the test's output. Killed if a failing test drops it, so none
/// outlives the test.
#[derive(Debug)]
pub struct ServiceProcess(std::process::Child);

impl ServiceProcess {
    /// Starts `binary` with `config` (a file) and `environment`, listening on free ports of
    /// the service whose configuration section is `section` (e.g. `KPI`); returns it and its
    /// gRPC address, read from its "listening" log line.
    pub fn start(
        binary: &str,
        config: &std::path::Path,
        section: &str,
        environment: &[(&str, String)],
    ) -> (Self, std::net::SocketAddr) {
        Self::start_at(
            binary,
            config,
            section,
            environment,
            "127.0.0.1:0",
            "127.0.0.1:0",
        )
    }

    /// Like [`ServiceProcess::start`], listening on the given addresses (a restarted service
    /// keeps its address, so its clients find it again).
    pub fn start_at(
        binary: &str,
        config: &std::path::Path,
        section: &str,
        environment: &[(&str, String)],
        grpc_listen: &str,
        admin_listen: &str,
    ) -> (Self, std::net::SocketAddr) {
        use std::process::{Command, Stdio};
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .envs(
                environment
                    .iter()
                    .map(|(key, value)| (*key, value.as_str())),
            )
            .env(format!("MENTORSTREAM__{section}__GRPC_LISTEN"), grpc_listen)
            .env(
                format!("MENTORSTREAM__{section}__ADMIN_LISTEN"),
                admin_listen,
            )
            .env("MENTORSTREAM__TELEMETRY__LOG_FORMAT", "json")
            .env("RUST_LOG", "info,opentelemetry=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary}: {error}"));
        // Logs go to stdout.
        let logs = child.stdout.take().expect("stdout");
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(logs).lines().map_while(Result::ok) {
                if let Some(grpc) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|log| log.pointer("/grpc")?.as_str().map(str::to_owned))
                {
                    let _ = found.send(grpc);
                }
                eprintln!("{line}");
            }
        });
        let grpc = address
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the service logs where it listens");
        (Self(child), grpc.parse().expect("socket address"))
    }

    /// The process id, e.g. to read its CPU time from /proc.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill_9(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM, and require a clean exit.
    pub fn terminate(&mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exited = self.0.wait().expect("exits");
        assert!(exited.success(), "graceful shutdown: {exited}");
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
