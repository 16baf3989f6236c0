//! Starting the service in-process for one test.

use std::net::SocketAddr;

use mentorstream_config::Config;
use mentorstream_runtime::{Context, Listeners};
use mentorstream_testkit::{fresh_database, unique};

pub type Served = tokio::task::JoinHandle<Result<(), mentorstream_ingest::ServiceError>>;

/// The service on an ephemeral port with its own database, activity topic (3 partitions) and
/// Redis key prefix, after `adjust`; its context (migrated), address and task.
pub async fn start(
    purpose: &str,
    adjust: impl FnOnce(&mut Config),
) -> (Context, SocketAddr, Served) {
    let telemetry = mentorstream_telemetry::init_for_tests();
    let mut config = Config::load(None).expect("defaults");
    config.kafka.partitions = 3;
    config.kafka.topics.activity = unique("t.activity");
    config.redis.key_prefix = unique("ms-test");
    config.postgres.url = fresh_database(&config, purpose).await.into();
    adjust(&mut config);
    let context = Context::connect(config, telemetry).await.expect("context");
    context.tenants.migrate().await.expect("migrate");
    let listeners = Listeners::ephemeral().await.expect("listeners");
    let addr = listeners.grpc_addr().expect("address");
    let served = tokio::spawn(mentorstream_ingest::run(context.clone(), listeners));
    (context, addr, served)
}
