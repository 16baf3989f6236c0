//! The whole system through its public APIs: a simulated company's weeks, sent the way messy
//! integrations send — duplicates, conflicting replays, out of order, late — give exactly the
//! KPIs the oracle computes from the accepted events, over gRPC and over the HTTP/JSON API
//! alike, and every notification reaches the local gateway or mail server once.

use std::collections::BTreeSet;

use mentorstream_e2e::{Service, System, expected};
use mentorstream_proto::notification::v1 as notification;
use mentorstream_sim::disorder::disorder;
use mentorstream_sim::{Payload, SimConfig, generate};

#[tokio::test]
async fn a_messy_stream_gives_the_oracles_kpis_and_each_notification_once() {
    let mut system = System::start(false).await;
    let scenario = company();
    let partners: Vec<String> = scenario
        .activity()
        .filter(|(_, activity)| matches!(activity.payload, Payload::Enrolled { .. }))
        .map(|(_, activity)| activity.partner_id.clone())
        .collect();
    // Half the partners on the chat-bot, half by e-mail.
    let mut preferences = system.notifications().await;
    for (index, partner) in partners.iter().enumerate() {
        let (chatbot_user_id, email) = if index % 2 == 0 {
            (format!("tg-{partner}"), String::new())
        } else {
            (String::new(), format!("{partner}@example.com"))
        };
        preferences
            .update_preferences(system.request(notification::UpdatePreferencesRequest {
                request_id: String::new(),
                preferences: Some(notification::Preferences {
                    partner_id: partner.clone(),
                    chatbot_user_id,
                    email,
                    ..notification::Preferences::default()
                }),
                update_mask: None,
            }))
            .await
            .expect("preferences");
    }

    let report = check_against_the_oracle(&system, &scenario, system.driver()).await;

    let delivered = system
        .notifications_settle(&scenario, &report, &partners)
        .await;
    eprintln!(
        "{} notifications delivered ({} webhooks, {} e-mails received)",
        delivered.len(),
        system.gateway.received().len(),
        system.sink.received().len()
    );
    system.stop();
}

/// The same company's weeks sent through the HTTP/JSON API instead of gRPC give the oracle's
/// numbers too: both transports reach the same handlers, and this proves it end to end.
#[tokio::test]
async fn the_same_messy_stream_over_http_json_gives_the_oracles_kpis() {
    let mut system = System::start(false).await;
    let scenario = company();
    let driver = mentorstream_sim::Driver::over_http(
        &system.endpoint(Service::Ingest),
        &system.endpoint(Service::Mentorship),
        &system.api_key,
    )
    .expect("driver");
    check_against_the_oracle(&system, &scenario, driver).await;
    system.stop();
}

/// The company both tests send: 100 partners over the last 20 days, seed 2026.
fn company() -> mentorstream_sim::Scenario {
    generate(&SimConfig {
        seed: 2026,
        partners: 100,
        days: 20,
        end: chrono::Utc::now(),
    })
}

/// Sends `scenario` disordered (duplicates, conflicting replays, out of order, late) with
/// `driver`, then requires every answer and every KPI to be what the oracle says.
async fn check_against_the_oracle(
    system: &System,
    scenario: &mentorstream_sim::Scenario,
    mut driver: mentorstream_sim::Driver,
) -> mentorstream_sim::Report {
    let (messy, disorder) = disorder(scenario, 7);
    let report = driver.run(&messy).await.expect("driven");
    let events = scenario.activity().count() as u64;
    eprintln!(
        "sent {} events ({events} distinct, {} copies, {} conflicting replays, {} late): \
         {} accepted, {} duplicate, {} rejected; {} mentoring calls, {} refused",
        report.events_sent,
        disorder.duplicates,
        disorder.conflicts,
        disorder.late,
        report.accepted,
        report.duplicate,
        report.rejected,
        report.calls,
        report.calls_refused
    );
    assert_eq!(report.accepted, events);
    assert_eq!(report.duplicate, disorder.duplicates);
    assert_eq!(report.rejected, disorder.conflicts);
    assert_eq!(report.calls_refused, 0, "{:?}", report.refusals);

    let expected = expected(scenario, &report.created);
    let mismatches = expected.settle(system).await;
    assert!(
        mismatches.is_empty(),
        "{} numbers differ from the oracle, e.g. {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );
    eprintln!(
        "{} counters of {} subjects equal the oracle",
        expected.counters.len(),
        expected
            .counters
            .keys()
            .map(|(kind, subject, _, _)| (kind, subject))
            .collect::<BTreeSet<_>>()
            .len()
    );

    report
}
