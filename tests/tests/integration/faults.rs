//! Fault runs, on a three-node Kafka cluster (3 replicas, 2 in sync required) and a Redis of
//! the test's own: while a simulated company streams in, every service is killed with SIGKILL
//! and restarted, then the broker leading activity partition 0 is killed, the stream goes on
//! without it, and it is restarted; afterwards Redis loses everything and `mentorstream kpi
//! rebuild` recomputes the KPIs from Kafka. Every number still equals the oracle (each
//! accepted event counted once), every notification arrived, none twice for one cause.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use mentorstream_e2e::{Service, System, expected};
use mentorstream_proto::notification::v1 as notification;
use mentorstream_sim::disorder::disorder;
use mentorstream_sim::{Payload, SimConfig, generate};

#[tokio::test]
async fn kills_restarts_and_a_lost_redis_change_no_number_and_lose_no_notification() {
    let mut system = System::start(true).await;
    let scenario = generate(&SimConfig {
        seed: 77,
        partners: 60,
        days: 14,
        end: chrono::Utc::now(),
    });
    let partners: Vec<String> = scenario
        .activity()
        .filter(|(_, activity)| matches!(activity.payload, Payload::Enrolled { .. }))
        .map(|(_, activity)| activity.partner_id.clone())
        .collect();
    let mut preferences = system.notifications().await;
    for partner in &partners {
        preferences
            .update_preferences(system.request(notification::UpdatePreferencesRequest {
                request_id: String::new(),
                preferences: Some(notification::Preferences {
                    partner_id: partner.clone(),
                    chatbot_user_id: format!("tg-{partner}"),
                    ..notification::Preferences::default()
                }),
                update_mask: None,
            }))
            .await
            .expect("preferences");
    }

    let (messy, disorder) = disorder(&scenario, 3);
    let total = messy.steps.len() as u64;
    let mut driver = system.driver();
    let sent = driver.sent.clone();
    let driving = tokio::spawn(async move { driver.run(&messy).await });
    // Each fault at its share of the stream; every service comes back at once, the broker
    // after a tenth of the stream went on without it.
    let faults: [(u64, &str); 6] = [
        (15, "ingest"),
        (30, "mentorship"),
        (45, "kpi-aggregator"),
        (60, "notifier"),
        (70, "activity leader"),
        (80, "activity leader back"),
    ];
    let mut killed_leader = None;
    for (percent, what) in faults {
        while sent.load(Ordering::Relaxed) * 100 < total * percent && !driving.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "fault at step {} of {total}: {what}",
            sent.load(Ordering::Relaxed)
        );
        let service = match what {
            "ingest" => Some(Service::Ingest),
            "mentorship" => Some(Service::Mentorship),
            "kpi-aggregator" => Some(Service::Kpi),
            "notifier" => Some(Service::Notifier),
            _ => None,
        };
        match service {
            Some(service) => {
                system.kill_9(service);
                system.restart(service);
            }
            None => {
                let activity = system.config.kafka.topics.activity.clone();
                let broker = system.broker.as_mut().expect("private cluster");
                match killed_leader.take() {
                    None => {
                        let leader = broker.leader_of(&activity, 0);
                        eprintln!("kill -9 broker {leader}, the leader of {activity}/0");
                        broker.kill(leader);
                        killed_leader = Some(leader);
                    }
                    Some(leader) => broker.resume(leader).await,
                }
            }
        }
    }
    let report = tokio::time::timeout(mentorstream_e2e::WAIT, driving)
        .await
        .expect("the stream ends within the wait")
        .expect("driver task")
        .expect("driven");
    let events = scenario.activity().count() as u64;
    assert_eq!(report.accepted, events);
    assert_eq!(report.duplicate, disorder.duplicates);
    assert_eq!(report.rejected, disorder.conflicts);
    assert_eq!(report.calls_refused, 0, "{:?}", report.refusals);

    let expected = expected(&scenario, &report.created);
    let subjects = expected
        .counters
        .keys()
        .map(|(kind, subject, _, _)| (kind, subject))
        .collect::<BTreeSet<_>>()
        .len();
    let mismatches = expected.settle(&system).await;
    assert!(
        mismatches.is_empty(),
        "after the kills, {} numbers differ from the oracle, e.g. {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );

    // Redis loses everything; the KPIs are rebuilt from Kafka.
    let redis = system.redis.as_mut().expect("private redis");
    redis.kill();
    redis.resume().await;
    let rebuilt = system.cli_ok(&["kpi", "rebuild"]);
    eprintln!("{}", rebuilt.trim());
    let mismatches = expected.settle(&system).await;
    assert!(
        mismatches.is_empty(),
        "after the rebuild, {} numbers differ from the oracle, e.g. {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(20)]
    );

    let delivered = system
        .notifications_settle(&scenario, &report, &partners)
        .await;
    // A message the gateway got more than once came again only because its sender was
    // killed before it recorded the delivery: same key, same body.
    let mut bodies: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for request in system.gateway.received() {
        bodies
            .entry(request.idempotency_key)
            .or_default()
            .insert(request.body);
    }
    assert!(bodies.values().all(|bodies| bodies.len() == 1));
    let requests = system.gateway.received().len();
    eprintln!(
        "events: {} sent, {} accepted ({events} distinct, {} of them stored by a try cut off by a \
         kill and answered DUPLICATE on its retry; {} copies answered DUPLICATE, {} conflicting \
         replays REJECTED); counted: {} counters over {subjects} subjects equal \
         the oracle after the kills and again after the rebuild; notifications: {} delivered, \
         {} distinct at the gateway, {} requests ({} resent after the notifier's kill)",
        report.events_sent,
        report.accepted,
        report.accepted_unanswered,
        report.duplicate,
        report.rejected,
        expected.counters.len(),
        delivered.len(),
        bodies.len(),
        requests,
        requests - bodies.len()
    );
    system.stop();
}
