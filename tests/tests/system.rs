//! The whole system through its public APIs: a simulated company's weeks, sent the way messy
//! integrations send — duplicates, conflicting replays, out of order, late — give exactly the
//! KPIs the oracle computes from the accepted events, and every notification reaches the local
//! gateway or mail server once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mentorstream_e2e::{System, WAIT, expected};
use mentorstream_proto::notification::v1::{self as notification, NotificationStatus};
use mentorstream_sim::disorder::disorder;
use mentorstream_sim::{Action, Payload, SimConfig, generate};

#[tokio::test]
async fn a_messy_stream_gives_the_oracles_kpis_and_each_notification_once() {
    let mut system = System::start(false).await;
    let scenario = generate(&SimConfig {
        seed: 2026,
        partners: 100,
        days: 20,
        end: chrono::Utc::now(),
    });
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
            }))
            .await
            .expect("preferences");
    }

    let (messy, disorder) = disorder(&scenario, 7);
    let report = system.driver().run(&messy).await.expect("driven");
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

    let expected = expected(&scenario, &report.created);
    let mismatches = expected.settle(&system).await;
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

    // Notifications: a feedback request to every attendee of every completed session, a
    // congratulation on each partner's first sale and on each rank they reached.
    let mut requests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut sellers: BTreeSet<String> = BTreeSet::new();
    let mut ranks: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for step in &scenario.steps {
        match &step.action {
            Action::CompleteSession { session, attendees } => {
                for attendee in attendees {
                    requests
                        .entry(attendee.clone())
                        .or_default()
                        .insert(format!(
                            "session:{}:feedback-request",
                            report.created[session]
                        ));
                }
            }
            Action::Activity(activity) => match &activity.payload {
                Payload::Order { .. } => {
                    sellers.insert(activity.partner_id.clone());
                }
                Payload::Rank { level, .. } => {
                    ranks
                        .entry(activity.partner_id.clone())
                        .or_default()
                        .insert(*level);
                }
                _ => {}
            },
            _ => {}
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut delivered: BTreeMap<String, notification::Notification> = BTreeMap::new();
    for partner in &partners {
        loop {
            let all = system.notifications_of(partner).await;
            let done = |subject: &str| {
                all.iter()
                    .filter(|n| {
                        n.subject.starts_with(subject)
                            && n.status() == NotificationStatus::Delivered
                    })
                    .count()
            };
            let feedback: BTreeSet<String> = all
                .iter()
                .filter(|n| {
                    n.cause.ends_with(":feedback-request")
                        && n.status() == NotificationStatus::Delivered
                })
                .map(|n| n.cause.clone())
                .collect();
            let want_feedback = requests.get(partner).cloned().unwrap_or_default();
            let want_sale = usize::from(sellers.contains(partner));
            let want_ranks = ranks.get(partner).map_or(0, BTreeSet::len);
            if feedback == want_feedback
                && done("Поздравляем с первой продажей") == want_sale
                && done("Поздравляем с рангом") == want_ranks
            {
                let causes: BTreeSet<&str> = all.iter().map(|n| n.cause.as_str()).collect();
                assert_eq!(causes.len(), all.len(), "{partner}: a cause twice");
                for notification in all {
                    if notification.status() == NotificationStatus::Delivered {
                        delivered.insert(notification.notification_id.clone(), notification);
                    }
                }
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{partner}: feedback {feedback:?} of {want_feedback:?}, first sale {} of \
                 {want_sale}, ranks {} of {want_ranks}",
                done("Поздравляем с первой продажей"),
                done("Поздравляем с рангом")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Everything delivered reached the receiver, under its own id.
    let received: BTreeSet<String> = system
        .gateway
        .received()
        .into_iter()
        .map(|request| request.idempotency_key)
        .chain(system.sink.received().into_iter().map(|email| {
            email
                .message_id
                .trim_end_matches("@mentorstream")
                .to_owned()
        }))
        .collect();
    let missing: Vec<&String> = delivered
        .keys()
        .filter(|id| !received.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "delivered but never received: {missing:?}"
    );
    eprintln!(
        "{} notifications delivered ({} webhooks, {} e-mails received)",
        delivered.len(),
        system.gateway.received().len(),
        system.sink.received().len()
    );
    system.stop();
}
