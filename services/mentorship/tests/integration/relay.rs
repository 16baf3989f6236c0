//! The mentorship service as its own process, with a broker of the test's own: changes
//! committed while the broker is down cannot be published; the service is then killed with
//! SIGKILL, and after a restart (broker back) it publishes each of them exactly once.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Service, WAIT};
use mentorstream_config::Config;
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::activity::v1::{ActivityEvent, PartnerEnrolled, activity_event};
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use mentorstream_proto::mentorship::v1::{
    CreateGroupRequest, CreateProgramRequest, ProgramKind, mentorship_event,
};
use mentorstream_tenancy::Tenants;
use mentorstream_testkit::{
    KafkaCluster, SHORT_CONSUMER_SESSIONS, ServiceProcess, fresh_database, unique,
};
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_mentorstream-mentorship");

async fn client(addr: std::net::SocketAddr) -> MentorshipServiceClient<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match MentorshipServiceClient::connect(format!("http://{addr}")).await {
            Ok(client) => return client,
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "{error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Polls `query` (one count) until it is `expected`.
async fn wait_for_count(pool: &PgPool, query: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let count: i64 = sqlx::query_scalar(query)
            .fetch_one(pool)
            .await
            .expect("count");
        if count == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{query}` stayed {count}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn changes_committed_before_a_crash_are_published_once_after_the_restart() {
    let mut broker = KafkaCluster::single().await;
    let mut config = Config::load(None).expect("defaults");
    config.kafka.brokers = broker.brokers();
    config.kafka.partitions = 3;
    config.kafka.topics.activity = unique("t.activity");
    config.kafka.topics.mentorship = unique("t.mentorship");
    let control = fresh_database(&config, "control").await;
    let database = fresh_database(&config, "mentorship").await;
    let tenants = Tenants::connect(&control, 2)
        .await
        .expect("control database");
    tenants.migrate().await.expect("migrate");
    let tenant = tenants
        .create_tenant(mentorstream_tenancy::NewTenant {
            name: "acme".into(),
            time_zone: "Europe/Moscow".into(),
            default_locale: "ru-RU".into(),
        })
        .await
        .expect("tenant");
    let key = tenants
        .create_key("acme", "write".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;
    let pool = PgPool::connect(&database)
        .await
        .expect("mentorship database");
    mentorstream_mentorship::db::migrate(&pool)
        .await
        .expect("migrate");
    let file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        file.path(),
        format!(
            "[kafka]\nbrokers = \"{}\"\npartitions = 3\n[kafka.topics]\nactivity = \"{}\"\n\
             mentorship = \"{}\"\n[postgres]\nurl = \"{control}\"\n\
             [mentorship]\ndatabase_url = \"{database}\"\n[shutdown]\ngrace_period = \"15s\"\n\
             {SHORT_CONSUMER_SESSIONS}",
            config.kafka.brokers, config.kafka.topics.activity, config.kafka.topics.mentorship
        ),
    )
    .expect("write config");
    let (mut service, addr) = ServiceProcess::start(BIN, file.path(), "MENTORSHIP", &[]);

    // A mentor, known from the activity topic.
    let now = chrono::Utc::now();
    let enrolment = ActivityEvent {
        tenant_id: tenant.tenant_id.clone(),
        source: "crm".into(),
        source_event_id: "enrol-mentor".into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: 0,
        }),
        partner_id: "mentor-1".into(),
        payload: Some(activity_event::Payload::PartnerEnrolled(
            PartnerEnrolled::default(),
        )),
        ..ActivityEvent::default()
    };
    Producer::new(&config.kafka, WAIT)
        .expect("producer")
        .send(&OutboundRecord::protobuf(
            &config.kafka.topics.activity,
            format!("{}/mentor-1", tenant.tenant_id),
            &enrolment,
            CloudEvent {
                id: "enrol-mentor".into(),
                event_type: "mentorstream.activity.v1.ActivityEvent".into(),
                source: "/tests".into(),
                time: now,
            },
        ))
        .await
        .expect("produced");
    wait_for_count(&pool, "SELECT count(*) FROM partners", 1).await;
    let mut client = client(addr).await;
    let program_id = client
        .create_program(Service::with_key(
            &key,
            CreateProgramRequest {
                request_id: String::new(),
                name: "Pilot".into(),
                kind: ProgramKind::Pilot.into(),
                sessions_per_week: 1,
                default_session_length: None,
            },
        ))
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program")
        .program_id;

    // The broker goes away: the changes commit, their events cannot be published.
    broker.kill(0);
    let mut group_ids = BTreeSet::new();
    for n in 0..3 {
        let group = client
            .create_group(Service::with_key(
                &key,
                CreateGroupRequest {
                    request_id: format!("g-{n}"),
                    program_id: program_id.clone(),
                    mentor_id: "mentor-1".into(),
                    name: format!("Group {n}"),
                    capacity: 0,
                    occurred_at: None,
                },
            ))
            .await
            .expect("committed without the broker")
            .into_inner()
            .group
            .expect("group");
        group_ids.insert(group.group_id);
    }
    wait_for_count(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
        3,
    )
    .await;
    service.kill_9();

    // Broker and service back: each change is published once.
    broker.resume(0).await;
    let (mut service, _) = ServiceProcess::start(BIN, file.path(), "MENTORSHIP", &[]);
    wait_for_count(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NULL",
        0,
    )
    .await;
    let mut announced: Vec<String> =
        common::read_topic(&config.kafka, &config.kafka.topics.mentorship)
            .await
            .into_iter()
            .map(|(_, event)| {
                let Some(mentorship_event::Payload::GroupCreated(created)) = event.payload else {
                    panic!("unexpected {event:?}");
                };
                created.group_id
            })
            .collect();
    announced.sort();
    assert_eq!(announced, group_ids.into_iter().collect::<Vec<_>>());
    service.terminate();
}

/// Data lifecycle as of a chosen moment: answers for request_id retries and relayed outbox
/// events go once their retention has passed, and not a moment before.
#[tokio::test]
async fn answers_and_relayed_events_are_pruned_after_their_retention() {
    use mentorstream_mentorship::prune::{Pruned, Retention, prune};
    let mut service = Service::start().await;
    service.enrol("mentor-p").await;
    service
        .client
        .create_program(service.write(crate::mentorship::program("prune-program", "Pruned")))
        .await
        .expect("program");
    service.group_with("mentor-p", &[], None, None).await;
    // Relayed: the group's event is sent.
    service.published().await;
    let count = async |table: &str, service: &Service| -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&service.pool)
            .await
            .expect("count")
    };
    assert_eq!(count("requests", &service).await, 1);
    let sent = count("outbox", &service).await;
    assert!(sent >= 1);
    let retention = Retention {
        requests: chrono::TimeDelta::days(7),
        outbox: chrono::TimeDelta::days(3),
    };
    let now = chrono::Utc::now();
    assert_eq!(
        prune(&service.pool, now + chrono::TimeDelta::days(2), retention)
            .await
            .expect("pruned"),
        Pruned::default()
    );
    assert_eq!(
        prune(&service.pool, now + chrono::TimeDelta::days(4), retention)
            .await
            .expect("pruned"),
        Pruned {
            requests: 0,
            outbox: u64::try_from(sent).expect("count")
        }
    );
    assert_eq!(
        prune(&service.pool, now + chrono::TimeDelta::days(8), retention)
            .await
            .expect("pruned"),
        Pruned {
            requests: 1,
            outbox: 0
        }
    );
    assert_eq!(count("requests", &service).await, 0);
    assert_eq!(count("outbox", &service).await, 0);
    service.stop().await;
}
