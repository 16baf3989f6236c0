//! `mentorstream admin erase-partner`: afterwards no API (gRPC or HTTP/JSON), no Redis value,
//! no row of mentorship's, the notifier's or the control database and no record of the
//! activity topic shows the partner's name or contacts (the topic's copy was sealed with a key
//! that is now destroyed), a redelivered enrolment writes nothing back, and the tenant's
//! totals are what they were.

use chrono::Utc;
use mentorstream_config::ExposeSecret as _;
use mentorstream_e2e::{Service, System};
use mentorstream_proto::activity::v1::activity_event::Payload;
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, PartnerEnrolled};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::kpi::v1::SubjectKind;
use mentorstream_proto::mentorship::v1::GetPartnerRequest;
use mentorstream_proto::notification::v1 as notification;

use crate::truth::{Clients, subject, timestamp};

/// What only Erin's personal data holds.
const PERSONAL: [&str; 4] = [
    "Erin Secretname",
    "erin.private@example.com",
    "tg-erin-private",
    "Europe/Berlin",
];

fn enrolment(id: &str) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(Utc::now() - chrono::Duration::minutes(2)),
        partner_id: "erin".into(),
        payload: Some(Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: "root".into(),
            display_name: "Erin Secretname".into(),
            locale: "en-US".into(),
            time_zone: "Europe/Berlin".into(),
            ..PartnerEnrolled::default()
        })),
        ..ActivityEvent::default()
    }
}

fn order(id: &str, partner: &str) -> ActivityEvent {
    let volume = || {
        Some(Decimal {
            value: "12.50".into(),
        })
    };
    ActivityEvent {
        source: "shop".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(Utc::now() - chrono::Duration::minutes(1)),
        partner_id: partner.into(),
        payload: Some(Payload::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            volume: volume(),
            amount: Some(Money {
                amount: volume(),
                currency_code: "EUR".into(),
            }),
        })),
        ..ActivityEvent::default()
    }
}

/// Every row of every table of the database at `url`, as text, that holds a personal string.
async fn rows_with_personal_data(url: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(url).await.expect("database");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    let mut found = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
            .fetch_all(&pool)
            .await
            .expect("rows");
        for row in rows {
            if PERSONAL.iter().any(|personal| row.contains(personal)) {
                found.push(format!("{table}: {row}"));
            }
        }
    }
    found
}

/// Every Redis key of the system's prefix whose value holds a personal string.
async fn redis_values_with_personal_data(system: &System) -> Vec<String> {
    let client = redis::Client::open(system.config.redis.url.expose_secret()).expect("redis");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let pattern = format!("{}*", system.config.redis.key_prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut redis)
        .await
        .expect("keys");
    let mut found = Vec::new();
    for key in keys {
        // DUMP serialises any type: strings, hashes, sets, sorted sets, streams.
        let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .expect("dump");
        let text = String::from_utf8_lossy(&dumped.unwrap_or_default()).into_owned();
        if PERSONAL.iter().any(|personal| text.contains(personal)) || key.contains("Secretname") {
            found.push(key);
        }
    }
    found
}

/// Erin's enrolments on the activity topic, which keeps every record: (source_event_id,
/// sealed personal fields), and whether any record of hers shows a personal string.
async fn enrolments_on_the_activity_topic(system: &System) -> (Vec<(String, Vec<u8>)>, bool) {
    use mentorstream_kafka::Message as _;
    use prost::Message as _;
    let key = format!("{}/erin", system.tenant_id);
    let mut enrolments = Vec::new();
    let mut readable = false;
    for record in mentorstream_testkit::read_to_end(
        &system.config.kafka,
        &system.config.kafka.topics.activity,
    )
    .await
    {
        if record.key() != Some(key.as_bytes()) {
            continue;
        }
        let payload = record.payload().expect("a value");
        let text = String::from_utf8_lossy(payload);
        readable |= PERSONAL.iter().any(|personal| text.contains(personal));
        let event = ActivityEvent::decode(payload).expect("an activity event");
        if let Some(Payload::PartnerEnrolled(enrolled)) = event.payload {
            enrolments.push((event.source_event_id, enrolled.sealed_personal));
        }
    }
    (enrolments, readable)
}

#[tokio::test]
async fn an_erased_partner_leaves_no_personal_data_and_every_total_stands() {
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    system
        .notifications()
        .await
        .update_preferences(system.request(notification::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(notification::Preferences {
                partner_id: "erin".into(),
                chatbot_user_id: "tg-erin-private".into(),
                email: "erin.private@example.com".into(),
                ..notification::Preferences::default()
            }),
            update_mask: None,
        }))
        .await
        .expect("preferences");
    let mut root = enrolment("enrol-root");
    root.partner_id = "root".into();
    root.payload = Some(Payload::PartnerEnrolled(PartnerEnrolled::default()));
    let accepted = clients
        .ingest(vec![
            root,
            enrolment("enrol-erin"),
            order("o-1", "erin"),
            order("o-2", "root"),
        ])
        .await;
    clients.wait_as_of(accepted).await;
    // Erin's first-sale congratulation reached her chat-bot.
    system.gateway.wait_for(1).await;
    let tenant = subject(SubjectKind::Tenant, "");
    let before = clients
        .scorecard(tenant.clone())
        .await
        .expect("tenant")
        .values;

    // Before: the databases hold Erin's name and contacts (so the scans below can see them).
    let held = rows_with_personal_data(system.config.mentorship.database_url.expose_secret()).await;
    assert!(
        held.iter().any(|row| row.contains("Erin Secretname")),
        "{held:?}"
    );
    let held = rows_with_personal_data(system.config.notifier.database_url.expose_secret()).await;
    assert!(
        held.iter()
            .any(|row| row.contains("erin.private@example.com")),
        "{held:?}"
    );

    let erased = system.cli_json(&[
        "admin",
        "erase-partner",
        "--tenant",
        "acme",
        "--partner",
        "erin",
    ]);
    assert_eq!(erased["mentorship"]["partner"], 1, "{erased}");
    assert_eq!(erased["notifier"]["preferences"], 1, "{erased}");
    assert_eq!(
        erased["activity_topic"]["data_key_destroyed"], true,
        "{erased}"
    );

    // A redelivered (or replayed) enrolment writes nothing back.
    clients.ingest(vec![enrolment("enrol-erin-again")]).await;
    clients.wait_as_of(Utc::now()).await;

    // The activity topic keeps every record; Erin's name was sealed with her key, which is
    // gone, and nothing personal of the enrolment sent after the erasure was kept at all.
    let (enrolments, readable) = enrolments_on_the_activity_topic(&system).await;
    assert!(!readable, "a record of Erin's shows her personal data");
    let sealed: Vec<(&str, bool)> = enrolments
        .iter()
        .map(|(id, sealed)| (id.as_str(), sealed.is_empty()))
        .collect();
    assert_eq!(sealed, [("enrol-erin", false), ("enrol-erin-again", true)]);

    // The APIs: mentorship's partner, the notifier's preferences and notifications.
    let partner = clients
        .mentorship
        .get_partner(system.request(GetPartnerRequest {
            partner_id: "erin".into(),
        }))
        .await
        .expect("partner")
        .into_inner()
        .partner
        .expect("partner");
    assert_eq!(
        (
            partner.display_name.as_str(),
            partner.locale.as_str(),
            partner.time_zone.as_str()
        ),
        ("", "", "")
    );
    assert_eq!(partner.sponsor_id, "root", "the genealogy stays");
    let mut texts = vec![format!("{partner:?}")];
    let preferences = system
        .notifications()
        .await
        .get_preferences(system.request(notification::GetPreferencesRequest {
            partner_id: "erin".into(),
        }))
        .await
        .expect("preferences")
        .into_inner();
    texts.push(format!("{preferences:?}"));
    texts.push(format!("{:?}", system.notifications_of("erin").await));
    for (service, path, body) in [
        (
            Service::Mentorship,
            "/v1/mentorship/GetPartner",
            serde_json::json!({"partnerId": "erin"}),
        ),
        (
            Service::Notifier,
            "/v1/notification/GetPreferences",
            serde_json::json!({"partnerId": "erin"}),
        ),
        (
            Service::Notifier,
            "/v1/notification/ListNotifications",
            serde_json::json!({"recipientId": "erin"}),
        ),
        (
            Service::Kpi,
            "/v1/kpi/GetJourney",
            serde_json::json!({"partnerId": "erin"}),
        ),
    ] {
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", system.endpoint(service)))
            .bearer_auth(&system.api_key)
            .json(&body)
            .send()
            .await
            .expect("http")
            .text()
            .await
            .expect("text");
        texts.push(format!("{path}: {answer}"));
    }
    for text in &texts {
        assert!(
            !PERSONAL.iter().any(|personal| text.contains(personal)),
            "{text}"
        );
    }
    // The databases and Redis.
    for url in [
        system.config.mentorship.database_url.expose_secret(),
        system.config.notifier.database_url.expose_secret(),
        system.config.postgres.url.expose_secret(),
    ] {
        assert_eq!(rows_with_personal_data(url).await, Vec::<String>::new());
    }
    assert_eq!(
        redis_values_with_personal_data(&system).await,
        Vec::<String>::new()
    );
    // The numbers: the tenant's totals as they were, Erin's own still hers.
    let after = clients.scorecard(tenant).await.expect("tenant").values;
    assert_eq!(after, before);
    system.stop();
}
