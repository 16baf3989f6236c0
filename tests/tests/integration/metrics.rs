//! Every service's `/metrics` after a known workload, exact: ingest's verdicts, the
//! aggregator's applied records, mentorship's relayed outbox events, the notifier's delivery,
//! and every server's calls by method and code — and no label holds a tenant or partner id.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_proto::activity::v1::activity_event::Payload;
use mentorstream_proto::activity::v1::{ActivityEvent, OrderPlaced, PartnerEnrolled};
use mentorstream_proto::common::v1::{Decimal, Money};
use mentorstream_proto::ingest::v1::IngestRequest;
use mentorstream_proto::kpi::v1::GetJourneyRequest;
use mentorstream_proto::notification::v1 as notification;

use crate::truth::{Clients, timestamp};

/// One sample: metric name and labels.
type Sample = (String, BTreeMap<String, String>);

/// The samples of a Prometheus text exposition.
fn parse(text: &str) -> BTreeMap<Sample, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("label=value");
                (key.to_owned(), value.trim_matches('"').to_owned())
            })
            .collect();
        samples.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    samples
}

async fn scrape(system: &System, service: Service) -> (String, BTreeMap<Sample, f64>) {
    let text = reqwest::get(format!("{}/metrics", system.admin(service)))
        .await
        .expect("scraped")
        .text()
        .await
        .expect("text");
    let samples = parse(&text);
    (text, samples)
}

fn value(samples: &BTreeMap<Sample, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    samples.get(&(name.to_owned(), labels)).copied()
}

/// Scrapes `service` until `check` holds (what a scrape shows trails the work by a moment).
async fn scrape_until(
    system: &System,
    service: Service,
    what: &str,
    check: impl Fn(&BTreeMap<Sample, f64>) -> bool,
) -> (String, BTreeMap<Sample, f64>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (text, samples) = scrape(system, service).await;
        if check(&samples) {
            return (text, samples);
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn event(id: &str, partner: &str, payload: Payload) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: id.into(),
        occurred_at: timestamp(Utc::now() - chrono::Duration::minutes(1)),
        partner_id: partner.into(),
        payload: Some(payload),
        ..ActivityEvent::default()
    }
}

fn order(id: &str, partner: &str) -> ActivityEvent {
    let volume = || {
        Some(Decimal {
            value: "10.00".into(),
        })
    };
    event(
        id,
        partner,
        Payload::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            volume: volume(),
            amount: Some(Money {
                amount: volume(),
                currency_code: "EUR".into(),
            }),
        }),
    )
}

#[tokio::test]
async fn every_service_reports_exact_counters_after_a_known_workload() {
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    // The mentee hears of her first sale on the chat-bot.
    system
        .notifications()
        .await
        .update_preferences(system.request(notification::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(notification::Preferences {
                partner_id: "mila".into(),
                chatbot_user_id: "tg-mila".into(),
                ..notification::Preferences::default()
            }),
            update_mask: None,
        }))
        .await
        .expect("preferences");
    let batch = vec![
        event(
            "enrol-olga",
            "olga",
            Payload::PartnerEnrolled(PartnerEnrolled::default()),
        ),
        event(
            "enrol-mila",
            "mila",
            Payload::PartnerEnrolled(PartnerEnrolled {
                sponsor_id: "olga".into(),
                ..PartnerEnrolled::default()
            }),
        ),
        order("order-1", "mila"),
        order("order-2", "mila"),
        order("order-3", "mila"),
    ];
    let accepted = clients.ingest(batch.clone()).await;
    // The same batch again: five duplicates.
    let repeated = clients
        .ingest
        .ingest(system.request(IngestRequest { events: batch }))
        .await
        .expect("repeated")
        .into_inner();
    assert_eq!(repeated.results.len(), 5);
    clients.wait_as_of(accepted).await;
    // Mila's first sale reaches the gateway once (before she has a mentor: no note to one).
    system.gateway.wait_for(1).await;

    let program_id = clients.pilot_program("Metrics").await;
    clients.group_of(&program_id, "olga", &["mila"]).await;
    clients
        .kpi
        .get_journey(system.request(GetJourneyRequest {
            partner_id: "mila".into(),
        }))
        .await
        .expect("journey");

    // Ingest: five accepted, five duplicates, in two calls.
    let calls = "mentorstream_server_requests_total";
    let ingest_calls = [
        ("code", "Ok"),
        ("method", "IngestService/Ingest"),
        ("protocol", "grpc"),
    ];
    let (_, ingest) = scrape_until(&system, Service::Ingest, "two Ingest calls", |s| {
        value(s, calls, &ingest_calls).is_some()
    })
    .await;
    let events = "mentorstream_ingest_events_total";
    assert_eq!(
        value(&ingest, events, &[("reason", ""), ("status", "accepted")]),
        Some(5.0)
    );
    assert_eq!(
        value(&ingest, events, &[("reason", ""), ("status", "duplicate")]),
        Some(5.0)
    );
    assert_eq!(value(&ingest, calls, &ingest_calls), Some(2.0));

    // Mentorship: the group and the assignment, relayed once each; nothing left waiting.
    let relayed = "mentorstream_mentorship_outbox_relayed_total";
    let (_, mentorship) = scrape_until(&system, Service::Mentorship, "relayed and idle", |s| {
        value(s, relayed, &[("event_type", "MenteeAssigned")]) == Some(1.0)
            && value(s, "mentorstream_mentorship_outbox_backlog", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(
        value(&mentorship, relayed, &[("event_type", "GroupCreated")]),
        Some(1.0)
    );
    let assign = [
        ("code", "Ok"),
        ("method", "MentorshipService/AssignMentee"),
        ("protocol", "grpc"),
    ];
    assert_eq!(value(&mentorship, calls, &assign), Some(1.0));

    // The aggregator: the five activity records and the two mentorship events, applied.
    let records = "mentorstream_aggregator_records_total";
    let journey = [
        ("code", "Ok"),
        ("method", "KpiService/GetJourney"),
        ("protocol", "grpc"),
    ];
    let (_, kpi) = scrape_until(&system, Service::Kpi, "seven records applied", |s| {
        value(s, records, &[("outcome", "applied")]) == Some(7.0)
            && value(s, calls, &journey).is_some()
    })
    .await;
    assert_eq!(value(&kpi, records, &[("outcome", "dead_lettered")]), None);
    assert_eq!(value(&kpi, calls, &journey), Some(1.0));
    // Its Redis calls are timed (how many depends on how the records were batched), and none
    // went unanswered.
    let timed = value(
        &kpi,
        "mentorstream_redis_call_seconds_count",
        &[("kind", "command")],
    );
    assert!(
        timed.is_some_and(|count| count >= 1.0),
        "Redis calls: {timed:?}"
    );
    for kind in ["command", "pipeline"] {
        assert_eq!(
            value(
                &kpi,
                "mentorstream_redis_unanswered_total",
                &[("kind", kind)]
            ),
            None
        );
    }

    // The notifier: one delivery on the chat-bot, one preferences call.
    let attempts = "mentorstream_notifier_attempts_total";
    let delivered = [("channel", "chatbot"), ("outcome", "delivered")];
    let (_, notifier) = scrape_until(&system, Service::Notifier, "one delivery", |s| {
        value(s, attempts, &delivered).is_some()
    })
    .await;
    assert_eq!(value(&notifier, attempts, &delivered), Some(1.0));
    let preferences = [
        ("code", "Ok"),
        ("method", "NotificationService/UpdatePreferences"),
        ("protocol", "grpc"),
    ];
    assert_eq!(value(&notifier, calls, &preferences), Some(1.0));

    // No label anywhere holds the tenant or a partner.
    for service in Service::ALL {
        let (text, _) = scrape(&system, service).await;
        for id in [system.tenant_id.as_str(), "olga", "mila"] {
            assert!(
                !text.contains(&format!("\"{id}\"")),
                "{service:?} labels {id}:\n{text}"
            );
        }
    }
    system.stop();
}
