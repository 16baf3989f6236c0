//! ImpactService against the real local stack: mentor suggestions in a genealogy whose
//! expected order is worked out by hand below, a programme's phased roll-out deciding who may
//! join, every change logged, and newcomers' at-risk episodes announced once each.

use crate::common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{Service, WAIT};
use mentorstream_proto::activity::v1::{ModuleCompleted, PartnerEnrolled, activity_event};
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, CreateGroupRequest, Eligibility, GetRolloutRequest, ListNewcomersRequest,
    MentorshipEvent, Milestone, MilestoneTargets, NewcomerStatus, Proximity,
    SetMilestoneTargetsRequest, StartRolloutStageRequest, SuggestMentorsRequest, mentorship_event,
};
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

async fn program(service: &mut Service, name: &str) -> String {
    service
        .client
        .create_program(service.write(crate::mentorship::program("", name)))
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program")
        .program_id
}

async fn group(service: &mut Service, program_id: &str, mentor: &str, capacity: u32) -> String {
    service
        .client
        .create_group(service.write(CreateGroupRequest {
            request_id: String::new(),
            program_id: program_id.into(),
            mentor_id: mentor.into(),
            name: format!("{mentor}'s group"),
            capacity,
            occurred_at: None,
        }))
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group")
        .group_id
}

async fn assign(service: &mut Service, group_id: &str, mentee: &str) -> Result<(), tonic::Status> {
    service
        .client
        .assign_mentee(service.write(AssignMenteeRequest {
            request_id: String::new(),
            group_id: group_id.into(),
            mentee_id: mentee.into(),
            occurred_at: None,
        }))
        .await
        .map(|_| ())
}

/// Enrols `partner` under `sponsor` with `locale`, `days_ago` days ago: when.
async fn enrol(
    service: &Service,
    partner: &str,
    sponsor: &str,
    locale: &str,
    days_ago: i64,
) -> chrono::DateTime<Utc> {
    let at = Utc::now() - TimeDelta::days(days_ago);
    service
        .publish(
            partner,
            &format!("enrol-{partner}-{days_ago}"),
            at,
            activity_event::Payload::PartnerEnrolled(PartnerEnrolled {
                sponsor_id: sponsor.into(),
                display_name: partner.to_uppercase(),
                locale: locale.into(),
                time_zone: "Europe/Moscow".into(),
                ..PartnerEnrolled::default()
            }),
        )
        .await;
    service.wait_for_partner(partner).await;
    at
}

#[tokio::test]
async fn suggestions_follow_the_genealogy_and_an_assignment_takes_one() {
    let mut service = Service::start().await;
    // r ─┬─ u2 ─┬─ u1 ─┬─ x ── d1          q (another tree)
    //    │      │      ├─ s1 ── n1
    //    │      │      ├─ s2 (speaks English)
    //    │      │      └─ f (u1's only mentee: u1's group is full)
    //    │      └─ c1
    for (partner, sponsor, locale) in [
        ("r", "", "ru-RU"),
        ("q", "", "ru-RU"),
        ("u2", "r", "ru-RU"),
        ("u1", "u2", "ru-RU"),
        ("c1", "u2", "ru-RU"),
        ("x", "u1", "ru-RU"),
        ("s1", "u1", "ru-RU"),
        ("s2", "u1", "en-US"),
        ("f", "u1", "ru-RU"),
        ("n1", "s1", "ru-RU"),
        ("d1", "x", "ru-RU"),
    ] {
        enrol(&service, partner, sponsor, locale, 0).await;
    }
    let program_id = program(&mut service, "Pilot").await;
    let mut groups = std::collections::BTreeMap::new();
    for mentor in ["r", "q", "u2", "c1", "x", "s1", "s2", "n1", "d1"] {
        groups.insert(mentor, group(&mut service, &program_id, mentor, 0).await);
    }
    let full = group(&mut service, &program_id, "u1", 1).await;
    assign(&mut service, &full, "f").await.expect("f joins u1");

    let suggestions = service
        .impact
        .suggest_mentors(service.read(SuggestMentorsRequest {
            partner_id: "x".into(),
            program_id: program_id.clone(),
            limit: 0,
        }))
        .await
        .expect("suggestions")
        .into_inner()
        .suggestions;
    // By hand: the upline first, nearest first — u1 (full, so not offered), u2 (2 up), r (3
    // up); then the sponsor u1's team — s1 and s2 two steps away (x → u1 → s), the one who
    // speaks x's language first, n1 three; then u2's team — c1 three steps (x → u1 → u2 → c1);
    // then another tree — q. Never x itself, never x's downline (d1).
    let order: Vec<(&str, i32, u32)> = suggestions
        .iter()
        .map(|s| (s.mentor_id.as_str(), s.proximity, s.distance))
        .collect();
    let (upline, team, elsewhere) = (
        Proximity::Upline as i32,
        Proximity::SponsorTeam as i32,
        Proximity::Elsewhere as i32,
    );
    assert_eq!(
        order,
        [
            ("u2", upline, 2),
            ("r", upline, 3),
            ("s1", team, 2),
            ("s2", team, 2),
            ("n1", team, 3),
            ("c1", elsewhere, 3),
            ("q", elsewhere, 0),
        ]
    );
    assert_eq!(
        suggestions[0].reasons,
        [
            "in the partner's upline, 2 levels up",
            "speaks the partner's language (ru)",
            "same time zone (Europe/Moscow)",
            "7 of 7 places free",
        ]
    );
    assert!(suggestions[2].same_language && !suggestions[3].same_language);
    assert_eq!(suggestions[0].group_id, groups["u2"]);

    // The first suggestion, taken.
    assign(&mut service, &suggestions[0].group_id, "x")
        .await
        .expect("x joins u2's group");
    // An unknown partner and a bad limit are refused.
    let refused = service
        .impact
        .suggest_mentors(service.read(SuggestMentorsRequest {
            partner_id: "x".into(),
            program_id: String::new(),
            limit: 101,
        }))
        .await
        .expect_err("limit");
    assert_eq!(refused.message(), "limit: must be at most 100, got 101");
    let unknown = service
        .impact
        .suggest_mentors(service.read(SuggestMentorsRequest {
            partner_id: "nobody".into(),
            program_id: String::new(),
            limit: 0,
        }))
        .await
        .expect_err("unknown partner");
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    assert!(
        unknown
            .message()
            .starts_with("partner_id: `nobody` is not an enrolled partner"),
        "{}",
        unknown.message()
    );
    service.stop().await;
}

#[tokio::test]
async fn a_rollout_stage_admits_only_whom_its_rule_names_and_every_change_is_logged() {
    let mut service = Service::start().await;
    let mut enrolled = std::collections::BTreeMap::new();
    for (partner, sponsor, days_ago) in [
        ("m", "", 0),
        ("m2", "", 0),
        ("r1", "", 0),
        ("a", "r1", 0),
        ("b", "", 2),
        ("c", "", 0),
    ] {
        let at = enrol(&service, partner, sponsor, "ru-RU", days_ago).await;
        enrolled.insert(
            partner,
            at.with_timezone(&chrono_tz::Europe::Moscow).date_naive(),
        );
    }
    let program_id = program(&mut service, "Pilot").await;
    let group_id = group(&mut service, &program_id, "m", 0).await;
    let other_group = group(&mut service, &program_id, "m2", 0).await;
    let stage = |name: &str, eligibility: Eligibility, request_id: &str| StartRolloutStageRequest {
        request_id: request_id.into(),
        program_id: program_id.clone(),
        name: name.into(),
        eligibility: Some(eligibility),
    };
    let pilot = service
        .impact
        .start_rollout_stage(service.write(stage(
            "pilot",
            Eligibility {
                team_root_ids: vec!["r1".into()],
                ..Eligibility::default()
            },
            "stage-1",
        )))
        .await
        .expect("pilot stage")
        .into_inner()
        .stage
        .expect("stage");
    assert_eq!((pilot.number, pilot.name.as_str()), (1, "pilot"));
    // Nothing of this programme is suggested to b, whom the stage does not admit.
    let offered = service
        .impact
        .suggest_mentors(service.read(SuggestMentorsRequest {
            partner_id: "b".into(),
            program_id: program_id.clone(),
            limit: 0,
        }))
        .await
        .expect("suggestions")
        .into_inner()
        .suggestions;
    assert_eq!(offered, []);
    // A root nobody enrolled is refused, and starts no stage.
    let unknown = service
        .impact
        .start_rollout_stage(service.write(stage(
            "typo",
            Eligibility {
                team_root_ids: vec!["r9".into()],
                ..Eligibility::default()
            },
            "",
        )))
        .await
        .expect_err("unknown root");
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    assert!(
        unknown
            .message()
            .starts_with("eligibility.team_root_ids: `r9` is not an enrolled partner"),
        "{}",
        unknown.message()
    );

    let refused = assign(&mut service, &group_id, "b")
        .await
        .expect_err("b is outside r1's team");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!(
            "mentee `b` is not eligible for programme `{program_id}` at its stage `pilot`: not in \
             the team of r1"
        )
    );
    assert_eq!(
        refused.get_details_error_info().map(|info| info.reason),
        Some("NOT_ELIGIBLE".to_owned())
    );
    assign(&mut service, &group_id, "a")
        .await
        .expect("a is in r1's team");

    // Expansion: everyone enrolled from b's day on.
    let two_days_ago = enrolled["b"];
    service
        .impact
        .start_rollout_stage(service.write(stage(
            "expansion",
            Eligibility {
                enrolled_from: Some(two_days_ago.into()),
                ..Eligibility::default()
            },
            "stage-2",
        )))
        .await
        .expect("expansion");
    // A retry of the first stage's request is answered as before and adds nothing.
    let retried = service
        .impact
        .start_rollout_stage(service.write(stage("pilot", Eligibility::default(), "stage-1")))
        .await
        .expect("retry")
        .into_inner()
        .stage
        .expect("stage");
    assert_eq!(retried, pilot);
    assign(&mut service, &group_id, "b")
        .await
        .expect("b is admitted now");
    // Closing: nobody enrolled after the day before c.
    let today = enrolled["c"];
    let yesterday = today - chrono::Days::new(1);
    service
        .impact
        .start_rollout_stage(service.write(stage(
            "closed",
            Eligibility {
                enrolled_to: Some(yesterday.into()),
                ..Eligibility::default()
            },
            "",
        )))
        .await
        .expect("closed");
    let refused = assign(&mut service, &group_id, "c")
        .await
        .expect_err("c enrolled today");
    // Admission is to the programme: a, admitted under the pilot stage, still moves between
    // its groups.
    service
        .client
        .transfer_mentee(
            service.write(mentorstream_proto::mentorship::v1::TransferMenteeRequest {
                request_id: String::new(),
                mentee_id: "a".into(),
                from_group_id: group_id.clone(),
                to_group_id: other_group.clone(),
                occurred_at: None,
            }),
        )
        .await
        .expect("a moves within the programme");
    assert!(
        refused.message().ends_with(&format!(
            "at its stage `closed`: enrolled on {today}, after {yesterday}"
        )),
        "{}",
        refused.message()
    );

    // Targets: what is given changes, the rest stays.
    let targets = service
        .impact
        .set_milestone_targets(service.write(SetMilestoneTargetsRequest {
            request_id: String::new(),
            program_id: program_id.clone(),
            targets: Some(MilestoneTargets {
                first_sale_days: 10,
                ..MilestoneTargets::default()
            }),
        }))
        .await
        .expect("targets")
        .into_inner()
        .targets
        .expect("targets");
    let defaults = MilestoneTargets {
        first_session_days: 7,
        first_module_days: 7,
        first_sale_days: 10,
        first_recruit_days: 30,
        first_rank_days: 60,
        first_rank_level: 2,
    };
    assert_eq!(targets, defaults);

    // Refusals change nothing.
    let refusals = [
        (
            SetMilestoneTargetsRequest {
                request_id: String::new(),
                program_id: program_id.clone(),
                targets: Some(MilestoneTargets {
                    first_sale_days: 91,
                    ..MilestoneTargets::default()
                }),
            },
            "targets.first_sale_days: must be 1 to 90 days (0 keeps it), got 91",
        ),
        (
            SetMilestoneTargetsRequest {
                request_id: String::new(),
                program_id: "nope".into(),
                targets: Some(MilestoneTargets::default()),
            },
            "program_id: no programme `nope`",
        ),
    ];
    for (request, message) in refusals {
        let refused = service
            .impact
            .set_milestone_targets(service.write(request))
            .await
            .expect_err(message);
        assert_eq!(refused.message(), message);
    }
    let refused = service
        .impact
        .start_rollout_stage(service.write(stage(
            "backwards",
            Eligibility {
                enrolled_from: Some(today.into()),
                enrolled_to: Some(yesterday.into()),
                ..Eligibility::default()
            },
            "",
        )))
        .await
        .expect_err("backwards");
    assert_eq!(
        refused.message(),
        "eligibility.enrolled_to: must not be before eligibility.enrolled_from"
    );

    let rollout = service
        .impact
        .get_rollout(service.read(GetRolloutRequest {
            program_id: program_id.clone(),
        }))
        .await
        .expect("rollout")
        .into_inner();
    let names: Vec<(u32, &str)> = rollout
        .stages
        .iter()
        .map(|s| (s.number, s.name.as_str()))
        .collect();
    assert_eq!(names, [(1, "pilot"), (2, "expansion"), (3, "closed")]);
    assert_eq!(rollout.targets, Some(defaults));
    let changes: Vec<(&str, &str)> = rollout
        .changes
        .iter()
        .map(|change| (change.what.as_str(), change.changed_by.as_str()))
        .collect();
    let key = service.write_key_id.as_str();
    assert_eq!(
        changes,
        [
            ("stage", key),
            ("stage", key),
            ("stage", key),
            ("targets", key)
        ]
    );
    let first: serde_json::Value = serde_json::from_str(&rollout.changes[0].detail).expect("json");
    assert_eq!(first["team_root_ids"], serde_json::json!(["r1"]));
    assert_eq!(first["name"], "pilot");
    service.stop().await;
}

/// A pilot programme whose first module is due on day 3 (every other milestone far off), and a
/// group of it led by `mentor`: the group's id.
async fn module_due_on_day_3(service: &mut Service, mentor: &str) -> String {
    let program_id = program(service, "Pilot").await;
    service
        .impact
        .set_milestone_targets(service.write(SetMilestoneTargetsRequest {
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
    group(service, &program_id, mentor, 0).await
}

/// ListNewcomers pages by partner id, with and without a status filter, each page and token
/// exactly (the status is computed, so a filtered page reads on until it is full).
#[tokio::test]
async fn newcomers_come_in_pages_by_id_with_and_without_a_status() {
    let mut service = Service::start().await;
    enrol(&service, "m", "", "ru-RU", 30).await;
    let group_id = module_due_on_day_3(&mut service, "m").await;
    // n1, n3, n5, n7 joined 10 days ago without a module (due on day 3): at risk; the even
    // ones joined yesterday: on track.
    for n in 1..=7 {
        let partner = format!("n{n}");
        enrol(
            &service,
            &partner,
            "m",
            "ru-RU",
            if n % 2 == 1 { 10 } else { 1 },
        )
        .await;
        assign(&mut service, &group_id, &partner)
            .await
            .expect("assigned");
    }
    let pages = |status: NewcomerStatus, size: u32| {
        let mut impact = service.impact.clone();
        let service = &service;
        async move {
            let mut pages = Vec::new();
            let mut token = String::new();
            loop {
                let page = impact
                    .list_newcomers(service.read(ListNewcomersRequest {
                        status: status.into(),
                        page_size: size,
                        page_token: token.clone(),
                        ..ListNewcomersRequest::default()
                    }))
                    .await
                    .expect("a page")
                    .into_inner();
                let ids: Vec<String> = page
                    .newcomers
                    .iter()
                    .map(|n| n.partner_id.clone())
                    .collect();
                pages.push((ids, page.next_page_token.clone()));
                if page.next_page_token.is_empty() {
                    return pages;
                }
                token = page.next_page_token;
            }
        }
    };
    let owned = |pages: &[(&[&str], &str)]| -> Vec<(Vec<String>, String)> {
        pages
            .iter()
            .map(|(ids, token)| {
                (
                    ids.iter().map(|id| (*id).to_owned()).collect(),
                    (*token).to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        pages(NewcomerStatus::Unspecified, 3).await,
        owned(&[
            (&["n1", "n2", "n3"], "n3"),
            (&["n4", "n5", "n6"], "n6"),
            (&["n7"], "")
        ])
    );
    assert_eq!(
        pages(NewcomerStatus::AtRisk, 2).await,
        owned(&[(&["n1", "n3"], "n3"), (&["n5", "n7"], "")])
    );
    assert_eq!(
        pages(NewcomerStatus::OnTrack, 2).await,
        owned(&[(&["n2", "n4"], "n4"), (&["n6"], "")])
    );
    assert_eq!(pages(NewcomerStatus::Behind, 2).await, owned(&[(&[], "")]));
    service.stop().await;
}

/// The MenteeAtRisk events in the outbox, in order.
async fn at_risk_events(
    service: &Service,
) -> Vec<mentorstream_proto::mentorship::v1::MenteeAtRisk> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'MenteeAtRisk' ORDER BY seq",
    )
    .fetch_all(&service.pool)
    .await
    .expect("outbox");
    payloads
        .iter()
        .map(|payload| {
            match MentorshipEvent::decode(payload.as_slice())
                .expect("event")
                .payload
            {
                Some(mentorship_event::Payload::MenteeAtRisk(at_risk)) => at_risk,
                other => panic!("not an at-risk event: {other:?}"),
            }
        })
        .collect()
}

async fn wait_for(service: &Service, what: &str, done: impl AsyncFn(&Service) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(service).await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_of(service: &Service, partner: &str) -> (NewcomerStatus, u32, Vec<i32>) {
    let mut impact = service.impact.clone();
    let newcomers = impact
        .list_newcomers(service.read(ListNewcomersRequest::default()))
        .await
        .expect("newcomers")
        .into_inner()
        .newcomers;
    let newcomer = newcomers
        .iter()
        .find(|newcomer| newcomer.partner_id == partner)
        .expect("a newcomer");
    let overdue = newcomer
        .milestones
        .iter()
        .filter(|milestone| milestone.overdue)
        .map(|milestone| milestone.milestone)
        .collect();
    (newcomer.status(), newcomer.day, overdue)
}

#[tokio::test]
async fn a_newcomer_off_track_is_announced_once_per_episode() {
    let mut service = Service::start_with(|config| {
        config.mentorship.newcomer_check_interval = Duration::from_millis(200);
    })
    .await;
    enrol(&service, "m", "", "ru-RU", 30).await;
    enrol(&service, "n", "m", "ru-RU", 10).await;
    let group_id = module_due_on_day_3(&mut service, "m").await;
    assign(&mut service, &group_id, "n")
        .await
        .expect("assigned");

    // Day 10 without a module (due on day 3): at risk, announced once.
    assert_eq!(
        status_of(&service, "n").await,
        (
            NewcomerStatus::AtRisk,
            10,
            vec![Milestone::FirstModule as i32]
        )
    );
    wait_for(&service, "an at-risk event", async |s| {
        !at_risk_events(s).await.is_empty()
    })
    .await;
    // Many rounds later, still one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = at_risk_events(&service).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (
            events[0].mentee_id.as_str(),
            events[0].mentor_id.as_str(),
            events[0].day
        ),
        ("n", "m", 10)
    );
    assert_eq!(events[0].overdue, [Milestone::FirstModule as i32]);
    assert_eq!(events[0].status(), NewcomerStatus::AtRisk);

    // The module arrives: on track, the episode ends.
    service
        .publish(
            "n",
            "module-n-1",
            Utc::now(),
            activity_event::Payload::ModuleCompleted(ModuleCompleted {
                module_id: "m-01".into(),
                minutes: 10,
            }),
        )
        .await;
    wait_for(&service, "the episode's end", async |s| {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM at_risk_episodes WHERE ended_at IS NULL")
                .fetch_one(&s.pool)
                .await
                .expect("count");
        open == 0
    })
    .await;
    assert_eq!(status_of(&service, "n").await.0, NewcomerStatus::OnTrack);

    // The CRM's earlier enrolment of n: now day 34, without a first sale (due on day 30) — a
    // new episode, announced once more.
    enrol(&service, "n", "m", "ru-RU", 34).await;
    wait_for(&service, "a second at-risk event", async |s| {
        at_risk_events(s).await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = at_risk_events(&service).await;
    assert_eq!(events.len(), 2);
    assert_ne!(events[0].episode_id, events[1].episode_id);
    assert_eq!(
        (events[1].day, events[1].overdue.clone()),
        (34, vec![Milestone::FirstSale as i32])
    );
    service.stop().await;
}
