//! The mentorship service in the test's process against the real local stack, with its own
//! databases and topics, and what the tests need to drive it and see what it published.

#![allow(dead_code)]

use std::time::Duration;

use mentorstream_config::{Config, ExposeSecret};
use mentorstream_kafka::{CloudEvent, InboundRecord, Message as _, OutboundRecord, Producer};
use mentorstream_proto::activity::v1::{ActivityEvent, PartnerEnrolled, activity_event};
use mentorstream_proto::mentorship::v1::impact_service_client::ImpactServiceClient;
use mentorstream_proto::mentorship::v1::mentorship_service_client::MentorshipServiceClient;
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, CreateGroupRequest, CreateProgramRequest, MentorshipEvent, ProgramKind,
};
use mentorstream_runtime::{Context, Listeners};
use mentorstream_testkit::{fresh_database, unique};
use sqlx::PgPool;
use tonic::Request;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Service {
    pub context: Context,
    pub pool: PgPool,
    pub client: MentorshipServiceClient<Channel>,
    pub impact: ImpactServiceClient<Channel>,
    pub tenant_id: String,
    /// The id of the write key (ImpactService records who changed a programme).
    pub write_key_id: String,
    write_key: String,
    read_key: String,
    served: tokio::task::JoinHandle<Result<(), mentorstream_mentorship::ServiceError>>,
}

impl Service {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A service whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_inner(adjust, false).await
    }

    /// A service with the KPI aggregator running next to it (the same topics and tenants, a
    /// Redis key prefix of its own), as its KpiService.
    pub async fn start_with_aggregator() -> Self {
        Self::start_inner(|_| {}, true).await
    }

    async fn start_inner(adjust: impl FnOnce(&mut Config), aggregator: bool) -> Self {
        let telemetry = mentorstream_telemetry::init_for_tests();
        let mut config = Config::load(None).expect("defaults");
        adjust(&mut config);
        config.redis.key_prefix = unique("ms-test");
        let kpi_listeners = if aggregator {
            let listeners = Listeners::ephemeral().await.expect("listeners");
            let addr = listeners.grpc_addr().expect("address");
            config.mentorship.kpi_endpoint = format!("http://{addr}");
            Some(listeners)
        } else {
            None
        };
        config.kafka.topics.activity = unique("t.activity");
        config.kafka.topics.mentorship = unique("t.mentorship");
        config.kafka.topics.kpi_signals = unique("t.signals");
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
        let write = context
            .tenants
            .create_key("acme", "write".parse().expect("scopes"))
            .await
            .expect("key");
        let (write_key, write_key_id) = (write.api_key, write.key_id);
        let read_key = context
            .tenants
            .create_key("acme", "read".parse().expect("scopes"))
            .await
            .expect("key")
            .api_key;
        if let Some(kpi_listeners) = kpi_listeners {
            tokio::spawn(mentorstream_kpi_aggregator::run(
                context.clone(),
                kpi_listeners,
            ));
        }
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_mentorship::run(context.clone(), listeners));
        let deadline = tokio::time::Instant::now() + WAIT;
        let channel = loop {
            match Channel::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(error) => {
                    assert!(tokio::time::Instant::now() < deadline, "{error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        Self {
            context,
            pool,
            client: MentorshipServiceClient::new(channel.clone()),
            impact: ImpactServiceClient::new(channel),
            tenant_id: tenant.tenant_id,
            write_key_id,
            write_key,
            read_key,
            served,
        }
    }

    pub fn with_key<T>(key: &str, message: T) -> Request<T> {
        mentorstream_testkit::authorized(key, message)
    }

    pub fn write<T>(&self, message: T) -> Request<T> {
        Self::with_key(&self.write_key, message)
    }

    pub fn read<T>(&self, message: T) -> Request<T> {
        Self::with_key(&self.read_key, message)
    }

    /// What sessions and plans stand on: a program of a session a week (`session_length`
    /// long when given), a group of it led by `mentor`, and `mentees` assigned to the group at
    /// `assigned_at` (now when not given). Returns the group's id.
    pub async fn group_with(
        &mut self,
        mentor: &str,
        mentees: &[&str],
        session_length: Option<prost_types::Duration>,
        assigned_at: Option<prost_types::Timestamp>,
    ) -> String {
        let program_id = self
            .client
            .create_program(self.write(CreateProgramRequest {
                request_id: String::new(),
                name: "Standard".into(),
                kind: ProgramKind::Standard.into(),
                sessions_per_week: 1,
                default_session_length: session_length,
            }))
            .await
            .expect("program")
            .into_inner()
            .program
            .expect("program")
            .program_id;
        let group_id = self
            .client
            .create_group(self.write(CreateGroupRequest {
                request_id: String::new(),
                program_id,
                mentor_id: mentor.into(),
                name: format!("{mentor}'s group"),
                capacity: 0,
                occurred_at: None,
            }))
            .await
            .expect("group")
            .into_inner()
            .group
            .expect("group")
            .group_id;
        for mentee in mentees {
            self.client
                .assign_mentee(self.write(AssignMenteeRequest {
                    request_id: String::new(),
                    group_id: group_id.clone(),
                    mentee_id: (*mentee).into(),
                    occurred_at: assigned_at,
                }))
                .await
                .expect("assigned");
        }
        group_id
    }

    /// Enrols `partner` (a root) and waits until the read model knows it.
    pub async fn enrol(&self, partner: &str) {
        self.enrol_under(partner, "", "enrol", chrono::Utc::now())
            .await;
    }

    /// Publishes an enrolment of `partner` under `sponsor` at `when` to the activity topic,
    /// and waits until the read model knows the partner.
    pub async fn enrol_under(
        &self,
        partner: &str,
        sponsor: &str,
        id: &str,
        when: chrono::DateTime<chrono::Utc>,
    ) {
        self.publish(
            partner,
            &format!("{id}-{partner}"),
            when,
            activity_event::Payload::PartnerEnrolled(PartnerEnrolled {
                sponsor_id: sponsor.into(),
                display_name: partner.to_uppercase(),
                locale: "ru-RU".into(),
                time_zone: "Europe/Moscow".into(),
                ..PartnerEnrolled::default()
            }),
        )
        .await;
        self.wait_for_partner(partner).await;
    }

    pub async fn publish(
        &self,
        partner: &str,
        id: &str,
        when: chrono::DateTime<chrono::Utc>,
        payload: activity_event::Payload,
    ) {
        let producer = Producer::new(&self.context.config.kafka, WAIT).expect("producer");
        let now = chrono::Utc::now();
        let event = ActivityEvent {
            tenant_id: self.tenant_id.clone(),
            source: "crm".into(),
            source_event_id: id.into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: when.timestamp(),
                nanos: 0,
            }),
            partner_id: partner.into(),
            payload: Some(payload),
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
    }

    pub async fn wait_for_partner(&self, partner: &str) {
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
    pub async fn counts(&self, table: &str) -> (i64, i64) {
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
    pub async fn published(&self) -> Vec<(String, MentorshipEvent)> {
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
        // Every outbox row, read back from the topic to its end.
        let mut expected: Vec<String> = sqlx::query_scalar("SELECT event_id FROM outbox")
            .fetch_all(&self.pool)
            .await
            .expect("event ids");
        expected.sort();
        let kafka = &self.context.config.kafka;
        let records = read_topic(kafka, &kafka.topics.mentorship).await;
        let mut published: Vec<String> = records
            .iter()
            .map(|(_, event)| event.event_id.clone())
            .collect();
        published.sort();
        assert_eq!(published, expected, "each outbox row once on the topic");
        records
    }

    pub async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

/// Every record of `topic`, read to its end, as (key, event), in partition order.
pub async fn read_topic(
    kafka: &mentorstream_config::KafkaConfig,
    topic: &str,
) -> Vec<(String, MentorshipEvent)> {
    mentorstream_testkit::read_to_end(kafka, topic)
        .await
        .iter()
        .map(|message| {
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8");
            let event: MentorshipEvent = InboundRecord::new(message).decode().expect("event");
            (key, event)
        })
        .collect()
}
