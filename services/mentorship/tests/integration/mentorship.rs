//! The mentorship service against the real local stack: programs and groups through
//! MentorshipService, the partner read model from the activity topic, and the outbox relayed
//! to the mentorship topic exactly once. Every refused mutation changes nothing: no row, no
//! event.

use crate::common;

use std::collections::BTreeMap;

use common::{Service, WAIT};
use mentorstream_proto::activity::v1::{PartnerEnrolled, RankAchieved, activity_event};
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, CreateGroupRequest, CreateProgramRequest, GetGroupRequest,
    GetPartnerRequest, ListAssignmentsRequest, ListDownlineRequest, ListGroupsRequest,
    ListProgramsRequest, ListUplineRequest, ProgramKind, TransferMenteeRequest,
    UnassignMenteeRequest, mentorship_event,
};
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt as _;

pub fn program(request_id: &str, name: &str) -> CreateProgramRequest {
    CreateProgramRequest {
        request_id: request_id.into(),
        name: name.into(),
        kind: ProgramKind::Pilot.into(),
        sessions_per_week: 2,
        default_session_length: Some(prost_types::Duration {
            seconds: 20 * 60,
            nanos: 0,
        }),
    }
}

#[tokio::test]
async fn programs_and_groups_refuse_what_the_domain_forbids_and_announce_each_change_once() {
    let mut service = Service::start().await;
    service.enrol("mentor-1").await;

    // Refused programs: the right code and message, and nothing written.
    for (request, code, message) in [
        (
            CreateProgramRequest {
                kind: 0,
                ..program("", "a")
            },
            Code::InvalidArgument,
            "kind: must be PROGRAM_KIND_PILOT or PROGRAM_KIND_STANDARD",
        ),
        (
            CreateProgramRequest {
                sessions_per_week: 0,
                ..program("", "a")
            },
            Code::InvalidArgument,
            "sessions_per_week: must be 1 to 14, got 0",
        ),
        (
            CreateProgramRequest {
                default_session_length: Some(prost_types::Duration {
                    seconds: 90 * 60,
                    nanos: 0,
                }),
                ..program("", "a")
            },
            Code::InvalidArgument,
            "default_session_length: must be 5 to 60 minutes, got 90",
        ),
        (
            program("", "  "),
            Code::InvalidArgument,
            "name: is required",
        ),
    ] {
        let refused = service
            .client
            .create_program(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!((refused.code(), refused.message()), (code, message));
    }
    assert_eq!(service.counts("programs").await, (0, 0));
    let read_only = service
        .client
        .create_program(service.read(program("", "Pilot")))
        .await
        .expect_err("read key");
    assert_eq!(read_only.code(), Code::PermissionDenied);

    // A program, retried with its request id: the first answer, one row.
    let created = service
        .client
        .create_program(service.write(program("p-1", "Pilot")))
        .await
        .expect("created")
        .into_inner();
    let again = service
        .client
        .create_program(service.write(program("p-1", "Pilot")))
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again, created);
    assert_eq!(service.counts("programs").await, (1, 0));
    let duplicate = service
        .client
        .create_program(service.write(program("p-2", "Pilot")))
        .await
        .expect_err("same name");
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let program_id = created.program.expect("program").program_id;

    // Refused groups change nothing either.
    let group = |request_id: &str, program_id: &str, mentor_id: &str| CreateGroupRequest {
        request_id: request_id.into(),
        program_id: program_id.into(),
        mentor_id: mentor_id.into(),
        name: "Monday group".into(),
        capacity: 0,
        occurred_at: None,
    };
    let in_a_year = chrono::Utc::now() + chrono::Duration::days(365);
    for (request, code, message) in [
        (
            group("", "nope", "mentor-1"),
            Code::FailedPrecondition,
            "program_id: no program `nope`".to_owned(),
        ),
        (
            group("", &program_id, "stranger"),
            Code::FailedPrecondition,
            "mentor_id: `stranger` is not an enrolled partner (enrolments arrive from the \
             activity stream, and every accepted one is applied)"
                .to_owned(),
        ),
        (
            CreateGroupRequest {
                capacity: 101,
                ..group("", &program_id, "mentor-1")
            },
            Code::InvalidArgument,
            "capacity: must be at most 100, got 101".to_owned(),
        ),
        (
            CreateGroupRequest {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: in_a_year.timestamp(),
                    nanos: 0,
                }),
                ..group("", &program_id, "mentor-1")
            },
            Code::InvalidArgument,
            "occurred_at: must not be in the future".to_owned(),
        ),
        (
            group("p-1", &program_id, "mentor-1"),
            Code::InvalidArgument,
            "request_id: request_id `p-1` was used for CreateProgram".to_owned(),
        ),
    ] {
        let refused = service
            .client
            .create_group(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (code, message.as_str())
        );
    }
    assert_eq!(service.counts("groups").await, (0, 0));

    // Three groups, one of them retried: three rows, three events, each once.
    let mut group_ids = Vec::new();
    for request_id in ["g-1", "g-2", "g-3", "g-2"] {
        let created = service
            .client
            .create_group(service.write(group(request_id, &program_id, "mentor-1")))
            .await
            .expect("created")
            .into_inner()
            .group
            .expect("group");
        assert_eq!(created.capacity, 7, "the default capacity");
        if !group_ids.contains(&created.group_id) {
            group_ids.push(created.group_id);
        }
    }
    assert_eq!(service.counts("groups").await, (3, 3));
    let published = service.published().await;
    let mut announced: Vec<(String, String)> = published
        .iter()
        .map(|(key, event)| {
            let Some(mentorship_event::Payload::GroupCreated(created)) = &event.payload else {
                panic!("unexpected {event:?}");
            };
            assert_eq!(created.mentor_id, "mentor-1");
            assert_eq!(created.capacity, 7);
            (key.clone(), created.group_id.clone())
        })
        .collect();
    announced.sort();
    let mut expected: Vec<(String, String)> = group_ids
        .iter()
        .map(|id| (format!("{}/{id}", service.tenant_id), id.clone()))
        .collect();
    expected.sort();
    assert_eq!(announced, expected);

    // Reads: a group with its mentees, programs and groups page by page.
    let fetched = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: group_ids[0].clone(),
        }))
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(
        (fetched.mentor_id.as_str(), fetched.mentee_ids.len()),
        ("mentor-1", 0)
    );
    let missing = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: "nope".into(),
        }))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = service
            .client
            .list_groups(service.read(ListGroupsRequest {
                program_id: program_id.clone(),
                mentor_id: String::new(),
                page_size: 2,
                page_token: page_token.clone(),
            }))
            .await
            .expect("list")
            .into_inner();
        assert!(page.groups.len() <= 2);
        listed.extend(page.groups.into_iter().map(|group| group.group_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut sorted = group_ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let programs = service
        .client
        .list_programs(service.read(ListProgramsRequest {
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(programs.programs.len(), 1);
    service.stop().await;
}

fn at(time: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    })
}

#[tokio::test]
async fn assignments_keep_one_mentor_and_the_capacity_and_announce_each_change_in_order() {
    let mut service = Service::start().await;
    for partner in ["mentor-1", "mentor-2", "ann", "bob", "carl"] {
        service.enrol(partner).await;
    }
    let program_id = service
        .client
        .create_program(service.write(program("", "Standard")))
        .await
        .expect("program")
        .into_inner()
        .program
        .expect("program")
        .program_id;
    let mut groups = Vec::new();
    for (mentor, capacity) in [("mentor-1", 2), ("mentor-2", 0)] {
        let group = service
            .client
            .create_group(service.write(CreateGroupRequest {
                request_id: String::new(),
                program_id: program_id.clone(),
                mentor_id: mentor.into(),
                name: format!("{mentor}'s group"),
                capacity,
                occurred_at: None,
            }))
            .await
            .expect("group")
            .into_inner()
            .group
            .expect("group");
        groups.push(group.group_id);
    }
    let (g1, g2) = (groups[0].clone(), groups[1].clone());
    let start = chrono::Utc::now() - chrono::Duration::hours(3);
    let assign = |request_id: &str, group: &str, mentee: &str| AssignMenteeRequest {
        request_id: request_id.into(),
        group_id: group.into(),
        mentee_id: mentee.into(),
        occurred_at: at(start),
    };
    let first = service
        .client
        .assign_mentee(service.write(assign("a-1", &g1, "ann")))
        .await
        .expect("assigned")
        .into_inner();
    let retried = service
        .client
        .assign_mentee(service.write(assign("a-1", &g1, "ann")))
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(retried, first, "a retry gets the first answer");
    service
        .client
        .assign_mentee(service.write(assign("", &g1, "bob")))
        .await
        .expect("assigned");
    let written = service.counts("assignments").await;
    assert_eq!(written, (2, 4));

    // What the domain forbids is refused and writes nothing.
    for (request, reason, message) in [
        (
            assign("", &g1, "carl"),
            "GROUP_FULL",
            format!("group `{g1}` is full (2 of 2 mentees)"),
        ),
        (
            assign("", &g2, "ann"),
            "ALREADY_HAS_MENTOR",
            format!("mentee `ann` already has a mentor (group `{g1}`); transfer instead"),
        ),
        (
            assign("", &g2, "mentor-2"),
            "MENTEE_IS_MENTOR",
            format!("mentee_id: `mentor-2` is the mentor of group `{g2}`"),
        ),
        (
            assign("", &g2, "stranger"),
            "PARTNER_NOT_ENROLLED",
            "mentee_id: `stranger` is not an enrolled partner (enrolments arrive from the \
             activity stream, and every accepted one is applied)"
                .to_owned(),
        ),
    ] {
        let refused = service
            .client
            .assign_mentee(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (Code::FailedPrecondition, message.as_str())
        );
        let details = refused.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            (reason, "mentorstream.dev")
        );
    }
    let unassign = |group: &str, mentee: &str, when| UnassignMenteeRequest {
        request_id: String::new(),
        group_id: group.into(),
        mentee_id: mentee.into(),
        occurred_at: at(when),
    };
    let not_member = service
        .client
        .unassign_mentee(service.write(unassign(&g1, "carl", start)))
        .await
        .expect_err("not a member");
    assert_eq!(
        (not_member.code(), not_member.message()),
        (
            Code::FailedPrecondition,
            format!("mentee `carl` is not a current mentee of group `{g1}`").as_str()
        )
    );
    let too_early = service
        .client
        .unassign_mentee(service.write(unassign(&g1, "bob", start - chrono::Duration::hours(1))))
        .await
        .expect_err("before it started");
    assert_eq!(too_early.code(), Code::InvalidArgument);
    assert!(
        too_early
            .message()
            .starts_with("occurred_at: must not be before the assignment started"),
        "{}",
        too_early.message()
    );
    assert_eq!(service.counts("assignments").await, written);

    // A transfer and an unassignment.
    let later = start + chrono::Duration::hours(1);
    let transferred = service
        .client
        .transfer_mentee(service.write(TransferMenteeRequest {
            request_id: "t-1".into(),
            mentee_id: "ann".into(),
            from_group_id: g1.clone(),
            to_group_id: g2.clone(),
            occurred_at: at(later),
        }))
        .await
        .expect("transferred")
        .into_inner();
    assert_eq!(
        transferred.ended.expect("ended").ended_at,
        at(later),
        "the old assignment ends when the new one starts"
    );
    service
        .client
        .unassign_mentee(service.write(unassign(&g1, "bob", later)))
        .await
        .expect("unassigned");
    assert_eq!(service.counts("assignments").await, (3, 7));
    let g1_now = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: g1.clone(),
        }))
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    assert!(g1_now.mentee_ids.is_empty());
    let g2_now = service
        .client
        .get_group(service.read(GetGroupRequest {
            group_id: g2.clone(),
        }))
        .await
        .expect("group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(g2_now.mentee_ids, ["ann"]);

    // Ann's history, a page at a time.
    let mut history = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = service
            .client
            .list_assignments(service.read(ListAssignmentsRequest {
                group_id: String::new(),
                mentee_id: "ann".into(),
                mentor_id: String::new(),
                page_size: 1,
                page_token: page_token.clone(),
            }))
            .await
            .expect("list")
            .into_inner();
        history.extend(
            page.assignments
                .into_iter()
                .map(|assignment| (assignment.group_id, assignment.ended_at.is_some())),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(history, [(g1.clone(), true), (g2.clone(), false)]);

    // On the topic: each change once, in commit order per mentee.
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, event) in service.published().await {
        let change = match event.payload.expect("payload") {
            mentorship_event::Payload::MenteeAssigned(assigned) => {
                format!("+{}", assigned.group_id)
            }
            mentorship_event::Payload::MenteeUnassigned(unassigned) => {
                format!("-{}", unassigned.group_id)
            }
            mentorship_event::Payload::GroupCreated(created) => {
                format!("group {}", created.group_id)
            }
            other => panic!("unexpected {other:?}"),
        };
        by_key.entry(key).or_default().push(change);
    }
    let tenant = &service.tenant_id;
    assert_eq!(
        by_key.get(&format!("{tenant}/ann")),
        Some(&vec![format!("+{g1}"), format!("-{g1}"), format!("+{g2}")])
    );
    assert_eq!(
        by_key.get(&format!("{tenant}/bob")),
        Some(&vec![format!("+{g1}"), format!("-{g1}")])
    );
    assert_eq!(by_key.len(), 4, "two groups and two mentees");
    service.stop().await;
}

#[tokio::test]
async fn partners_are_looked_up_with_their_upline_downline_and_mentor() {
    let mut service = Service::start().await;
    let start = chrono::Utc::now() - chrono::Duration::days(10);
    let hours = |n| start + chrono::Duration::hours(n);
    service.enrol_under("root", "", "enrol", hours(0)).await;
    service.enrol_under("a", "root", "enrol", hours(1)).await;
    service.enrol_under("b", "a", "enrol", hours(2)).await;
    service.enrol_under("c", "b", "enrol", hours(3)).await;
    // d: enrolled under a, then an earlier enrolment under root arrives (it counts), then a
    // later one under c (it does not); a rank last, to know all three were applied.
    service.enrol_under("d", "a", "enrol", hours(5)).await;
    let enrolled = |sponsor: &str| {
        activity_event::Payload::PartnerEnrolled(PartnerEnrolled {
            sponsor_id: sponsor.into(),
            display_name: "D".into(),
            locale: "en".into(),
            time_zone: "UTC".into(),
            ..PartnerEnrolled::default()
        })
    };
    service
        .publish("d", "earlier", hours(1), enrolled("root"))
        .await;
    service.publish("d", "later", hours(6), enrolled("c")).await;
    let rank = |level, name: &str| {
        activity_event::Payload::RankAchieved(RankAchieved {
            rank_level: level,
            rank_name: name.into(),
        })
    };
    service
        .publish("d", "rank", hours(7), rank(1, "Bronze"))
        .await;
    service
        .publish("b", "rank", hours(8), rank(2, "Gold"))
        .await;
    for (partner, level) in [("d", 1), ("b", 2)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = service
                .client
                .get_partner(service.read(GetPartnerRequest {
                    partner_id: partner.into(),
                }))
                .await
                .expect("partner")
                .into_inner()
                .partner
                .expect("partner");
            if found.rank_level == level {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{partner} never ranked"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // b's mentor is the mentor of the group b is assigned to.
    service.group_with("root", &["b"], None, None).await;

    let get = |partner: &str| GetPartnerRequest {
        partner_id: partner.into(),
    };
    let b = service
        .client
        .get_partner(service.read(get("b")))
        .await
        .expect("b")
        .into_inner()
        .partner
        .expect("b");
    assert_eq!(
        (
            b.sponsor_id.as_str(),
            b.display_name.as_str(),
            b.rank_level,
            b.rank_name.as_str(),
            b.mentor_id.as_str(),
            b.time_zone.as_str()
        ),
        ("a", "B", 2, "Gold", "root", "Europe/Moscow")
    );
    let d = service
        .client
        .get_partner(service.read(get("d")))
        .await
        .expect("d")
        .into_inner()
        .partner
        .expect("d");
    assert_eq!(
        (d.sponsor_id.as_str(), d.enrolled_at, d.mentor_id.as_str()),
        ("root", at(hours(1)), ""),
        "the earliest enrolment counts"
    );
    let unknown = service
        .client
        .get_partner(service.read(get("nobody")))
        .await
        .expect_err("unknown");
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "no enrolled partner `nobody`")
    );

    let upline = |max_depth| ListUplineRequest {
        partner_id: "c".into(),
        max_depth,
    };
    let ids = |partners: Vec<mentorstream_proto::mentorship::v1::Partner>| {
        partners
            .into_iter()
            .map(|partner| partner.partner_id)
            .collect::<Vec<_>>()
    };
    let whole = service
        .client
        .list_upline(service.read(upline(0)))
        .await
        .expect("upline")
        .into_inner();
    assert_eq!(ids(whole.partners), ["b", "a", "root"]);
    let near = service
        .client
        .list_upline(service.read(upline(2)))
        .await
        .expect("upline")
        .into_inner();
    assert_eq!(ids(near.partners), ["b", "a"]);

    let mut downline = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = service
            .client
            .list_downline(service.read(ListDownlineRequest {
                partner_id: "root".into(),
                max_depth: 0,
                page_size: 2,
                page_token: page_token.clone(),
            }))
            .await
            .expect("downline")
            .into_inner();
        assert!(page.entries.len() <= 2);
        downline.extend(
            page.entries
                .into_iter()
                .map(|entry| (entry.depth, entry.partner.expect("partner").partner_id)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(
        downline,
        [
            (1, "a".to_owned()),
            (1, "d".to_owned()),
            (2, "b".to_owned()),
            (3, "c".to_owned())
        ]
    );
    let shallow = service
        .client
        .list_downline(service.read(ListDownlineRequest {
            partner_id: "a".into(),
            max_depth: 1,
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .expect("downline")
        .into_inner();
    assert_eq!(shallow.entries.len(), 1, "only b is a's direct recruit");
    service.stop().await;
}
