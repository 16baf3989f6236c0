//! The notifier as its own process: killed with SIGKILL while due notifications are being
//! sent, then restarted; every due notification reaches the gateway, none is lost, each is
//! recorded as delivered once, and a resend after the crash carries the same idempotency key
//! and the same body, so the gateway can drop it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use mentorstream_config::Config;
use mentorstream_kafka::{CloudEvent, OutboundRecord, Producer};
use mentorstream_proto::mentorship::v1::{MentorshipEvent, SessionScheduled, mentorship_event};
use mentorstream_proto::notification::v1 as proto;
use mentorstream_proto::notification::v1::notification_service_client::NotificationServiceClient;
use mentorstream_tenancy::{TenantChannels, Tenants};
use mentorstream_testkit::{ServiceProcess, WebhookReceiver, fresh_database, unique};
use sqlx::PgPool;

const BIN: &str = env!("CARGO_BIN_EXE_mentorstream-notifier");
const WAIT: Duration = Duration::from_secs(90);
/// Sessions whose reminders are due at once, and ones whose 15-minute reminder comes later.
const DUE_NOW: usize = 10;
const DUE_LATER: usize = 5;

async fn count(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(query)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_crash_while_sending_loses_nothing_and_sends_nothing_twice() {
    let mut config = Config::load(None).expect("defaults");
    config.kafka.topics.mentorship = unique("t.mentorship");
    config.kafka.topics.kpi_signals = unique("t.signals");
    let control = fresh_database(&config, "control").await;
    let database = fresh_database(&config, "notifier").await;
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
    let gateway = WebhookReceiver::start().await;
    // Slow answers, so that the kill finds attempts in flight.
    gateway.delay_answers(Duration::from_millis(200));
    tenants
        .set_channels(
            "acme",
            &TenantChannels {
                chatbot_url: gateway.url(),
                chatbot_secret: "gateway-secret-0123456789".into(),
                daily_cap: 1000,
                ..TenantChannels::default()
            },
        )
        .await
        .expect("channels");
    let key = tenants
        .create_key("acme", "write,read".parse().expect("scopes"))
        .await
        .expect("key")
        .api_key;
    let pool = PgPool::connect(&database).await.expect("notifier database");
    mentorstream_notifier::migrate(&pool)
        .await
        .expect("migrate");
    let file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        file.path(),
        format!(
            "[kafka.topics]\nmentorship = \"{}\"\nkpi_signals = \"{}\"\n\
             [postgres]\nurl = \"{control}\"\n\
             [notifier]\ndatabase_url = \"{database}\"\ndispatch_interval = \"200ms\"\n\
             send_timeout = \"2s\"\n[shutdown]\ngrace_period = \"15s\"\n\
             {}",
            config.kafka.topics.mentorship,
            config.kafka.topics.kpi_signals,
            mentorstream_testkit::SHORT_CONSUMER_SESSIONS
        ),
    )
    .expect("write config");
    let (mut service, addr) = ServiceProcess::start(BIN, file.path(), "NOTIFIER", &[]);

    let sessions = DUE_NOW + DUE_LATER;
    let mut client = NotificationServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("client");
    for partner in std::iter::once("m-1".to_owned()).chain((0..sessions).map(|i| format!("p-{i}")))
    {
        let request = mentorstream_testkit::authorized(
            &key,
            proto::UpdatePreferencesRequest {
                request_id: String::new(),
                preferences: Some(proto::Preferences {
                    partner_id: partner.clone(),
                    chatbot_user_id: format!("tg-{partner}"),
                    ..proto::Preferences::default()
                }),
                update_mask: None,
            },
        );
        client
            .update_preferences(request)
            .await
            .expect("preferences");
    }

    // Sessions starting in 14 minutes: their 15-minute reminder is due now. Sessions starting
    // in 15 minutes and 25 seconds: their 24-hour reminder is due now, the 15-minute one in 25
    // seconds — after the restart.
    let now = Utc::now();
    let producer = Producer::new(&config.kafka, WAIT).expect("producer");
    for i in 0..sessions {
        let starts_at = if i < DUE_NOW {
            now + TimeDelta::minutes(14)
        } else {
            now + TimeDelta::minutes(15) + TimeDelta::seconds(25)
        };
        let event = MentorshipEvent {
            tenant_id: tenant.tenant_id.clone(),
            event_id: format!("event-{i}"),
            occurred_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            }),
            recorded_at: None,
            payload: Some(mentorship_event::Payload::SessionScheduled(
                SessionScheduled {
                    session_id: format!("s-{i}"),
                    group_id: "g-1".into(),
                    mentor_id: "m-1".into(),
                    mentee_ids: vec![format!("p-{i}")],
                    starts_at: Some(prost_types::Timestamp {
                        seconds: starts_at.timestamp(),
                        nanos: 0,
                    }),
                    duration: Some(prost_types::Duration {
                        seconds: 900,
                        nanos: 0,
                    }),
                    topic: format!("Topic {i}"),
                    module_id: String::new(),
                },
            )),
        };
        producer
            .send(&OutboundRecord::protobuf(
                &config.kafka.topics.mentorship,
                format!("{}/s-{i}", tenant.tenant_id),
                &event,
                CloudEvent {
                    id: event.event_id.clone(),
                    event_type: "mentorstream.mentorship.v1.MentorshipEvent".into(),
                    source: "/tests".into(),
                    time: now,
                },
            ))
            .await
            .expect("produced");
    }
    // A reminder each to the mentor and the mentee: the 15-minute one for sessions due now
    // (the 24-hour one would come at the same moment, so there is none), both for the others.
    let expected = i64::try_from(DUE_NOW * 2 + DUE_LATER * 4).expect("small");

    // Killed in the middle of sending.
    gateway.wait_for(8).await;
    service.kill_9();
    let before_restart = gateway.received().len();
    let delivered_before = count(
        &pool,
        "SELECT count(*) FROM notifications WHERE status = 'delivered'",
    )
    .await;
    assert!(
        delivered_before < expected,
        "the kill came after everything was sent"
    );
    let (mut service, _) = ServiceProcess::start(BIN, file.path(), "NOTIFIER", &[]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let delivered = count(
            &pool,
            "SELECT count(*) FROM notifications WHERE status = 'delivered'",
        )
        .await;
        if delivered == expected {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let states: Vec<(String, String, i32)> =
                sqlx::query_as("SELECT cause, status, attempts FROM notifications ORDER BY cause")
                    .fetch_all(&pool)
                    .await
                    .expect("states");
            panic!("{delivered} of {expected} delivered: {states:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    service.terminate();

    // Exactly the planned notifications, each delivered, each with one recorded attempt.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM notifications").await,
        expected
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM attempts WHERE response_code = 200"
        )
        .await,
        expected
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM attempts").await,
        expected
    );
    let ids: BTreeSet<String> = sqlx::query_scalar("SELECT notification_id FROM notifications")
        .fetch_all(&pool)
        .await
        .expect("ids")
        .into_iter()
        .collect();
    // The gateway saw every one of them; a resend after the crash carries the same key and
    // the same body.
    let mut bodies: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for request in gateway.received() {
        bodies
            .entry(request.idempotency_key.clone())
            .or_default()
            .insert(request.body.clone());
    }
    assert_eq!(bodies.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(bodies.values().all(|bodies| bodies.len() == 1));
    let received = gateway.received().len();
    eprintln!(
        "notifications: {expected}; requests at the gateway: {received} ({before_restart} \
         before the kill, {delivered_before} recorded delivered then); resent after the crash \
         with the same idempotency key: {}",
        received - ids.len()
    );
}
