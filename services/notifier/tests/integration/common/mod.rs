//! The notifier in the test's process against the real local stack — its own databases and
//! topics, a clock the test moves, and a local chat-bot gateway and mail server — and what the
//! tests need to feed it events and read what it did.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use mentorstream_config::{Config, ExposeSecret};
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_notifier::ManualClock;
use mentorstream_proto::kpi::v1::{KpiSignal, kpi_signal};
use mentorstream_proto::mentorship::v1::{MentorshipEvent, mentorship_event};
use mentorstream_proto::notification::v1 as proto;
use mentorstream_proto::notification::v1::notification_service_client::NotificationServiceClient;
use mentorstream_runtime::{Context, Listeners};
use mentorstream_tenancy::TenantChannels;
use mentorstream_testkit::{SmtpSink, WebhookReceiver, fresh_database, unique};
use sqlx::PgPool;
use tonic::Request;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(60);
pub const GATEWAY_SECRET: &str = "gateway-secret-0123456789";

pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    }
}

pub struct Notifier {
    pub context: Context,
    pub pool: PgPool,
    pub client: NotificationServiceClient<Channel>,
    pub tenant_id: String,
    pub clock: ManualClock,
    pub gateway: WebhookReceiver,
    pub sink: SmtpSink,
    pub read_key: String,
    write_key: String,
    producer: Producer,
    served: tokio::task::JoinHandle<Result<(), mentorstream_notifier::ServiceError>>,
}

impl Notifier {
    /// A notifier whose clock reads `now`; its tenant (Europe/Moscow, Russian by default) has
    /// both channels pointing at the test's gateway and mail server.
    pub async fn start_at(now: DateTime<Utc>) -> Self {
        Self::start_inner(now, |_| {}, false).await
    }

    /// The same, with the KPI aggregator running next to it as its KpiService.
    pub async fn start_with_aggregator(now: DateTime<Utc>) -> Self {
        Self::start_inner(now, |_| {}, true).await
    }

    pub async fn start_inner(
        now: DateTime<Utc>,
        adjust: impl FnOnce(&mut Config),
        aggregator: bool,
    ) -> Self {
        let telemetry = mentorstream_telemetry::init_for_tests();
        let mut config = Config::load(None).expect("defaults");
        config.kafka.topics.activity = unique("t.activity");
        config.kafka.topics.mentorship = unique("t.mentorship");
        config.kafka.topics.kpi_signals = unique("t.signals");
        config.kafka.topics.kpi_updates = unique("t.updates");
        config.redis.key_prefix = unique("ms-test");
        config.notifier.dispatch_interval = Duration::from_millis(100);
        config.notifier.retry_base = Duration::from_secs(10);
        config.notifier.retry_max = Duration::from_secs(60);
        config.notifier.max_attempts = 3;
        config.actions.signing_key = "notifier-test-action-signing-key-0123456789".into();
        config.postgres.url = fresh_database(&config, "control").await.into();
        config.notifier.database_url = fresh_database(&config, "notifier").await.into();
        let kpi_listeners = if aggregator {
            let listeners = Listeners::ephemeral().await.expect("listeners");
            config.notifier.kpi_endpoint =
                format!("http://{}", listeners.grpc_addr().expect("address"));
            Some(listeners)
        } else {
            None
        };
        adjust(&mut config);
        let pool = PgPool::connect(config.notifier.database_url.expose_secret())
            .await
            .expect("notifier database");
        mentorstream_notifier::migrate(&pool)
            .await
            .expect("migrate");
        let producer = Producer::new(&config.kafka, WAIT).expect("producer");
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
        let gateway = WebhookReceiver::start().await;
        let sink = SmtpSink::start().await;
        context
            .tenants
            .set_channels(
                "acme",
                &TenantChannels {
                    chatbot_url: gateway.url(),
                    chatbot_secret: GATEWAY_SECRET.into(),
                    smtp_url: sink.url(),
                    email_from: "Acme Mentors <mentors@acme.example>".into(),
                    daily_cap: 10,
                },
            )
            .await
            .expect("channels");
        let key = |scopes: &'static str| {
            let tenants = context.tenants.clone();
            async move {
                tenants
                    .create_key("acme", scopes.parse().expect("scopes"))
                    .await
                    .expect("key")
                    .api_key
            }
        };
        let write_key = key("write").await;
        let read_key = key("read").await;
        if let Some(listeners) = kpi_listeners {
            tokio::spawn(mentorstream_kpi_aggregator::run(context.clone(), listeners));
        }
        let clock = ManualClock::at(now);
        let listeners = Listeners::ephemeral().await.expect("listeners");
        let addr = listeners.grpc_addr().expect("address");
        let served = tokio::spawn(mentorstream_notifier::run_with_clock(
            context.clone(),
            listeners,
            std::sync::Arc::new(clock.clone()),
        ));
        let deadline = tokio::time::Instant::now() + WAIT;
        let client = loop {
            match NotificationServiceClient::connect(format!("http://{addr}")).await {
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
            clock,
            gateway,
            sink,
            read_key,
            write_key,
            producer,
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

    pub async fn set_preferences(&mut self, preferences: proto::Preferences) {
        self.client
            .update_preferences(self.write(proto::UpdatePreferencesRequest {
                request_id: String::new(),
                preferences: Some(preferences),
                update_mask: None,
            }))
            .await
            .expect("preferences");
    }

    /// Publishes a mentorship event as the mentorship service would, keyed by `key`.
    pub async fn mentorship(
        &self,
        key: &str,
        occurred_at: DateTime<Utc>,
        payload: mentorship_event::Payload,
    ) {
        let event = MentorshipEvent {
            tenant_id: self.tenant_id.clone(),
            event_id: unique("event"),
            occurred_at: Some(timestamp(occurred_at)),
            recorded_at: Some(timestamp(occurred_at)),
            payload: Some(payload),
        };
        let topic = self.context.config.kafka.topics.mentorship.clone();
        self.produce(
            &topic,
            key,
            &event,
            &event.event_id.clone(),
            "MentorshipEvent",
        )
        .await;
    }

    /// Publishes an activity event (as ingest would) by `partner`.
    pub async fn activity(
        &self,
        partner: &str,
        id: &str,
        occurred_at: DateTime<Utc>,
        payload: mentorstream_proto::activity::v1::activity_event::Payload,
    ) {
        let event = mentorstream_proto::activity::v1::ActivityEvent {
            tenant_id: self.tenant_id.clone(),
            source: "shop".into(),
            source_event_id: id.into(),
            occurred_at: Some(timestamp(occurred_at)),
            partner_id: partner.into(),
            payload: Some(payload),
            ..Default::default()
        };
        let topic = self.context.config.kafka.topics.activity.clone();
        self.produce(&topic, partner, &event, id, "ActivityEvent")
            .await;
    }

    /// Publishes a signal of the aggregator with this id about `partner`.
    pub async fn signal(&self, signal_id: &str, partner: &str, payload: kpi_signal::Payload) {
        self.signal_at(signal_id, partner, self.clock_now(), payload)
            .await;
    }

    /// The same, as having occurred at `occurred_at`.
    pub async fn signal_at(
        &self,
        signal_id: &str,
        partner: &str,
        occurred_at: DateTime<Utc>,
        payload: kpi_signal::Payload,
    ) {
        let signal = KpiSignal {
            tenant_id: self.tenant_id.clone(),
            signal_id: signal_id.into(),
            partner_id: partner.into(),
            occurred_at: Some(timestamp(occurred_at)),
            payload: Some(payload),
        };
        let topic = self.context.config.kafka.topics.kpi_signals.clone();
        self.produce(&topic, partner, &signal, signal_id, "KpiSignal")
            .await;
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use mentorstream_notifier::Clock as _;
        self.clock.now()
    }

    pub async fn produce_raw(&self, topic: &str, key: &str, payload: Vec<u8>) {
        let mut record = OutboundRecord::protobuf(
            topic,
            format!("{}/{key}", self.tenant_id),
            &KpiSignal::default(),
            CloudEvent {
                id: unique("poison"),
                event_type: "garbage".into(),
                source: "/tests".into(),
                time: Utc::now(),
            },
        );
        record.payload = Some(payload);
        self.producer.send(&record).await.expect("produced");
    }

    async fn produce(
        &self,
        topic: &str,
        key: &str,
        message: &impl prost::Message,
        id: &str,
        type_name: &str,
    ) {
        self.producer
            .send(&OutboundRecord::protobuf(
                topic,
                format!("{}/{key}", self.tenant_id),
                message,
                CloudEvent {
                    id: id.into(),
                    event_type: format!("mentorstream.test.{type_name}"),
                    source: "/tests".into(),
                    time: Utc::now(),
                },
            ))
            .await
            .expect("produced");
    }

    /// Every notification of `recipient`, oldest first, read through the API.
    pub async fn notifications(&self, recipient: &str) -> Vec<proto::Notification> {
        let mut client = self.client.clone();
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_notifications(self.read(proto::ListNotificationsRequest {
                    recipient_id: recipient.into(),
                    status: 0,
                    page_size: 2,
                    page_token: page_token.clone(),
                }))
                .await
                .expect("list")
                .into_inner();
            all.extend(page.notifications);
            if page.next_page_token.is_empty() {
                return all;
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits until `recipient`'s notifications satisfy `done`; returns them.
    pub async fn wait_for(
        &self,
        recipient: &str,
        what: &str,
        done: impl Fn(&[proto::Notification]) -> bool,
    ) -> Vec<proto::Notification> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notifications = self.notifications(recipient).await;
            if done(&notifications) {
                return notifications;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{recipient}: never {what}: {notifications:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.context.shutdown.trigger();
        self.served
            .await
            .expect("service task")
            .expect("service ends cleanly");
    }
}

/// The first `count` records of `topic`: payload and headers.
pub async fn read_raw(
    kafka: &mentorstream_config::KafkaConfig,
    topic: &str,
    count: usize,
) -> Vec<(Vec<u8>, std::collections::HashMap<String, String>)> {
    use futures::StreamExt as _;
    use mentorstream_kafka::{Headers as _, Message as _};
    let consumer =
        mentorstream_kafka::Consumer::new(kafka, &unique("reader"), &[topic]).expect("consumer");
    let mut stream = consumer.inner().stream();
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        let message = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} records on {topic}", records.len()))
            .expect("stream")
            .expect("message");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push((message.payload().unwrap_or_default().to_vec(), headers));
    }
    records
}

/// The statuses of `notifications` by kind of cause, for exact comparisons.
pub fn statuses(notifications: &[proto::Notification]) -> Vec<(String, proto::NotificationStatus)> {
    notifications
        .iter()
        .map(|notification| (notification.cause.clone(), notification.status()))
        .collect()
}

/// Whether every one of `notifications` has left PENDING.
pub fn settled(notifications: &[proto::Notification]) -> bool {
    notifications
        .iter()
        .all(|notification| notification.status() != proto::NotificationStatus::Pending)
}
