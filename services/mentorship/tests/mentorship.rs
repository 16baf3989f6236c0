//! The mentorship service against the real local stack: programs and groups through
//! MentorshipService, the partner read model from the activity topic, and the outbox relayed
//! to the mentorship topic exactly once. Every refused mutation changes nothing: no row, no
//! event.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use mentorstream_config::{Config, ExposeSecret};
use mentorstream_kafka::{
    CloudEvent, Consumer, InboundRecord, Message as _, OutboundRecord, Producer,
};
use mentorstream_proto::activity::v1::{ActivityEvent, PartnerEnrolled, activity_event};
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use mentorstream_proto::mentorship::v1::{
    CreateGroupRequest, CreateProgramRequest, GetGroupRequest, ListGroupsRequest,
    ListProgramsRequest, MentorshipEvent, ProgramKind, mentorship_event,
};
use mentorstream_runtime::{Context, Listeners};
use mentorstream_testkit::{fresh_database, unique};
use rdkafka::consumer::Consumer as _;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};

const WAIT: Duration = Duration::from_secs(60);

struct Service {
    context: Context,
    pool: PgPool,
    client: MentorshipServiceClient<Channel>,
    tenant_id: String,
    write_key: String,
    read_key: String,
    served: tokio::task::JoinHandle<Result<(), mentorstream_mentorship::ServiceError>>,
}

impl Service {
    async fn start() -> Self {
        let telemetry = mentorstream_telemetry::init_for_tests();
        let mut config = Config::load(None).expect("defaults");
        config.kafka.topics.activity = unique("t.activity");
        config.kafka.topics.mentorship = unique("t.mentorship");
        config.postgres.url = fresh_database(&config, "control").await.into();
        config.mentorship.database_url = fresh_database(&config, "mentorship").await.into();
        let pool = PgPool::connect(config.mentorship.database_url.expose_secret())
            .await
            .expect("mentorship database");
        // Before the service does it in the background: the test reads the tables at once.
        mentorstream_mentorship::db::migrate(&pool)
            .await
            .expect("migrate");
        let context = Context::connect(config, telemetry).await.expect("context");
        context.tenants.migrate().await.expect("migrate");
        let tenant = context
            .tenants
            .create_tenant(mentorstream_tenancy::NewTenant {
                name: "acme".into(),
                time_zone: "Europe/Moscow".into(),
                default_locale: "ru-RU".into(),
            })
            .await
            .expect("tenant");
        let write_key = context
            .tenants
            .create_key("acme", "write".parse().expect("scopes"))
            .await
            .expect("key")
            .api_key;
        let read_key = context
            .tenants
            .create_key("acme", "read".parse().expect("scopes"))
            .await
            .expect("key")
            .api_key;
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_mentorship::run(context.clone(), listeners));
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            match MentorshipServiceClient::connect(format!("http://{addr}")).await {
                Ok(client) => break client,
                Err(error) => {
                    assert!(tokio::time::Instant::now() < deadline, "{error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        Self {
            context,
            pool,
            client,
            tenant_id: tenant.tenant_id,
            write_key,
            read_key,
            served,
        }
    }

    fn with_key<T>(key: &str, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii"),
        );
        request
    }

    fn write<T>(&self, message: T) -> Request<T> {
        Self::with_key(&self.write_key, message)
    }

    fn read<T>(&self, message: T) -> Request<T> {
        Self::with_key(&self.read_key, message)
    }

    /// Enrols `partner` through the activity topic and waits until the read model knows it.
    async fn enrol(&self, partner: &str) {
        let producer = Producer::new(&self.context.config.kafka, WAIT).expect("producer");
        let now = chrono::Utc::now();
        let event = ActivityEvent {
            tenant_id: self.tenant_id.clone(),
            source: "crm".into(),
            source_event_id: format!("enrol-{partner}"),
            occurred_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            }),
            partner_id: partner.into(),
            payload: Some(activity_event::Payload::PartnerEnrolled(PartnerEnrolled {
                sponsor_id: String::new(),
                display_name: partner.into(),
                locale: "ru-RU".into(),
                time_zone: "Europe/Moscow".into(),
            })),
            ..ActivityEvent::default()
        };
        producer
            .send(&OutboundRecord::protobuf(
                &self.context.config.kafka.topics.activity,
                format!("{}/{partner}", self.tenant_id),
                &event,
                CloudEvent {
                    id: event.source_event_id.clone(),
                    event_type: "mentorstream.activity.v1.ActivityEvent".into(),
                    source: "/tests".into(),
                    time: now,
                },
            ))
            .await
            .expect("produced");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let known: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM partners WHERE tenant_id = $1 AND partner_id = $2",
            )
            .bind(&self.tenant_id)
            .bind(partner)
            .fetch_one(&self.pool)
            .await
            .expect("count");
            if known == 1 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{partner} never enrolled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Rows of `table` and outbox rows.
    async fn counts(&self, table: &str) -> (i64, i64) {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count");
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .expect("count");
        (rows, events)
    }

    /// Every record on the mentorship topic once the outbox is relayed, read to the end.
    async fn published(&self) -> Vec<(String, MentorshipEvent)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let unsent: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                    .fetch_one(&self.pool)
                    .await
                    .expect("count");
            if unsent == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox was never relayed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kafka = &self.context.config.kafka;
        let topic = &kafka.topics.mentorship;
        let consumer = Consumer::new(kafka, &unique("reader"), &[topic]).expect("consumer");
        let mut ends = BTreeMap::new();
        for partition in 0..kafka.partitions {
            let (_, high) = consumer
                .inner()
                .fetch_watermarks(topic, partition, WAIT)
                .expect("watermarks");
            if high > 0 {
                ends.insert(partition, high - 1);
            }
        }
        let mut records = Vec::new();
        let mut reached = BTreeMap::new();
        let mut stream = consumer.inner().stream();
        while reached != ends {
            let message = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("records")
                .expect("stream")
                .expect("message");
            reached.insert(message.partition(), message.offset());
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8");
            let event: MentorshipEvent = InboundRecord::new(&message).decode().expect("event");
            records.push((key, event));
        }
        records
    }

    async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

fn program(request_id: &str, name: &str) -> CreateProgramRequest {
    CreateProgramRequest {
        request_id: request_id.into(),
        name: name.into(),
        kind: ProgramKind::Pilot.into(),
        sessions_per_week: 2,
        default_session_length: Some(prost_types::Duration {
            seconds: 20 * 60,
            nanos: 0,
        }),
    }
}

#[tokio::test]
async fn programs_and_groups_refuse_what_the_domain_forbids_and_announce_each_change_once() {
    let mut service = Service::start().await;
    service.enrol("mentor-1").await;

    // Refused programs: the right code and message, and nothing written.
    for (request, code, message) in [
        (
            CreateProgramRequest {
                kind: 0,
                ..program("", "a")
            },
            Code::InvalidArgument,
            "kind: must be PROGRAM_KIND_PILOT or PROGRAM_KIND_STANDARD",
        ),
        (
            CreateProgramRequest {
                sessions_per_week: 0,
                ..program("", "a")
            },
            Code::InvalidArgument,
            "sessions_per_week: must be 1 to 14, got 0",
        ),
        (
            CreateProgramRequest {
                default_session_length: Some(prost_types::Duration {
                    seconds: 90 * 60,
                    nanos: 0,
                }),
                ..program("", "a")
            },
            Code::InvalidArgument,
            "default_session_length: must be 5 to 60 minutes, got 90",
        ),
        (
            program("", "  "),
            Code::InvalidArgument,
            "name: is required",
        ),
    ] {
        let refused = service
            .client
            .create_program(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!((refused.code(), refused.message()), (code, message));
    }
    assert_eq!(service.counts("programs").await, (0, 0));
    let read_only = service
        .client
        .create_program(service.read(program("", "Pilot")))
        .await
        .expect_err("read key");
    assert_eq!(read_only.code(), Code::PermissionDenied);

    // A program, retried with its request id: the first answer, one row.
    let created = service
        .client
        .create_program(service.write(program("p-1", "Pilot")))
        .await
        .expect("created")
        .into_inner();
    let again = service
        .client
        .create_program(service.write(program("p-1", "Pilot")))
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again, created);
    assert_eq!(service.counts("programs").await, (1, 0));
    let duplicate = service
        .client
        .create_program(service.write(program("p-2", "Pilot")))
        .await
        .expect_err("same name");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let program_id = created.program.expect("program").program_id;

    // Refused groups change nothing either.
    let group = |request_id: &str, program_id: &str, mentor_id: &str| CreateGroupRequest {
        request_id: request_id.into(),
        program_id: program_id.into(),
        mentor_id: mentor_id.into(),
        name: "Monday group".into(),
        capacity: 0,
        occurred_at: None,
    };
    let in_a_year = chrono::Utc::now() + chrono::Duration::days(365);
    for (request, code, message) in [
        (
            group("", "nope", "mentor-1"),
            Code::FailedPrecondition,
            "program_id: no program `nope`".to_owned(),
        ),
        (
            group("", &program_id, "stranger"),
            Code::FailedPrecondition,
            "mentor_id: `stranger` is not an enrolled partner (enrolments arrive from the \
             activity stream)"
                .to_owned(),
        ),
        (
            CreateGroupRequest {
                capacity: 101,
                ..group("", &program_id, "mentor-1")
            },
            Code::InvalidArgument,
            "capacity: must be at most 100, got 101".to_owned(),
        ),
        (
            CreateGroupRequest {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: in_a_year.timestamp(),
                    nanos: 0,
                }),
                ..group("", &program_id, "mentor-1")
            },
            Code::InvalidArgument,
            "occurred_at: must not be in the future".to_owned(),
        ),
        (
            group("p-1", &program_id, "mentor-1"),
            Code::InvalidArgument,
            "request_id: request_id `p-1` was used for CreateProgram".to_owned(),
        ),
    ] {
        let refused = service
            .client
            .create_group(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (code, message.as_str())
        );
    }
    assert_eq!(service.counts("groups").await, (0, 0));

    // Three groups, one of them retried: three rows, three events, each once.
    let mut group_ids = Vec::new();
    for request_id in ["g-1", "g-2", "g-3", "g-2"] {
        let created = service
            .client
            .create_group(service.write(group(request_id, &program_id, "mentor-1")))
            .await
            .expect("created")
            .into_inner()
            .group
            .expect("group");
        assert_eq!(created.capacity, 7, "the default capacity");
        if !group_ids.contains(&created.group_id) {
            group_ids.push(created.group_id);
        }
    }
    assert_eq!(service.counts("groups").await, (3, 3));
    let published = service.published().await;
    let mut announced: Vec<(String, String)> = published
        .iter()
        .map(|(key, event)| {
            let Some(mentorship_event::Payload::GroupCreated(created)) = &event.payload else {
                panic!("unexpected {event:?}");
            };
            assert_eq!(created.mentor_id, "mentor-1");
            assert_eq!(created.capacity, 7);
            (key.clone(), created.group_id.clone())
        })
        .collect();
    announced.sort();
    let mut expected: Vec<(String, String)> = group_ids
        .iter()
        .map(|id| (format!("{}/{id}", service.tenant_id), id.clone()))
        .collect();
    expected.sort();
    assert_eq!(announced, expected);

    // Reads: a group with its mentees, programs and groups page by page.
    let fetched = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: group_ids[0].clone(),
        }))
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(
        (fetched.mentor_id.as_str(), fetched.mentee_ids.len()),
        ("mentor-1", 0)
    );
    let missing = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: "nope".into(),
        }))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = service
            .client
            .list_groups(service.read(ListGroupsRequest {
                program_id: program_id.clone(),
                mentor_id: String::new(),
                page_size: 2,
                page_token: page_token.clone(),
            }))
            .await
            .expect("list")
            .into_inner();
        assert!(page.groups.len() <= 2);
        listed.extend(page.groups.into_iter().map(|group| group.group_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut sorted = group_ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let programs = service
        .client
        .list_programs(service.read(ListProgramsRequest {
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(programs.programs.len(), 1);
    service.stop().await;
}
