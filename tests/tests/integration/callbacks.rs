//! Chat-bot buttons close the loop: the notifier's reminder and feedback request reach the
//! gateway with action tokens; posting a token back (HTTP/JSON, no API key) answers the
//! session or rates it, the rating shows in the mentor's feedback KPIs, and a token that was
//! used for another action or another rating, changed, expired, moved to another tenant or
//! asked for an action it does not offer is refused with its reason; the same press again
//! answers as the first did.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use mentorstream_actions::{Action, Claims, Signer};
use mentorstream_config::ExposeSecret as _;
use mentorstream_e2e::{Service, System, WAIT};
use mentorstream_proto::common::v1::Decimal;
use mentorstream_proto::kpi::v1::{Fraction, Metric, Subject, SubjectKind, metric_value};
use mentorstream_proto::mentorship::v1::{
    AssignMenteeRequest, CompleteSessionRequest, CreateGroupRequest, ListFeedbackRequest,
    ScheduleSessionRequest,
};
use mentorstream_proto::notification::v1 as notification;
use serde_json::{Value, json};

use crate::truth::{Clients, enrolment, timestamp};

const MENTOR: &str = "cb-mentor";
const MENTEE: &str = "cb-a";

/// The buttons of the first webhook to `chatbot_user_id` of `category`, once it arrived.
async fn buttons(system: &System, chatbot_user_id: &str, category: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = system
            .gateway
            .received()
            .into_iter()
            .map(|hook| hook.json())
            .find(|body| {
                body["chatbot_user_id"] == chatbot_user_id && body["category"] == category
            });
        if let Some(body) = found {
            return body["actions"].as_array().expect("actions").clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {category} webhook for {chatbot_user_id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Posts a button back as a gateway does: the token is the only credential.
async fn redeem(system: &System, body: &Value) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/v1/action/RedeemAction",
            system.endpoint(Service::Mentorship)
        ))
        .json(body)
        .send()
        .await
        .expect("an answer");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON"))
}

/// The `ErrorInfo.reason` of a refusal's JSON.
fn reason(refusal: &Value) -> &str {
    refusal["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|detail| detail["reason"].as_str())
        .unwrap_or_default()
}

/// Sets up a mentor with one mentee on the chat-bot; a completed session two hours ago and a
/// scheduled one in two hours. Their ids.
async fn two_sessions(clients: &mut Clients<'_>) -> (String, String) {
    let system = clients.system;
    let now = Utc::now();
    let at = |hours: i64| now - chrono::Duration::hours(hours);
    let mut enrolments = vec![enrolment(MENTOR, ""), enrolment(MENTEE, MENTOR)];
    for event in &mut enrolments {
        event.occurred_at = timestamp(at(6));
    }
    clients.ingest(enrolments).await;
    let mut preferences = system.notifications().await;
    preferences
        .update_preferences(system.request(notification::UpdatePreferencesRequest {
            request_id: String::new(),
            preferences: Some(notification::Preferences {
                partner_id: MENTEE.into(),
                chatbot_user_id: format!("tg-{MENTEE}"),
                locale: "en".into(),
                ..notification::Preferences::default()
            }),
            update_mask: None,
        }))
        .await
        .expect("preferences");
    let program_id = clients.pilot_program("Buttons").await;
    let mentorship = clients.mentorship.clone();
    let (group, _) = Clients::until_known(|| {
        let mut mentorship = mentorship.clone();
        let request = system.request(CreateGroupRequest {
            request_id: "cb-group".into(),
            program_id: program_id.clone(),
            mentor_id: MENTOR.into(),
            name: "Buttons".into(),
            capacity: 5,
            occurred_at: timestamp(at(5)),
        });
        async move { mentorship.create_group(request).await }
    })
    .await;
    let group_id = group.group.expect("group").group_id;
    Clients::until_known(|| {
        let mut mentorship = mentorship.clone();
        let request = system.request(AssignMenteeRequest {
            request_id: "cb-assign".into(),
            group_id: group_id.clone(),
            mentee_id: MENTEE.into(),
            occurred_at: timestamp(at(4)),
        });
        async move { mentorship.assign_mentee(request).await }
    })
    .await;
    let schedule = |request_id: &str, starts_at: DateTime<Utc>, occurred_at: DateTime<Utc>| {
        system.request(ScheduleSessionRequest {
            request_id: request_id.into(),
            group_id: group_id.clone(),
            mentee_ids: vec![],
            starts_at: timestamp(starts_at),
            duration: None,
            topic: "First sale".into(),
            module_id: String::new(),
            occurred_at: timestamp(occurred_at),
        })
    };
    let past = clients
        .mentorship
        .schedule_session(schedule("cb-past", at(2), at(3)))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    clients
        .mentorship
        .complete_session(system.request(CompleteSessionRequest {
            request_id: "cb-complete".into(),
            session_id: past.clone(),
            attendee_ids: vec![MENTEE.into()],
            notes: String::new(),
            occurred_at: timestamp(at(1)),
        }))
        .await
        .expect("completed");
    let upcoming = clients
        .mentorship
        .schedule_session(schedule(
            "cb-upcoming",
            now + chrono::Duration::hours(2),
            now,
        ))
        .await
        .expect("scheduled")
        .into_inner()
        .session
        .expect("session")
        .session_id;
    (past, upcoming)
}

/// Polls the mentor's group scorecard until its FEEDBACK_AVG is `expected`.
async fn wait_for_feedback_average(clients: &mut Clients<'_>, expected: &Fraction) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = clients
            .scorecard(Some(Subject {
                kind: SubjectKind::Group.into(),
                id: String::new(),
                mentor_id: MENTOR.into(),
            }))
            .await;
        let average = answer.ok().and_then(|answer| {
            answer
                .values
                .into_iter()
                .find(|value| value.metric == i32::from(Metric::FeedbackAvg))
                .and_then(|value| value.value)
        });
        if average == Some(metric_value::Value::Fraction(expected.clone())) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mentor's feedback average stayed {average:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn buttons_answer_and_rate_sessions_once_and_refuse_every_bad_token() {
    let mut system = System::start(false).await;
    let mut clients = Clients::connect(&system).await;
    let (past, upcoming) = two_sessions(&mut clients).await;

    // The reminder of the upcoming session offers attend and reschedule, one token.
    let reminder = buttons(&system, "tg-cb-a", "session_reminder").await;
    assert_eq!(
        reminder
            .iter()
            .map(|button| (button["action"].as_str(), button["label"].as_str()))
            .collect::<Vec<_>>(),
        [
            (Some("ATTEND"), Some("I'll attend")),
            (Some("RESCHEDULE"), Some("Please reschedule"))
        ]
    );
    let token = reminder[0]["token"].as_str().expect("token").to_owned();
    let (status, answer) =
        redeem(&system, &json!({"token": token, "action": "ACTION_ATTEND"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sessionId"], upcoming.as_str());
    assert_eq!(
        answer["session"]["responses"],
        json!([{
            "menteeId": MENTEE,
            "response": "SESSION_RESPONSE_ATTENDING",
            "respondedAt": answer["session"]["responses"][0]["respondedAt"],
        }])
    );
    // Pressed again (a double tap, the gateway's retry): the same answer, nothing new.
    let (status, again) =
        redeem(&system, &json!({"token": token, "action": "ACTION_ATTEND"})).await;
    assert_eq!((status, &again), (200, &answer));
    let (status, refusal) = redeem(
        &system,
        &json!({"token": token, "action": "ACTION_RESCHEDULE"}),
    )
    .await;
    assert_eq!(
        (status, reason(&refusal)),
        (409, "ACTION_TOKEN_USED"),
        "{refusal}"
    );
    let (status, refusal) = redeem(
        &system,
        &json!({"token": token, "action": "ACTION_RATE", "rating": 5}),
    )
    .await;
    assert_eq!((status, reason(&refusal)), (403, "ACTION_NOT_OFFERED"));
    assert_eq!(
        refusal["message"],
        "this token offers ATTEND, RESCHEDULE, not RATE"
    );

    // Forged, expired and cross-tenant tokens, made with the system's own key.
    let signer =
        Signer::new(system.config.actions.signing_key.expose_secret().as_bytes()).expect("key");
    // The signature's first character changed: all six of its bits are signature (the last
    // character's low bits are padding, and a change there is malformed base64, not forgery —
    // which made this test fail one run in sixteen).
    let (signed, signature) = token.rsplit_once('.').expect("a signed token");
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{first}{}", &signature[1..]);
    let (status, refusal) = redeem(
        &system,
        &json!({"token": forged, "action": "ACTION_ATTEND"}),
    )
    .await;
    assert_eq!((status, reason(&refusal)), (401, "ACTION_TOKEN_INVALID"));
    let claims = |tenant_id: &str, expires_at: DateTime<Utc>| Claims {
        actions: vec![Action::Rate],
        ..Claims::new(tenant_id, &past, MENTEE, vec![], expires_at)
    };
    let expired = signer.issue(&claims(
        &system.tenant_id,
        Utc::now() - chrono::Duration::minutes(1),
    ));
    let (status, refusal) = redeem(
        &system,
        &json!({"token": expired, "action": "ACTION_RATE", "rating": 1}),
    )
    .await;
    assert_eq!((status, reason(&refusal)), (401, "ACTION_TOKEN_EXPIRED"));
    let globex = system.cli_json(&[
        "admin",
        "create-tenant",
        "--name",
        "globex",
        "--timezone",
        "Europe/Berlin",
        "--locale",
        "en-US",
    ]);
    let globex = globex["tenant_id"].as_str().expect("tenant id");
    let later = Utc::now() + chrono::Duration::hours(1);
    // A token of the other tenant naming this tenant's session finds nothing there.
    let elsewhere = signer.issue(&claims(globex, later));
    let (status, refusal) = redeem(
        &system,
        &json!({"token": elsewhere, "action": "ACTION_RATE", "rating": 1}),
    )
    .await;
    assert_eq!(status, 404, "{refusal}");
    // Moving a token to the other tenant breaks its signature.
    let genuine = signer.issue(&claims(&system.tenant_id, later));
    let (signed, signature) = genuine.rsplit_once('.').expect("three parts");
    let moved_claims = serde_json::to_vec(&claims(globex, later)).expect("json");
    let moved = format!(
        "v1.{}.{signature}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(moved_claims)
    );
    assert_ne!(signed, moved.rsplit_once('.').expect("parts").0);
    let (status, refusal) = redeem(
        &system,
        &json!({"token": moved, "action": "ACTION_RATE", "rating": 1}),
    )
    .await;
    assert_eq!((status, reason(&refusal)), (401, "ACTION_TOKEN_INVALID"));

    // The feedback request of the completed session: rated 4 by its button, once.
    let request = buttons(&system, "tg-cb-a", "feedback_request").await;
    assert_eq!(request.len(), 1);
    assert_eq!(request[0]["action"], "RATE");
    let rate = json!({
        "token": request[0]["token"],
        "action": "ACTION_RATE",
        "rating": 4,
        "comment": "A clear plan for my first sale",
    });
    let (status, answer) = redeem(&system, &rate).await;
    assert_eq!(
        (status, &answer["sessionId"]),
        (200, &json!(past)),
        "{answer}"
    );
    let (status, again) = redeem(&system, &rate).await;
    assert_eq!((status, &again), (200, &answer), "the same press again");
    let mut rerated = rate.clone();
    rerated["rating"] = json!(1);
    let (status, refusal) = redeem(&system, &rerated).await;
    assert_eq!((status, reason(&refusal)), (409, "ACTION_TOKEN_USED"));
    assert_eq!(
        refusal["message"],
        "this button was already used (RATE, rated 4); a token works once"
    );
    let feedback = clients
        .mentorship
        .list_feedback(system.request(ListFeedbackRequest {
            session_id: past.clone(),
            ..ListFeedbackRequest::default()
        }))
        .await
        .expect("feedback")
        .into_inner()
        .feedback;
    assert_eq!(
        feedback
            .iter()
            .map(|given| (
                given.mentee_id.as_str(),
                given.rating,
                given.comment.as_str()
            ))
            .collect::<Vec<_>>(),
        [(MENTEE, 4, "A clear plan for my first sale")]
    );
    wait_for_feedback_average(
        &mut clients,
        &Fraction {
            numerator: 4,
            denominator: 1,
            value: Some(Decimal {
                value: "4.0000".into(),
            }),
        },
    )
    .await;
    system.stop();
}
