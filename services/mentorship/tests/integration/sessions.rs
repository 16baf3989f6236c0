//! Sessions, feedback and modules through MentorshipService against the real local stack:
//! what the domain forbids is refused and writes nothing, sessions left open past their end
//! plus the grace period become MISSED by themselves, and every change reaches the topic once,
//! in order per session.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use common::{Service, WAIT};
use mentorstream_proto::mentorship::v1::{
    CancelSessionRequest, CompleteSessionRequest, CreateModuleRequest, GetSessionRequest,
    ListSessionsRequest, RecordSessionMissedRequest, RescheduleSessionRequest,
    ScheduleSessionRequest, SessionState, SubmitFeedbackRequest, UnassignMenteeRequest,
    mentorship_event,
};
use tonic::Code;

fn at(time: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: 0,
    })
}

fn minutes(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 60,
        nanos: 0,
    })
}

#[tokio::test]
async fn sessions_follow_the_rules_and_become_missed_by_themselves() {
    let mut service = Service::start_with(|config| {
        config.mentorship.missed_grace = Duration::from_secs(1);
        config.mentorship.missed_check_interval = Duration::from_millis(200);
    })
    .await;
    for partner in ["mentor-1", "ann", "bob", "carl"] {
        service.enrol(partner).await;
    }
    let group_id = service
        .group_with(
            "mentor-1",
            &["ann", "bob"],
            minutes(20),
            at(Utc::now() - chrono::Duration::days(1)),
        )
        .await;

    // The modules catalogue.
    let module = |module_id: &str, minutes: u32| CreateModuleRequest {
        request_id: String::new(),
        module_id: module_id.into(),
        title: "First steps".into(),
        minutes,
        skill_tags: vec!["basics".into()],
    };
    service
        .client
        .create_module(service.write(module("m-1", 25)))
        .await
        .expect("module");
    let again = service
        .client
        .create_module(service.write(module("m-1", 25)))
        .await
        .expect_err("exists");
    assert_eq!(again.code(), Code::AlreadyExists);
    let too_long = service
        .client
        .create_module(service.write(module("m-2", 2000)))
        .await
        .expect_err("too long");
    assert_eq!(
        (too_long.code(), too_long.message()),
        (
            Code::InvalidArgument,
            "minutes: must be 1 to 1440, got 2000"
        )
    );

    let tomorrow = Utc::now() + chrono::Duration::days(1);
    let schedule = |starts_at, mentee_ids: &[&str]| ScheduleSessionRequest {
        request_id: String::new(),
        group_id: group_id.clone(),
        mentee_ids: mentee_ids.iter().map(|&mentee| mentee.into()).collect(),
        starts_at: at(starts_at),
        duration: None,
        topic: "First sale".into(),
        module_id: "m-1".into(),
        occurred_at: None,
    };
    let first = service
        .client
        .schedule_session(service.write(schedule(tomorrow, &[])))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(first.mentee_ids, ["ann", "bob"], "every current mentee");
    assert_eq!(first.duration, minutes(20), "the program's default length");
    assert_eq!(first.state, i32::from(SessionState::Scheduled));
    let s1 = first.session_id.clone();
    let not_over = service
        .client
        .record_session_missed(service.write(RecordSessionMissedRequest {
            request_id: String::new(),
            session_id: s1.clone(),
            occurred_at: None,
        }))
        .await
        .expect_err("not over");
    assert_eq!(not_over.code(), Code::FailedPrecondition);
    assert!(
        not_over
            .message()
            .starts_with(&format!("session `{s1}` has not ended yet (it ends at ")),
        "{not_over:?}"
    );

    // Refused schedules write nothing.
    let (sessions_before, events_before) = service.counts("sessions").await;
    for (request, code, message) in [
        (
            schedule(tomorrow + chrono::Duration::minutes(10), &["ann"]),
            Code::FailedPrecondition,
            format!(
                "mentor `mentor-1` already has session `{s1}` at {}",
                chrono::DateTime::from_timestamp(tomorrow.timestamp(), 0).expect("time")
            ),
        ),
        (
            ScheduleSessionRequest {
                duration: minutes(90),
                ..schedule(tomorrow + chrono::Duration::hours(5), &[])
            },
            Code::InvalidArgument,
            "duration: must be 5 to 60 minutes, got 90".to_owned(),
        ),
        (
            schedule(tomorrow + chrono::Duration::hours(5), &["carl"]),
            Code::InvalidArgument,
            format!(
                "mentee_ids: `carl` is not a mentee of group `{group_id}` at starts_at ({})",
                (tomorrow + chrono::Duration::hours(5))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        (
            ScheduleSessionRequest {
                module_id: "m-9".into(),
                ..schedule(tomorrow + chrono::Duration::hours(5), &[])
            },
            Code::FailedPrecondition,
            "module_id: no module `m-9`".to_owned(),
        ),
    ] {
        let refused = service
            .client
            .schedule_session(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (code, message.as_str())
        );
    }
    assert_eq!(
        service.counts("sessions").await,
        (sessions_before, events_before)
    );

    // Rescheduled an hour later; the hour before is then free for another session, which is
    // cancelled (once, with a reason).
    let moved = service
        .client
        .reschedule_session(service.write(RescheduleSessionRequest {
            request_id: String::new(),
            session_id: s1.clone(),
            starts_at: at(tomorrow + chrono::Duration::hours(1)),
            duration: None,
            occurred_at: None,
        }))
        .await
        .expect("rescheduled")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(moved.duration, minutes(20), "the length is kept");
    let s2 = service
        .client
        .schedule_session(service.write(schedule(tomorrow, &["ann"])))
        .await
        .expect("scheduled in the freed hour")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    let cancel = |reason: &str| CancelSessionRequest {
        request_id: String::new(),
        session_id: s2.clone(),
        reason: reason.into(),
        occurred_at: None,
    };
    let no_reason = service
        .client
        .cancel_session(service.write(cancel("")))
        .await
        .expect_err("a reason is required");
    assert_eq!(no_reason.message(), "reason: is required");
    service
        .client
        .cancel_session(service.write(cancel("mentor ill")))
        .await
        .expect("cancelled");
    let twice = service
        .client
        .cancel_session(service.write(cancel("mentor ill")))
        .await
        .expect_err("cancelled before");
    assert_eq!(
        (twice.code(), twice.message()),
        (
            Code::FailedPrecondition,
            format!("session `{s2}` is cancelled, not scheduled").as_str()
        )
    );

    // A session that started five minutes ago is completed with its attendance.
    let s3 = service
        .client
        .schedule_session(service.write(schedule(
            Utc::now() - chrono::Duration::minutes(5),
            &["ann", "bob"],
        )))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    let complete = |attendees: &[&str]| CompleteSessionRequest {
        request_id: String::new(),
        session_id: s3.clone(),
        attendee_ids: attendees.iter().map(|&mentee| mentee.into()).collect(),
        notes: "Good start".into(),
        occurred_at: None,
    };
    let stranger = service
        .client
        .complete_session(service.write(complete(&["carl"])))
        .await
        .expect_err("not expected");
    assert_eq!(
        stranger.message(),
        format!("attendee_ids: `carl` is not an expected mentee of session `{s3}`")
    );
    let early = service
        .client
        .complete_session(service.write(CompleteSessionRequest {
            session_id: s1.clone(),
            ..complete(&["ann"])
        }))
        .await
        .expect_err("not started yet");
    assert_eq!(early.code(), Code::InvalidArgument);
    let completed = service
        .client
        .complete_session(service.write(complete(&["ann"])))
        .await
        .expect("completed")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(
        (completed.state, completed.attendee_ids.as_slice()),
        (
            i32::from(SessionState::Completed),
            ["ann".to_owned()].as_slice()
        )
    );

    // Feedback: once, from an attendee, rating 1 to 5, on a completed session.
    let feedback = |session: &str, mentee: &str, rating| SubmitFeedbackRequest {
        request_id: String::new(),
        session_id: session.into(),
        mentee_id: mentee.into(),
        rating,
        comment: "Helpful".into(),
        occurred_at: None,
    };
    service
        .client
        .submit_feedback(service.write(feedback(&s3, "ann", 5)))
        .await
        .expect("feedback");
    for (request, code, message) in [
        (
            feedback(&s3, "ann", 4),
            Code::AlreadyExists,
            format!("mentee `ann` already gave feedback on session `{s3}`"),
        ),
        (
            feedback(&s3, "bob", 4),
            Code::FailedPrecondition,
            format!("mentee `bob` did not attend session `{s3}`"),
        ),
        (
            feedback(&s3, "ann", 6),
            Code::InvalidArgument,
            "rating: must be 1 to 5, got 6".to_owned(),
        ),
        (
            SubmitFeedbackRequest {
                comment: "x".repeat(2_001),
                ..feedback(&s3, "bob", 4)
            },
            Code::InvalidArgument,
            "comment: must be at most 2000 characters".to_owned(),
        ),
        (
            feedback(&s1, "ann", 4),
            Code::FailedPrecondition,
            format!("session `{s1}` is not completed; feedback follows a session"),
        ),
    ] {
        let refused = service
            .client
            .submit_feedback(service.write(request))
            .await
            .expect_err("refused");
        assert_eq!(
            (refused.code(), refused.message()),
            (code, message.as_str())
        );
    }

    assert_eq!(
        service.counts("feedback").await,
        (1, 10),
        "refused feedback writes nothing: one row, and the group's, the assignments' and the \
         sessions' events and one feedback's"
    );

    // A session that ended two hours ago and was never completed becomes MISSED by itself.
    let s4 = service
        .client
        .schedule_session(
            service.write(schedule(Utc::now() - chrono::Duration::hours(2), &["bob"])),
        )
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let session = service
            .client
            .get_session(service.read(GetSessionRequest {
                session_id: s4.clone(),
            }))
            .await
            .expect("session")
            .into_inner()
            .session
            .expect("session");
        if session.state == i32::from(SessionState::Missed) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never missed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missed = service
        .client
        .list_sessions(service.read(ListSessionsRequest {
            mentee_id: "bob".into(),
            state: SessionState::Missed.into(),
            ..ListSessionsRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        missed
            .sessions
            .iter()
            .map(|session| session.session_id.clone())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&s4)
    );

    // Every change once on the topic, in order per session.
    let mut by_session: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (key, event) in service.published().await {
        let change = match event.payload.expect("payload") {
            mentorship_event::Payload::SessionScheduled(_) => "scheduled",
            mentorship_event::Payload::SessionRescheduled(_) => "rescheduled",
            mentorship_event::Payload::SessionCancelled(_) => "cancelled",
            mentorship_event::Payload::SessionCompleted(_) => "completed",
            mentorship_event::Payload::SessionMissed(_) => "missed",
            mentorship_event::Payload::FeedbackSubmitted(_) => "feedback",
            _ => continue,
        };
        by_session.entry(key).or_default().push(change);
    }
    let tenant = &service.tenant_id;
    let history = |session: &str| by_session.get(&format!("{tenant}/{session}")).cloned();
    assert_eq!(history(&s1), Some(vec!["scheduled", "rescheduled"]));
    assert_eq!(history(&s2), Some(vec!["scheduled", "cancelled"]));
    assert_eq!(
        history(&s3),
        Some(vec!["scheduled", "completed", "feedback"])
    );
    assert_eq!(history(&s4), Some(vec!["scheduled", "missed"]));
    assert_eq!(by_session.len(), 4);
    service.stop().await;
}

/// Imported history: a session that ended days ago, scheduled now, is not missed before the
/// grace has passed since it was recorded, so it can be completed.
#[tokio::test]
async fn an_imported_session_gets_its_grace_from_when_it_was_recorded() {
    let mut service = Service::start_with(|config| {
        // Only this test's explicit calls mark sessions.
        config.mentorship.missed_check_interval = Duration::from_secs(3600);
    })
    .await;
    for partner in ["mentor-1", "ann"] {
        service.enrol(partner).await;
    }
    let three_days_ago = Utc::now() - chrono::Duration::days(3);
    let group_id = service
        .group_with(
            "mentor-1",
            &["ann"],
            minutes(20),
            at(three_days_ago - chrono::Duration::days(1)),
        )
        .await;
    let schedule = |day: i64| ScheduleSessionRequest {
        request_id: String::new(),
        group_id: group_id.clone(),
        mentee_ids: vec![],
        starts_at: at(three_days_ago + chrono::Duration::hours(day)),
        duration: None,
        topic: "History".into(),
        module_id: String::new(),
        occurred_at: at(three_days_ago - chrono::Duration::hours(1)),
    };
    let mut ids = Vec::new();
    for hours in [0, 2] {
        ids.push(
            service
                .client
                .schedule_session(service.write(schedule(hours)))
                .await
                .expect("scheduled")
                .into_inner()
                .session
                .expect("session")
                .session_id,
        );
    }
    let grace = Duration::from_secs(2 * 3600);
    assert_eq!(
        mentorstream_mentorship::sessions::mark_missed(&service.pool, grace)
            .await
            .expect("marked"),
        0
    );
    service
        .client
        .complete_session(service.write(CompleteSessionRequest {
            request_id: String::new(),
            session_id: ids[0].clone(),
            attendee_ids: vec!["ann".into()],
            notes: String::new(),
            occurred_at: at(three_days_ago + chrono::Duration::minutes(20)),
        }))
        .await
        .expect("completed");
    // Recorded three hours ago and still not completed: missed.
    sqlx::query("UPDATE sessions SET recorded_at = now() - interval '3 hours'")
        .execute(&service.pool)
        .await
        .expect("backdated");
    assert_eq!(
        mentorstream_mentorship::sessions::mark_missed(&service.pool, grace)
            .await
            .expect("marked"),
        1
    );
    let state = |id: &str| {
        let mut client = service.client.clone();
        let request = service.read(GetSessionRequest {
            session_id: id.to_owned(),
        });
        async move {
            client
                .get_session(request)
                .await
                .expect("session")
                .into_inner()
                .session
                .expect("session")
                .state()
        }
    };
    assert_eq!(state(&ids[0]).await, SessionState::Completed);
    assert_eq!(state(&ids[1]).await, SessionState::Missed);

    // A third imported session is recorded missed at the time the history says, at once.
    let third = service
        .client
        .schedule_session(service.write(schedule(4)))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    let record = |when: chrono::DateTime<Utc>| RecordSessionMissedRequest {
        request_id: String::new(),
        session_id: third.clone(),
        occurred_at: at(when),
    };
    let ends = three_days_ago + chrono::Duration::hours(4) + chrono::Duration::minutes(20);
    let early = service
        .client
        .record_session_missed(service.write(record(ends - chrono::Duration::minutes(1))))
        .await
        .expect_err("before its end");
    assert_eq!(
        (early.code(), early.message()),
        (
            Code::InvalidArgument,
            format!(
                "occurred_at: must not be before the session ends ({})",
                chrono::DateTime::from_timestamp(ends.timestamp(), 0).expect("time")
            )
            .as_str()
        )
    );
    let missed_at = ends + chrono::Duration::minutes(30);
    let recorded = service
        .client
        .record_session_missed(service.write(record(missed_at)))
        .await
        .expect("recorded missed")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(recorded.state(), SessionState::Missed);
    let again = service
        .client
        .record_session_missed(service.write(record(missed_at)))
        .await
        .expect_err("already missed");
    assert_eq!(
        (again.code(), again.message()),
        (
            Code::FailedPrecondition,
            format!("session `{third}` is missed, not scheduled").as_str()
        )
    );
    let announced: Vec<_> = service
        .published()
        .await
        .into_iter()
        .filter(|(key, _)| key.ends_with(&format!("/{third}")))
        .filter_map(|(_, event)| match event.payload {
            Some(mentorship_event::Payload::SessionMissed(_)) => event.occurred_at,
            _ => None,
        })
        .collect();
    assert_eq!(
        announced,
        [prost_types::Timestamp {
            seconds: missed_at.timestamp(),
            nanos: 0,
        }],
        "announced once, at the recorded time"
    );
    service.stop().await;
}

#[tokio::test]
async fn an_imported_session_is_checked_against_the_membership_when_it_started() {
    let mut service = Service::start().await;
    for partner in ["mentor-1", "ann", "bob"] {
        service.enrol(partner).await;
    }
    let now = Utc::now();
    let days_ago = |days: i64| now - chrono::Duration::days(days);
    let group_id = service
        .group_with("mentor-1", &["ann", "bob"], minutes(20), at(days_ago(10)))
        .await;
    service
        .client
        .unassign_mentee(service.write(UnassignMenteeRequest {
            request_id: String::new(),
            group_id: group_id.clone(),
            mentee_id: "bob".into(),
            occurred_at: at(days_ago(5)),
        }))
        .await
        .expect("unassigned");
    let schedule = |starts_at: chrono::DateTime<Utc>, mentee_ids: &[&str]| ScheduleSessionRequest {
        request_id: String::new(),
        group_id: group_id.clone(),
        mentee_ids: mentee_ids.iter().map(|&mentee| mentee.into()).collect(),
        starts_at: at(starts_at),
        duration: None,
        topic: "History".into(),
        module_id: String::new(),
        occurred_at: at(days_ago(1)),
    };
    // Bob was a mentee a week ago: the import of that session is accepted, in any order.
    let with_bob = service
        .client
        .schedule_session(service.write(schedule(days_ago(7), &["bob"])))
        .await
        .expect("bob was a mentee then")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(with_bob.mentee_ids, ["bob"]);
    let everyone_then = service
        .client
        .schedule_session(service.write(schedule(days_ago(8), &[])))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(everyone_then.mentee_ids, ["ann", "bob"], "the mentees then");
    // Three days ago he no longer was; nor is he now.
    let (sessions_before, events_before) = service.counts("sessions").await;
    for starts_at in [days_ago(3), now + chrono::Duration::days(1)] {
        let refused = service
            .client
            .schedule_session(service.write(schedule(starts_at, &["bob"])))
            .await
            .expect_err("bob was gone");
        assert_eq!(
            (refused.code(), refused.message()),
            (
                Code::InvalidArgument,
                format!(
                    "mentee_ids: `bob` is not a mentee of group `{group_id}` at starts_at ({})",
                    chrono::DateTime::from_timestamp(starts_at.timestamp(), 0)
                        .expect("time")
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
                .as_str()
            )
        );
    }
    assert_eq!(
        service.counts("sessions").await,
        (sessions_before, events_before),
        "a refused import writes nothing"
    );
    service.stop().await;
}
