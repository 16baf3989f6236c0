//! The aggregator as real processes (its own binary, as on Kubernetes), always members of one
//! consumer group: killed with SIGKILL mid-stream and restarted; paused (SIGSTOP) until the
//! group gives its partitions away and then resumed as a zombie that still writes; and, on a
//! three-node Kafka cluster, two then three instances sharing the partitions while one is
//! killed and another added. The scorecards afterwards equal the rules applied to the event
//! set.

use crate::scenario;

use mentorstream_config::Config;
use mentorstream_proto::kpi::v1::{SubjectKind, WindowKind};
use mentorstream_tenancy::Tenants;
use mentorstream_testkit::{
    KafkaCluster, SHORT_CONSUMER_SESSIONS, ServiceProcess, fresh_database, unique,
};
use scenario::live::{
    Reader, assert_scorecards, create_tenant, numbers, produce, produce_sentinels, wait_for, window,
};
use scenario::{Events, Record};

const BIN: &str = env!("CARGO_BIN_EXE_mentorstream-kpi-aggregator");

/// The settings every instance of one test shares, as a configuration file.
struct Deployment {
    config: Config,
    file: tempfile::NamedTempFile,
    tenant_id: String,
    api_key: String,
}

impl Deployment {
    /// On the shared broker, or on `cluster`.
    async fn new(cluster: Option<&KafkaCluster>) -> Self {
        let mut config = Config::load(None).expect("defaults");
        if let Some(cluster) = cluster {
            config.kafka = cluster.config(&config.kafka);
        }
        config.kafka.partitions = 3;
        config.kafka.topics.activity = unique("t.activity");
        config.kafka.topics.mentorship = unique("t.mentorship");
        config.kafka.topics.kpi_signals = unique("t.signals");
        config.redis.key_prefix = unique("ms-test");
        let database = fresh_database(&config, "kpi").await;
        let tenants = Tenants::connect(&database, 2)
            .await
            .expect("control database");
        let (tenant_id, api_key) = create_tenant(&tenants).await;
        let file = tempfile::NamedTempFile::new().expect("config file");
        let toml = format!(
            "[kafka]\nbrokers = \"{}\"\nreplication_factor = {}\npartitions = 3\n\
             [kafka.topics]\nactivity = \"{}\"\nmentorship = \"{}\"\nkpi_signals = \"{}\"\n\
             {SHORT_CONSUMER_SESSIONS}\
             [redis]\nkey_prefix = \"{}\"\n[postgres]\nurl = \"{database}\"\n\
             [shutdown]\ngrace_period = \"15s\"\n",
            config.kafka.brokers,
            config.kafka.replication_factor,
            config.kafka.topics.activity,
            config.kafka.topics.mentorship,
            config.kafka.topics.kpi_signals,
            config.redis.key_prefix
        );
        std::fs::write(file.path(), toml).expect("write config");
        config.postgres.url = database.into();
        Self {
            config,
            file,
            tenant_id,
            api_key,
        }
    }

    /// Starts an instance; it joins the group.
    fn start(&self) -> (ServiceProcess, std::net::SocketAddr) {
        ServiceProcess::start(BIN, self.file.path(), "KPI", &[])
    }
}

fn chunks(records: &[Record], parts: usize) -> Vec<&[Record]> {
    let size = records.len().div_ceil(parts);
    records.chunks(size).collect()
}

#[tokio::test]
async fn killed_with_sigkill_mid_stream_the_aggregator_still_counts_everything_once() {
    let deployment = Deployment::new(None).await;
    let kafka = &deployment.config.kafka;
    let mut events = Events::scenario().for_tenant(&deployment.tenant_id);
    let records = events.records();
    let (mut instance, mut addr) = deployment.start();
    for part in chunks(&records, 4) {
        produce(kafka, part).await;
        // Let it get going (it has counted something), then kill it wherever it is.
        let mut reader = Reader::connect(addr, deployment.api_key.clone()).await;
        let deadline = tokio::time::Instant::now() + scenario::live::WAIT;
        loop {
            let answer = reader
                .scorecard(SubjectKind::Tenant, "", window(WindowKind::Lifetime, None))
                .await;
            if answer
                .as_ref()
                .is_ok_and(|answer| !numbers(answer).is_empty())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the aggregator never counted: {answer:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        instance.kill_9();
        (instance, addr) = deployment.start();
    }
    let sentinels = produce_sentinels(kafka, &deployment.tenant_id).await;
    events.extend(sentinels.clone());
    let mut reader = Reader::connect(addr, deployment.api_key.clone()).await;
    wait_for(&mut reader, &sentinels).await;
    assert_scorecards(&mut reader, &events).await;
    // With a client still connected, SIGTERM still ends the process cleanly within the grace
    // period.
    instance.terminate();
    drop(reader);
}

/// Waits until the instance at `addr` has counted something of the tenant.
async fn wait_until_counting(addr: std::net::SocketAddr, api_key: &str) {
    let mut reader = Reader::connect(addr, api_key.to_owned()).await;
    let deadline = tokio::time::Instant::now() + scenario::live::WAIT;
    loop {
        let answer = reader
            .scorecard(SubjectKind::Tenant, "", window(WindowKind::Lifetime, None))
            .await;
        if answer
            .as_ref()
            .is_ok_and(|answer| !numbers(answer).is_empty())
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the aggregator never counted: {answer:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A member that stops answering (SIGSTOP: a long GC pause, a frozen node) loses its
/// partitions to the other once its session expires; resumed (SIGCONT), it still applies
/// what it had fetched, writing partitions another member now owns, before it learns that
/// it left the group and joins again. Nothing is counted twice or lost.
#[tokio::test]
async fn a_paused_member_that_comes_back_as_a_zombie_writer_counts_nothing_twice() {
    let deployment = Deployment::new(None).await;
    let kafka = &deployment.config.kafka;
    let mut events = Events::scenario().for_tenant(&deployment.tenant_id);
    let records = events.records();
    let parts = chunks(&records, 3);
    let (mut first, first_addr) = deployment.start();
    let (mut second, second_addr) = deployment.start();
    produce(kafka, parts[0]).await;
    wait_until_counting(first_addr, &deployment.api_key).await;
    signal(&first, "-STOP");
    produce(kafka, parts[1]).await;
    // Past the session timeout (6 s) the second owns every partition.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    produce(kafka, parts[2]).await;
    signal(&first, "-CONT");
    let sentinels = produce_sentinels(kafka, &deployment.tenant_id).await;
    events.extend(sentinels.clone());
    let mut reader = Reader::connect(second_addr, deployment.api_key.clone()).await;
    wait_for(&mut reader, &sentinels).await;
    assert_scorecards(&mut reader, &events).await;
    first.terminate();
    second.terminate();
}

/// Sends `signal` (e.g. `-STOP`) to `process`.
fn signal(process: &ServiceProcess, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &process.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

/// The production scaling mode on a three-node cluster (3 replicas, 2 in sync): two
/// instances share the partitions, a third joins, the first is killed with SIGKILL (its
/// partitions move once its session expires), a fourth is added and the second leaves
/// cleanly, while the scenario streams in between. The sentinels of every partition count
/// only if every partition found a new owner each time.
#[tokio::test]
async fn instances_of_one_group_on_three_brokers_count_everything_once_while_partitions_move() {
    let cluster = KafkaCluster::three().await;
    let deployment = Deployment::new(Some(&cluster)).await;
    let kafka = &deployment.config.kafka;
    let mut events = Events::scenario().for_tenant(&deployment.tenant_id);
    let records = events.records();
    let parts = chunks(&records, 5);
    let (mut first, first_addr) = deployment.start();
    let (mut second, _) = deployment.start();
    produce(kafka, parts[0]).await;
    wait_until_counting(first_addr, &deployment.api_key).await;
    let (mut third, third_addr) = deployment.start();
    produce(kafka, parts[1]).await;
    first.kill_9();
    produce(kafka, parts[2]).await;
    let (mut fourth, _) = deployment.start();
    produce(kafka, parts[3]).await;
    second.terminate();
    produce(kafka, parts[4]).await;
    let sentinels = produce_sentinels(kafka, &deployment.tenant_id).await;
    events.extend(sentinels.clone());
    let mut reader = Reader::connect(third_addr, deployment.api_key.clone()).await;
    wait_for(&mut reader, &sentinels).await;
    assert_scorecards(&mut reader, &events).await;
    third.terminate();
    fourth.terminate();
}
