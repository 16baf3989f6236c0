//! What mentoring changes, end to end: ComparePrograms on a simulated company finds the
//! effect the simulator planted in its pilot programme (pilot mentees sell sooner), says
//! "not enough data" for a tiny cohort, over gRPC, HTTP/JSON and the CLI alike; and a newcomer
//! slipping off track reaches their mentor through the notifier once per episode.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_proto::activity::v1::activity_event::Payload;
use mentorstream_proto::activity::v1::{ActivityEvent, ModuleCompleted, PartnerEnrolled};
use mentorstream_proto::mentorship::v1::impact_service_client::ImpactServiceClient;
use mentorstream_proto::mentorship::v1::{
    AuditMentorsRequest, CompareProgramsRequest, CompareProgramsResponse, ListNewcomersRequest,
    MilestoneTargets, NewcomerStatus, Outcome, OutcomeComparison, SetMilestoneTargetsRequest,
};
use mentorstream_proto::notification::v1 as notification;
use mentorstream_sim::{Action, SimConfig, generate};

use crate::truth::{Clients, timestamp};

fn moscow(at: DateTime<Utc>) -> chrono::NaiveDate {
    at.with_timezone(&chrono_tz::Europe::Moscow).date_naive()
}

/// Mentees by the programme (scenario name) of their first assignment, with enrolment times.
fn cohorts(
    scenario: &mentorstream_sim::Scenario,
) -> BTreeMap<String, Vec<(String, DateTime<Utc>)>> {
    let mut programme_of_group = BTreeMap::new();
    let mut enrolled = BTreeMap::new();
    let mut cohorts: BTreeMap<String, Vec<(String, DateTime<Utc>)>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for step in &scenario.steps {
        match &step.action {
            Action::CreateGroup { group, program, .. } => {
                programme_of_group.insert(group.clone(), program.clone());
            }
            Action::AssignMentee { group, mentee } if seen.insert(mentee.clone()) => {
                cohorts
                    .entry(programme_of_group[group].clone())
                    .or_default()
                    .push((mentee.clone(), enrolled[mentee]));
            }
            Action::Activity(activity) => {
                if let mentorstream_sim::Payload::Enrolled { .. } = activity.payload {
                    enrolled.insert(activity.partner_id.clone(), step.at);
                }
            }
            _ => {}
        }
    }
    cohorts
}

fn outcome(answer: &CompareProgramsResponse, which: Outcome) -> &OutcomeComparison {
    answer
        .outcomes
        .iter()
        .find(|comparison| comparison.outcome == which as i32)
        .expect("every outcome is compared")
}

/// The last 03:00 in Moscow: the simulated company ends there, so that every run simulates
/// the same company (the simulator's days are the tenant's local days, and its draws follow
/// them) whatever the time of day the suite runs.
fn last_three_am() -> DateTime<Utc> {
    use chrono::TimeZone as _;
    let zone = chrono_tz::Europe::Moscow;
    let now = Utc::now();
    let today = now.with_timezone(&zone).date_naive();
    let at = |day: chrono::NaiveDate| {
        zone.from_local_datetime(&day.and_hms_opt(3, 0, 0).expect("03:00"))
            .single()
            .expect("Moscow keeps no daylight saving")
            .with_timezone(&Utc)
    };
    let candidate = at(today);
    if candidate <= now {
        candidate
    } else {
        at(today - chrono::Days::new(1))
    }
}

#[tokio::test]
async fn comparing_programmes_finds_the_pilot_effect_the_simulator_planted() {
    let mut system = System::start(false).await;
    let end = last_three_am();
    let scenario = generate(&SimConfig {
        seed: 2026,
        partners: 300,
        days: mentorstream_sim::generate::MAX_DAYS,
        end,
    });
    let report = system.driver().run(&scenario).await.expect("driven");
    assert_eq!(report.calls_refused, 0, "{:?}", report.refusals);
    let mut clients = Clients::connect(&system).await;
    clients.wait_as_of(Utc::now()).await;

    let cohorts = cohorts(&scenario);
    let (pilot, standard) = (&report.created["pilot"], &report.created["standard"]);
    let first_day = moscow(end - TimeDelta::days(i64::from(mentorstream_sim::generate::MAX_DAYS)));
    // Measured as of the simulation's end: the same company, the same moment, the same seed —
    // the same answer on every run and over every transport.
    let request = |from: chrono::NaiveDate, to: chrono::NaiveDate| CompareProgramsRequest {
        program_a: pilot.clone(),
        program_b: standard.clone(),
        enrolled_from: Some(from.into()),
        enrolled_to: Some(to.into()),
        seed: 7,
        resamples: 0,
        at: timestamp(end),
    };
    let mut impact = ImpactServiceClient::new(system.channel(Service::Mentorship).await);
    let started = std::time::Instant::now();
    let answer = impact
        .compare_programs(system.request(request(first_day, moscow(end))))
        .await
        .expect("compared")
        .into_inner();
    eprintln!("ComparePrograms took {:?} (debug build)", started.elapsed());
    let size = |name: &str| u32::try_from(cohorts[name].len()).expect("small");
    let arms = (
        answer
            .a
            .as_ref()
            .map(|arm| (arm.program_name.as_str(), arm.mentees)),
        answer
            .b
            .as_ref()
            .map(|arm| (arm.program_name.as_str(), arm.mentees)),
    );
    assert_eq!(
        arms,
        (
            Some(("Pilot cohort", size("pilot"))),
            Some(("Standard programme", size("standard")))
        )
    );
    eprintln!("{}\n{}", answer.summary_en, answer.summary_ru);
    let first_sale = outcome(&answer, Outcome::DaysToFirstSale);
    assert!(first_sale.enough_data, "{first_sale:?}");
    let difference = first_sale.difference.as_ref().expect("a difference");
    let (value, high) = (
        difference.value.expect("medians"),
        difference.high.expect("interval"),
    );
    assert!(
        value < 0.0 && high < 0.0,
        "pilot mentees sell sooner: {difference:?}"
    );
    assert!(
        answer.summary_en.contains("- Pilot cohort: first sale ")
            && answer.summary_en.contains(" days sooner (95 % CI "),
        "{}",
        answer.summary_en
    );
    assert!(
        answer.summary_ru.contains("дня раньше (95 % ДИ "),
        "{}",
        answer.summary_ru
    );
    // The same request, the same answer (the bootstrap is seeded).
    let again = impact
        .compare_programs(system.request(request(first_day, moscow(end))))
        .await
        .expect("compared")
        .into_inner();
    assert_eq!(again.outcomes, answer.outcomes);

    // A tiny cohort: the mentees enrolled on the first simulated day that has any pilot one.
    let day = cohorts["pilot"]
        .iter()
        .map(|(_, at)| moscow(*at))
        .min()
        .expect("a pilot mentee");
    let tiny = impact
        .compare_programs(system.request(request(day, day)))
        .await
        .expect("compared")
        .into_inner();
    let on_day = |name: &str| {
        u32::try_from(
            cohorts[name]
                .iter()
                .filter(|(_, at)| moscow(*at) == day)
                .count(),
        )
        .expect("small")
    };
    assert_eq!(
        tiny.a.as_ref().map(|arm| arm.mentees),
        Some(on_day("pilot"))
    );
    assert!(on_day("pilot") < tiny.min_cohort);
    assert!(
        tiny.outcomes
            .iter()
            .all(|comparison| !comparison.enough_data)
    );
    assert!(
        tiny.summary_en
            .contains("days to first sale: not enough data yet (n = "),
        "{}",
        tiny.summary_en
    );

    assert_audit(&system, &mut impact, &scenario, pilot, end).await;

    // Over HTTP/JSON and from the CLI: the same numbers.
    let url = format!(
        "{}/v1/impact/ComparePrograms",
        system.endpoint(Service::Mentorship)
    );
    let json: serde_json::Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(&system.api_key)
        .json(&serde_json::json!({
            "programA": pilot, "programB": standard, "seed": "7",
            "at": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "enrolledFrom": {"year": day.format("%Y").to_string().parse::<i32>().expect("year"),
                             "month": day.format("%m").to_string().parse::<i32>().expect("month"),
                             "day": day.format("%d").to_string().parse::<i32>().expect("day")},
            "enrolledTo": {"year": day.format("%Y").to_string().parse::<i32>().expect("year"),
                           "month": day.format("%m").to_string().parse::<i32>().expect("month"),
                           "day": day.format("%d").to_string().parse::<i32>().expect("day")},
        }))
        .send()
        .await
        .expect("http")
        .json()
        .await
        .expect("json");
    assert_eq!(
        json["summaryEn"],
        serde_json::json!(tiny.summary_en),
        "{json}"
    );
    let printed = system.cli_ok(&[
        "impact",
        "compare",
        "--api-key",
        &system.api_key,
        "--endpoint",
        &system.endpoint(Service::Mentorship),
        "--enrolled-from",
        &day.to_string(),
        "--enrolled-to",
        &day.to_string(),
        "--seed",
        "7",
        "--at",
        &end.to_rfc3339(),
    ]);
    assert!(printed.starts_with(&tiny.summary_en), "{printed}");
    system.stop();
}

/// The pilot programme's audit: every pilot mentor with a mentee, ranked by a score in 0–100
/// inside its interval, as many mentees as their group had; the CLI's CSV the same rows.
async fn assert_audit(
    system: &System,
    impact: &mut ImpactServiceClient<tonic::transport::Channel>,
    scenario: &mentorstream_sim::Scenario,
    pilot: &str,
    end: DateTime<Utc>,
) {
    let mut mentor_of_group = BTreeMap::new();
    let mut mentees: BTreeMap<String, usize> = BTreeMap::new();
    for step in &scenario.steps {
        match &step.action {
            Action::CreateGroup {
                group,
                program,
                mentor,
                ..
            } if program == "pilot" => {
                mentor_of_group.insert(group.clone(), mentor.clone());
            }
            Action::AssignMentee { group, .. } if mentor_of_group.contains_key(group) => {
                *mentees.entry(mentor_of_group[group].clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    let audit = impact
        .audit_mentors(system.request(AuditMentorsRequest {
            program_id: pilot.into(),
            seed: 7,
            at: timestamp(end),
            ..AuditMentorsRequest::default()
        }))
        .await
        .expect("audit")
        .into_inner();
    let rows: BTreeMap<String, u32> = audit
        .mentors
        .iter()
        .map(|row| (row.mentor_id.clone(), row.mentees))
        .collect();
    let expected: BTreeMap<String, u32> = mentees
        .into_iter()
        .map(|(mentor, count)| (mentor, u32::try_from(count).expect("small")))
        .collect();
    assert_eq!(rows, expected);
    let scores: Vec<(f64, f64, f64)> = audit
        .mentors
        .iter()
        .map(|row| {
            let score = row.score.expect("a score");
            (
                score.low.expect("low"),
                score.value.expect("value"),
                score.high.expect("high"),
            )
        })
        .collect();
    // A percentile interval of a shrunk score need not hold the score itself: only the order
    // of its ends and the scale are certain.
    assert!(
        scores.iter().all(|(low, value, high)| {
            (0.0..=100.0).contains(value) && 0.0 <= *low && low <= high && *high <= 100.0
        }),
        "{scores:?}"
    );
    assert!(
        scores.windows(2).all(|pair| pair[0].1 >= pair[1].1),
        "ranked: {scores:?}"
    );
    let ranks: Vec<u32> = audit.mentors.iter().map(|row| row.rank).collect();
    assert_eq!(
        ranks,
        (1..=u32::try_from(ranks.len()).expect("small")).collect::<Vec<_>>()
    );
    let csv = system.cli_ok(&[
        "impact",
        "audit",
        "--api-key",
        &system.api_key,
        "--endpoint",
        &system.endpoint(Service::Mentorship),
        "--program",
        pilot,
        "--format",
        "csv",
        "--seed",
        "7",
        "--at",
        &end.to_rfc3339(),
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("rank,mentor_id,name,mentees,score,"),
        "{csv}"
    );
    assert_eq!(lines.len(), audit.mentors.len() + 1, "{csv}");
    assert!(
        lines[1].starts_with(&format!("1,{},", audit.mentors[0].mentor_id)),
        "{csv}"
    );
}

fn enrolment(partner: &str, sponsor: &str, at: DateTime<Utc>) -> ActivityEvent {
    ActivityEvent {
        source: "crm".into(),
        source_event_id: format!("enrol-{partner}-{}", at.timestamp()),
        occurred_at: timestamp(at),
        partner_id: partner.into(),
        payload: Some(Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor.into(),
            display_name: partner.to_uppercase(),
            locale: "en-US".into(),
            time_zone: "Europe/Moscow".into(),
            ..PartnerEnrolled::default()
        })),
        ..ActivityEvent::default()
    }
}

/// The at-risk alerts about nick the gateway received for Mira.
fn alerts(system: &System) -> Vec<serde_json::Value> {
    system
        .gateway
        .received()
        .iter()
        .map(mentorstream_testkit::ReceivedWebhook::json)
        .filter(|body| {
            body["recipient_id"] == "mira"
                && body["subject"]
                    .as_str()
                    .is_some_and(|subject| subject.starts_with("Your mentee nick is at risk"))
        })
        .collect()
}

async fn wait_for_alerts(system: &System, count: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let alerts = alerts(system);
        if alerts.len() >= count {
            return alerts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} alerts",
            alerts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Until nick is on track and his episode has ended.
async fn wait_until_on_track(
    impact: &mut ImpactServiceClient<tonic::transport::Channel>,
    system: &System,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let newcomers = impact
            .list_newcomers(system.request(ListNewcomersRequest::default()))
            .await
            .expect("newcomers")
            .into_inner()
            .newcomers;
        let nick = newcomers
            .iter()
            .find(|n| n.partner_id == "nick")
            .expect("nick");
        if nick.status() == NewcomerStatus::OnTrack && nick.at_risk_since.is_none() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nick never back on track: {nick:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_newcomer_at_risk_reaches_the_mentor_once_per_episode() {
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    let now = Utc::now();
    clients
        .ingest(vec![
            enrolment("mira", "", now - TimeDelta::days(30)),
            enrolment("nick", "mira", now - TimeDelta::days(10)),
        ])
        .await;
    system
        .notifications()
        .await
        .update_preferences(system.request(notification::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(notification::Preferences {
                partner_id: "mira".into(),
                chatbot_user_id: "tg-mira".into(),
                locale: "en".into(),
                ..notification::Preferences::default()
            }),
            update_mask: None,
        }))
        .await
        .expect("preferences");
    let program_id = clients.pilot_program("Pilot").await;
    let mut impact = ImpactServiceClient::new(system.channel(Service::Mentorship).await);
    impact
        .set_milestone_targets(system.request(SetMilestoneTargetsRequest {
            request_id: String::new(),
            program_id: program_id.clone(),
            targets: Some(MilestoneTargets {
                first_session_days: 90,
                first_module_days: 3,
                first_sale_days: 30,
                first_recruit_days: 90,
                first_rank_days: 90,
                first_rank_level: 2,
            }),
        }))
        .await
        .expect("targets");
    clients.group_of(&program_id, "mira", &["nick"]).await;

    // Day 10 without a training module (due on day 3): Mira hears of it, once.
    let first = wait_for_alerts(&system, 1).await;
    assert_eq!(first[0]["subject"], "Your mentee nick is at risk on day 10");
    assert_eq!(first[0]["chatbot_user_id"], "tg-mira");
    assert_eq!(first[0]["category"], "inactivity");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(alerts(&system).len(), 1, "one alert per episode");

    // A module ends the episode; the CRM's earlier enrolment (day 34, no sale by day 30)
    // begins another, and Mira hears once more.
    clients
        .ingest(vec![ActivityEvent {
            source: "lms".into(),
            source_event_id: "module-nick-1".into(),
            occurred_at: timestamp(Utc::now()),
            partner_id: "nick".into(),
            payload: Some(Payload::ModuleCompleted(ModuleCompleted {
                module_id: "m-01".into(),
                minutes: 12,
            })),
            ..ActivityEvent::default()
        }])
        .await;
    wait_until_on_track(&mut impact, &system).await;
    clients
        .ingest(vec![enrolment("nick", "mira", now - TimeDelta::days(34))])
        .await;
    let both = wait_for_alerts(&system, 2).await;
    assert_eq!(both[1]["subject"], "Your mentee nick is at risk on day 34");
    assert!(
        both[1]["text"]
            .as_str()
            .is_some_and(|text| text.starts_with("nick has not reached a first sale by")),
        "{}",
        both[1]
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(alerts(&system).len(), 2, "one alert per episode");
    let delivered: Vec<String> = system
        .notifications_of("mira")
        .await
        .into_iter()
        .filter(|n| n.cause.starts_with("at-risk:"))
        .map(|n| format!("{:?}", n.status()))
        .collect();
    assert_eq!(delivered, ["Delivered", "Delivered"]);
    system.stop();
}
